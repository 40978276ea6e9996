"""The one map from a devices.yaml ``kind`` to its driver class.

Explicit on purpose: adding a driver means adding a line here, and
tests/drivers/test_registry.py checks that every driver module is listed and
that every kind in devices.yaml resolves.
"""

from __future__ import annotations

from drivers.base import Driver
from drivers.display.driver import PoleDisplay
from drivers.heartbeat.driver import HeartbeatSensor
from drivers.mirror.driver import MirrorCamera
from drivers.printer.driver import EscPosPrinter
from drivers.scanner.hid_driver import HidScanner
from drivers.scanner.serial import SerialScanner
from drivers.shelf_label.driver import LabelFiles, OeplLabels

# One line per kind.
_DRIVERS: tuple[type[Driver], ...] = (
    HeartbeatSensor,
    SerialScanner,
    HidScanner,
    EscPosPrinter,
    OeplLabels,
    LabelFiles,
    MirrorCamera,
    PoleDisplay,
)


def drivers() -> dict[str, type[Driver]]:
    """Every known driver, by kind."""
    return {d.kind: d for d in _DRIVERS}
