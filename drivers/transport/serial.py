"""Serial transport on pyserial: scanners, serial printers.

pyserial is blocking, so every call runs in the default executor; the event
loop never waits on a port. Bind by ``/dev/serial/by-id/...`` so a device
keeps its path across replugs and reboots (see systemd/99-edge-agent.rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import serial

from drivers.transport.base import Transport
from edge_core.errors import DeviceMissing, DeviceTimeout, TransportClosed

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
        dsrdtr: bool = False,
        xonxoff: bool = False,
    ):
        self.port = port
        self.settings: dict[str, Any] = dict(
            baudrate=baudrate, bytesize=bytesize, parity=_PARITY[parity], stopbits=stopbits, rtscts=rtscts,
            dsrdtr=dsrdtr, xonxoff=xonxoff,
        )
        self._ser: serial.Serial | None = None

    @property
    def is_open(self) -> bool:
        return self._ser is not None and self._ser.is_open

    async def open(self) -> None:
        """Open the port; DeviceMissing when there is no such port or it is taken."""
        await self.close()  # a second open must not leak the first port

        def _open() -> serial.Serial:
            return serial.Serial(self.port, timeout=0, write_timeout=5, exclusive=True, **self.settings)

        fut = asyncio.get_running_loop().run_in_executor(None, _open)
        try:
            self._ser = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The thread cannot be stopped. If it still opens the port, close
            # it: ``exclusive=True`` holds a lock on the port, and a port left
            # open by a cancelled open would fail every later open with
            # "could not exclusively lock port".
            fut.add_done_callback(_close_when_opened)
            raise
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceMissing(f"cannot open {self.port}: {err}") from err

    async def close(self) -> None:
        """Close the port; never raises, safe to call twice."""
        ser, self._ser = self._ser, None
        if ser is None:
            return
        # Wake a read blocked in another thread first, so it does not
        # select() on a file descriptor that is being closed under it.
        with contextlib.suppress(serial.SerialException, OSError):
            ser.cancel_read()
            ser.cancel_write()
        with contextlib.suppress(serial.SerialException, OSError):
            await asyncio.to_thread(ser.close)  # the device may be gone; closing is all we want

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` and wait until it left the UART."""
        ser = self._require()

        def _write() -> None:
            ser.write(data)
            ser.flush()

        try:
            await asyncio.to_thread(_write)
        except serial.SerialTimeoutException as err:
            # With rtscts a device that is there but not ready (a printer out
            # of paper) holds CTS low and the write stalls: a timeout, not an
            # unplug.
            raise DeviceTimeout(f"{self.port}: write did not finish within 5 s: {err}") from err
        except (serial.SerialException, OSError) as err:
            await self.close()
            raise TransportClosed(f"{self.port}: write failed: {err}") from err

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """Up to ``max_bytes``; b"" on timeout; TransportClosed when the port is gone."""
        ser = self._require()

        def _read() -> bytes:
            # A port that is gone does not return b"" for ever. Linux shows an
            # unplugged USB-serial adapter, and a pty whose master side was
            # closed, as "always readable, but read() gives 0 bytes"; pyserial
            # turns that into SerialException ("device reports readiness to
            # read but returned no data"), and ioctl/tcsetattr fail with EIO
            # or ENXIO. All of these are mapped to TransportClosed below.
            if ser.timeout != timeout:
                ser.timeout = timeout  # pyserial reprograms the port (tcsetattr) on every set
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


def _close_when_opened(fut: "asyncio.Future[serial.Serial]") -> None:
    """Close a port whose open finished after the caller stopped waiting."""
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()
