"""The one map from a devices.yaml ``kind`` to its driver class.

Explicit on purpose: adding a driver means adding one line here, naming its
class, and tests/drivers/test_registry.py checks that every driver module is
listed and that every kind in devices.yaml resolves. Everything else about a
kind (config, emulator for ``make run``, remote actions, health fields) the
driver class declares, and the agent, the demo and both consoles learn from
it; tests/drivers/test_kind_isolation.py shows the pole display is its folder,
its tests and its line here.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from drivers.base import Driver

# One line per kind: "module:Class".
_DRIVERS: tuple[str, ...] = (
    "drivers.heartbeat.driver:HeartbeatSensor",
    "drivers.scanner.serial:SerialScanner",
    "drivers.scanner.hid_driver:HidScanner",
    "drivers.printer.driver:EscPosPrinter",
    "drivers.shelf_label.driver:OeplLabels",
    "drivers.shelf_label.driver:LabelFiles",
    "drivers.mirror.driver:MirrorCamera",
    "drivers.display.driver:PoleDisplay",
)


@cache
def _classes() -> tuple[type[Driver], ...]:
    found = []
    for entry in _DRIVERS:
        module, _, name = entry.partition(":")
        cls = getattr(import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            raise TypeError(f"drivers/registry.py: {entry} is not a Driver")
        found.append(cls)
    return tuple(found)


def drivers() -> dict[str, type[Driver]]:
    """Every known driver, by kind."""
    return {d.kind: d for d in _classes()}
