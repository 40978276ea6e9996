"""USB HID barcode scanner (kind ``scanner.hid``): a scanner in keyboard mode.

Most USB scanners ship as keyboards: each code arrives as key presses,
ended by Enter. The agent reads them through evdev and grabs the device
exclusively, so a scan never types into whatever window has focus on the
store PC. Key codes are positions, not characters: the ``layout`` must be
the one the scanner is programmed for (a scanner set to German sends the
key right of T for "z"), or codes come out wrong; the tables are data in
drivers/scanner/layouts/. Bind the scanner by
``/dev/input/by-id/usb-<maker>_<model>-event-kbd``.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator

from drivers.base import Driver, DriverContext, Reporting
from drivers.scanner.driver import ScannerConfig, ScanSink
from drivers.scanner.hid import HidScannerReader
from drivers.scanner.keymap import Keymap, available
from edge_core.errors import DeviceMissing


class HidScannerConfig(ScannerConfig):
    """devices.yaml keys of ``scanner.hid``."""

    kind: Literal["scanner.hid"]
    path: str = Field(pattern=r"^/dev/input/", description="the event device, best /dev/input/by-id/...-event-kbd")
    layout: str = Field(default="us", description="keyboard layout the scanner is programmed for")
    grab: bool = Field(default=True, description="take the device exclusively so scans do not reach other programs")

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        if value not in available():
            raise ValueError(f"unknown layout {value!r}; known: {', '.join(available())}")
        return value


class HidScanner(Driver):
    """Reads codes from a USB HID (keyboard-mode) scanner and hands them to a ScanSink."""

    kind = "scanner.hid"
    health_fields = ("scans", "duplicates", "bad_scans")
    Config = HidScannerConfig
    capabilities = frozenset({"scan"})
    reporting = Reporting.PUSH
    # An unplug fails the read at once (ENODEV); the stat each second also
    # catches a by-id link that went without a read waking up.
    check_interval = 1.0
    retry_cap = 1.0

    def __init__(self, config: HidScannerConfig, ctx: DriverContext, reader: HidScannerReader | None = None):
        super().__init__(config, ctx)
        self.reader = reader or HidScannerReader(config.path, Keymap.load(config.layout), grab=config.grab)
        self.sink = ScanSink(config, ctx)

    async def open(self) -> None:
        """Open and grab the event device."""
        await self.reader.open()

    async def close(self) -> None:
        """Ungrab and close; safe to call twice."""
        await self.reader.close()

    async def check(self) -> None:
        """DeviceMissing when the device node is gone."""
        path = self.config.path  # type: ignore[attr-defined]
        if not os.path.exists(path):
            raise DeviceMissing(f"{path} is gone: scanner unplugged")

    async def run(self) -> None:
        """Read codes until the device goes away."""
        async for text in self.reader.read_codes():
            self.sink.text(text)
        for name, count in self.reader.decoder.unknown.items():
            self.ctx.log.debug("%s: unmapped key %s seen %d times", self.ctx.device_id, name, count)
