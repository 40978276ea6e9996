"""TCP transport: network printers (port 9100), heartbeat emulators."""

from __future__ import annotations

import asyncio

from drivers.transport.base import Transport
from edge_agent.errors import DeviceMissing, DeviceTimeout, TransportClosed


class TcpTransport(Transport):
    """An asyncio stream to ``host:port``."""

    type = "tcp"

    def __init__(self, host: str, port: int, connect_timeout: float = 3.0):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except asyncio.TimeoutError as err:
            raise DeviceTimeout(f"no answer from {self.describe()} within {self.connect_timeout} s") from err
        except OSError as err:
            raise DeviceMissing(f"cannot connect to {self.describe()}: {err.strerror or err}") from err

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the peer is already gone; closing is all we wanted

    async def write(self, data: bytes) -> None:
        if not self.is_open:
            raise TransportClosed(f"{self.describe()} is not connected")
        assert self._writer is not None
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as err:
            await self.close()
            raise TransportClosed(f"{self.describe()} dropped the connection: {err}") from err

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        if self._reader is None:
            raise TransportClosed(f"{self.describe()} is not connected")
        try:
            data = await asyncio.wait_for(self._reader.read(max_bytes), timeout)
        except asyncio.TimeoutError:
            return b""
        except OSError as err:
            await self.close()
            raise TransportClosed(f"{self.describe()} dropped the connection: {err}") from err
        if not data:
            await self.close()
            raise TransportClosed(f"{self.describe()} closed the connection")
        return data

    def describe(self) -> str:
        return f"tcp://{self.host}:{self.port}"
