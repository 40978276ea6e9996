"""Serial barcode scanner (kind ``scanner.serial``): RS-232 or USB-serial (CDC ACM).

The scanner sends each code followed by its configured suffix (CR by
default in most scanners' factory settings; CR LF or none on others) and,
when programmed to, an AIM symbology identifier first. Bind it by
``/dev/serial/by-id/...``: that path names the scanner, not the USB port it
happens to be in, and it disappears when the scanner is unplugged, which is
how an unplug is noticed even when the read itself does not fail.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from pydantic import Field

from drivers.base import DemoEmulator, DemoSite, DeviceConfig, Driver, DriverContext, Reporting
from drivers.scanner.driver import ScannerConfig, ScanSink
from drivers.scanner.framing import Framer
from drivers.scanner.protocol import BadScan
from drivers.transport import Transport
from drivers.transport.serial import SerialTransport
from edge_core.errors import DeviceMissing

SUFFIXES: dict[str, bytes | None] = {"cr": b"\r", "crlf": b"\r\n", "lf": b"\n", "none": None}
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class SerialScannerConfig(ScannerConfig):
    """devices.yaml keys of ``scanner.serial``."""

    kind: Literal["scanner.serial"]
    port: str = Field(min_length=1, description="the port, best /dev/serial/by-id/...")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["none", "even", "odd"] = "none"
    stopbits: Literal[1, 2] = 1
    suffix: Literal["cr", "crlf", "lf", "none"] = Field(
        default="cr", description="what ends a code; none = a pause of 50 ms ends it")


class SerialScanner(Driver):
    """Reads codes from a serial scanner and hands them to a ScanSink."""

    kind = "scanner.serial"
    health_fields = ("scans", "duplicates", "bad_scans")
    Config = SerialScannerConfig
    capabilities = frozenset({"scan"})
    reporting = Reporting.PUSH
    # Health check: is the port still there? One stat a second notices an
    # unplug within the 2 s a store expects, and a replugged scanner is
    # retried at least this often (Driver.retry_cap).
    check_interval = 1.0
    retry_cap = 1.0

    @classmethod
    def demo_emulator(cls, config: DeviceConfig, site: DemoSite) -> DemoEmulator | None:
        """A pty that scans the demo's codes, for a relative ``port`` (drivers/scanner/demo.py)."""
        from drivers.scanner.demo import demo_emulator
        if not isinstance(config, SerialScannerConfig):
            return None
        return demo_emulator(config.port, site)

    def __init__(self, config: SerialScannerConfig, ctx: DriverContext, transport: Transport | None = None):
        super().__init__(config, ctx)
        self.transport = transport or SerialTransport(
            config.port, config.baudrate, config.bytesize, config.parity, config.stopbits)
        self.sink = ScanSink(config, ctx)
        self._framer = self._new_framer()

    def _new_framer(self) -> Framer:
        return Framer(SUFFIXES[self.config.suffix])  # type: ignore[attr-defined]

    async def open(self) -> None:
        """Open the port; a scanner says nothing until it scans, so there is nothing to ask."""
        self._framer = self._new_framer()  # a frame cut by an unplug is not glued to the next one
        await self.transport.open()

    async def close(self) -> None:
        """Close the port; safe to call twice."""
        await self.transport.close()

    async def check(self) -> None:
        """DeviceMissing when the port's path is gone (the scanner was unplugged)."""
        port = self.config.port  # type: ignore[attr-defined]
        if isinstance(self.transport, SerialTransport) and not os.path.exists(port):
            raise DeviceMissing(f"{port} is gone: scanner unplugged")

    async def run(self) -> None:
        """Read until the port fails; every complete code goes to the sink."""
        loop = asyncio.get_running_loop()
        framer = self._framer
        # Without a suffix a frame ends on a pause, so wake up often enough to see it.
        wait = framer.gap if framer.suffix is None else 0.5
        while True:
            chunk = await self.transport.read(4096, timeout=wait)
            now = loop.time()
            frames = framer.feed(chunk, now) if chunk else []
            frames += framer.flush(now)
            for frame in frames:
                if isinstance(frame, BadScan):
                    self.sink.bad(frame)
                else:
                    self.sink.text(frame)
