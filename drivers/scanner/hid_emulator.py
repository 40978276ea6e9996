"""A keyboard-mode scanner for tests and the demo: types codes as key events in a given layout.

Two outputs: ``evemu_events`` writes an evemu events file that umockdev-run
replays into a mocked /dev/input/eventN (no kernel support needed, used by
tests/drivers/scanner/test_hid.py); ``HidScannerEmulator`` creates a real
virtual keyboard through /dev/uinput (needs the uinput module and write
access to /dev/uinput; a container usually has neither).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from drivers.scanner.keymap import Keymap

EV_SYN, EV_KEY = 0, 1  # linux/input-event-codes.h
SYN_REPORT = 0


def key_code(name: str) -> int:
    """The evdev key code for a key name ("KEY_A" -> 30)."""
    from evdev import ecodes

    return ecodes.ecodes[name]


def evemu_events(keymap: Keymap, codes: Iterable[str], *, interval: float = 0.001,
                 terminator: str | None = "KEY_ENTER") -> str:
    """An evemu events file typing each code then the terminator, ``interval`` s between key events."""
    lines = ["# EVEMU 1.3", f"# typed by drivers/scanner/hid_emulator.py, layout {keymap.name}"]
    step, us = round(interval * 1e6), 0
    for text in codes:
        lines.append(f"# {text!r}")
        for name, value in keymap.keystrokes(text, terminator=terminator):
            us += step
            stamp = f"{us // 1_000_000}.{us % 1_000_000:06d}"
            lines.append(f"E: {stamp} {EV_KEY:04x} {key_code(name):04x} {value}\t# {name}")
            lines.append(f"E: {stamp} {EV_SYN:04x} {SYN_REPORT:04x} 0")
    return "\n".join(lines) + "\n"


class HidScannerEmulator:
    """A virtual USB keyboard (uinput) that types codes the way a scanner set to ``keymap`` does."""

    def __init__(self, keymap: Keymap, *, name: str = "edge-agent emulated scanner", interval: float = 0.001):
        self.keymap = keymap
        self.name = name
        self.interval = interval
        self._ui: Any = None

    @property
    def path(self) -> str:
        """The /dev/input/eventN node of the virtual keyboard (after ``start``)."""
        if self._ui is None:
            raise RuntimeError("emulator not started")
        return self._ui.device.path

    async def start(self) -> None:
        """Create the virtual keyboard; OSError when /dev/uinput is missing or not writable."""
        from evdev import UInput

        keys = {key_code(k) for k in self.keymap.keys}
        keys |= {key_code(k) for k in ("KEY_LEFTSHIFT", "KEY_RIGHTALT", "KEY_LEFTCTRL", "KEY_LEFTALT", "KEY_ENTER")}
        self._ui = UInput({EV_KEY: sorted(keys)}, name=self.name)

    async def type(self, text: str, *, terminator: str | None = "KEY_ENTER") -> None:
        """Type ``text`` and the terminator, one key event every ``interval`` s."""
        if self._ui is None:
            raise RuntimeError("emulator not started")
        for name, value in self.keymap.keystrokes(text, terminator=terminator):
            self._ui.write(EV_KEY, key_code(name), value)
            self._ui.syn()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Remove the virtual keyboard (readers see it unplugged); safe to call twice."""
        ui, self._ui = self._ui, None
        if ui is not None:
            ui.close()
