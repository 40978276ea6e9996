"""What every scanner driver does with a decoded code, whatever wire it came on.

A serial scanner (drivers/scanner/serial.py) and a USB HID scanner
(drivers/scanner/hid_driver.py) each turn their wire into text; ``ScanSink``
parses it (protocol.py), drops a repeat of the same code within the
configured window, counts, and publishes on the internal bus:

- ``scanner.scan``: a good scan (device, station, code, symbology, kind,
  fields, raw);
- ``scanner.bad_scan``: what was wrong with it (device, station, raw, reason).

The catalog lookup and the live feed are the agent's (edge_agent/scans.py):
a driver never touches the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field

from drivers.base import DeviceConfig, DriverContext
from drivers.scanner import protocol
from drivers.scanner.protocol import BadScan, Scan

SCAN = "scanner.scan"
BAD_SCAN = "scanner.bad_scan"


class ScannerConfig(DeviceConfig):
    """devices.yaml keys every scanner has."""

    station: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="the api client (kiosk, counter) this scanner belongs to; a member QR attaches to its session")
    dedupe_window: float = Field(
        default=1.0, ge=0, le=10,
        description="seconds in which the same code from this scanner counts once (0 = count every scan)")
    aim: bool = Field(default=False, description="the scanner sends an AIM symbology identifier (]E0 ...) first")
    min_length: int = Field(default=1, ge=1, le=64, description="shorter codes are bad scans")


@dataclass
class ScanSink:
    """Parses, deduplicates, counts and publishes the codes of one scanner."""

    config: ScannerConfig
    ctx: DriverContext
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)

    def text(self, text: str) -> Scan | BadScan | None:
        """Handle one code's text; returns what was published (None for a repeat)."""
        result = protocol.parse(text, aim=self.config.aim, min_length=self.config.min_length)
        if isinstance(result, BadScan):
            self.bad(result)
            return result
        now = self.clock()
        window = self.config.dedupe_window
        # The same code twice within the window is one scan held too long or
        # read twice by an omnidirectional scanner, not two items: a second
        # item of the same product is scanned after a pause or keyed as qty.
        last = self._last.get(result.code)
        self._last = {code: at for code, at in self._last.items() if now - at < window}
        if last is not None and now - last < window:
            self._last[result.code] = now
            self.ctx.count("duplicates")
            return None
        self._last[result.code] = now
        self.ctx.count("scans")
        self.ctx.bus.publish(SCAN, {
            "device": self.ctx.device_id, "station": self.config.station, "code": result.code,
            "symbology": result.symbology.value, "kind": result.kind.value, "fields": dict(result.fields),
            "raw": result.raw,
        })
        return result

    def bad(self, bad: BadScan) -> None:
        """Count and publish a bad scan; logged at debug only (a bad read is routine)."""
        self.ctx.count("bad_scans")
        self.ctx.log.debug("%s: bad scan %s: %s", self.ctx.device_id, bad.raw, bad.reason)
        self.ctx.bus.publish(BAD_SCAN, {
            "device": self.ctx.device_id, "station": self.config.station, "raw": bad.raw, "reason": bad.reason,
        })
