"""TCP transport: network printers (port 9100), heartbeat emulators."""

from __future__ import annotations

import asyncio

from drivers.transport.base import Transport
from edge_core.errors import DeviceMissing, DeviceTimeout, TransportClosed

# Seconds close() waits for unsent bytes to drain before resetting the link.
_CLOSE_GRACE = 1.0


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
        """Connect; DeviceMissing when refused or unreachable, DeviceTimeout when silent."""
        await self.close()  # a second open must not leak the first socket
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses the
        # caller's cancellation when it races with the connect finishing.
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError as err:  # ours, or the kernel's ETIMEDOUT: either way no answer
            raise DeviceTimeout(f"no answer from {self.describe()} within {self.connect_timeout} s") from err
        except OSError as err:
            raise DeviceMissing(f"cannot connect to {self.describe()}: {err.strerror or err}") from err

    async def close(self) -> None:
        """Disconnect; never raises, safe to call twice."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            # A peer that stopped reading (a jammed printer) never lets the
            # unsent bytes drain, so wait_closed() could wait forever: give up
            # on a graceful close after a moment and reset the connection.
            async with asyncio.timeout(_CLOSE_GRACE):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except OSError:
            pass  # the peer is already gone; closing is all we wanted

    async def write(self, data: bytes) -> None:
        """Send all of ``data``; TransportClosed if the connection is gone."""
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
        """Up to ``max_bytes``; b"" on timeout; TransportClosed when the peer hung up."""
        if self._reader is None:
            raise TransportClosed(f"{self.describe()} is not connected")
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                data = await self._reader.read(max_bytes)
        except TimeoutError as err:
            if deadline.expired():
                return b""
            await self.close()  # the kernel's ETIMEDOUT (keepalive): the link is dead
            raise TransportClosed(f"{self.describe()} timed out: {err}") from err
        except OSError as err:
            await self.close()
            raise TransportClosed(f"{self.describe()} dropped the connection: {err}") from err
        if not data:
            await self.close()
            raise TransportClosed(f"{self.describe()} closed the connection")
        return data

    def describe(self) -> str:
        return f"tcp://{self.host}:{self.port}"
