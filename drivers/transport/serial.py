"""Serial transport on pyserial: scanners, serial printers.

pyserial is blocking, so every call runs in the default executor; the event
loop never waits on a port. Bind by ``/dev/serial/by-id/...`` so a device
keeps its path across replugs and reboots (see systemd/99-edge-agent.rules).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import serial

from drivers.transport.base import Transport
from edge_agent.errors import DeviceMissing, TransportClosed

_PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD}


class SerialTransport(Transport):
    """A serial port opened with pyserial, driven from an executor."""

    type = "serial"

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "none",
        stopbits: float = 1,
        rtscts: bool = False,
    ):
        self.port = port
        self.settings: dict[str, Any] = dict(
            baudrate=baudrate, bytesize=bytesize, parity=_PARITY[parity], stopbits=stopbits, rtscts=rtscts
        )
        self._ser: serial.Serial | None = None

    @property
    def is_open(self) -> bool:
        return self._ser is not None and self._ser.is_open

    async def open(self) -> None:
        def _open() -> serial.Serial:
            return serial.Serial(self.port, timeout=0, write_timeout=5, exclusive=True, **self.settings)

        try:
            self._ser = await asyncio.to_thread(_open)
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceMissing(f"cannot open {self.port}: {err}") from err

    async def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            await asyncio.to_thread(ser.close)

    async def write(self, data: bytes) -> None:
        ser = self._require()
        try:
            await asyncio.to_thread(ser.write, data)
            await asyncio.to_thread(ser.flush)
        except (serial.SerialException, OSError) as err:
            await self.close()
            raise TransportClosed(f"{self.port}: write failed: {err}") from err

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        ser = self._require()

        def _read() -> bytes:
            # in_waiting raises once the device is gone: that is how an
            # unplugged USB-serial adapter shows itself (ENXIO/EIO).
            ser.timeout = timeout
            first = ser.read(1)
            if not first:
                return b""
            deadline = time.monotonic() + 0.002
            rest = b""
            while len(first) + len(rest) < max_bytes and time.monotonic() < deadline:
                waiting = ser.in_waiting
                if not waiting:
                    break
                rest += ser.read(min(waiting, max_bytes - 1 - len(rest)))
            return first + rest

        try:
            return await asyncio.to_thread(_read)
        except (serial.SerialException, OSError) as err:
            await self.close()
            raise TransportClosed(f"{self.port}: link dropped: {err}") from err

    def _require(self) -> serial.Serial:
        if self._ser is None or not self._ser.is_open:
            raise TransportClosed(f"{self.port} is not open")
        return self._ser

    def describe(self) -> str:
        return f"serial://{self.port}@{self.settings['baudrate']}"
