"""Test support: the printer emulator on its own event loop thread, for tests that drive a real agent process.

The emulator is asyncio; a test talking to an agent over HTTP is not. This
runs the emulator's loop in a thread and calls into it safely::

    with EmulatorThread(profile="epson-tm-t88") as printer:
        ...                                       # the agent prints to 127.0.0.1:printer.port
        printer.wait_for(lambda emu: len(emu.receipts()) == 1)
        printer.call(lambda emu: emu.set_state(paper_end=True))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from drivers.printer.emulator import Element, PrinterEmulator, Receipt

T = TypeVar("T")


class EmulatorThread:
    """A ``PrinterEmulator`` on a loop in a daemon thread; ``call`` and ``wait_for`` run in that loop."""

    def __init__(self, *, profile: str | None = None, port: int = 0,
                 on_element: Callable[[PrinterEmulator, Element], None] | None = None):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="printer-emulator", daemon=True)
        hook = (lambda e: on_element(self.emu, e)) if on_element else None
        self.emu = PrinterEmulator(port=port, profile=profile, on_element=hook)

    @property
    def port(self) -> int:
        return self.emu.port

    def start(self) -> EmulatorThread:
        """Start the loop and the emulator (or power it on again after ``power_off``)."""
        if not self._thread.is_alive():
            self._thread.start()
        self._run(self.emu.start())
        return self

    def power_off(self) -> None:
        """A power cut: ``emu.stop()``; ``start()`` powers it on again on the same port."""
        self._run(self.emu.stop())

    def close(self) -> None:
        """Stop the emulator and its loop."""
        if self._thread.is_alive():
            self._run(self.emu.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def call(self, fn: Callable[[PrinterEmulator], T]) -> T:
        """``fn(emu)`` run in the emulator's loop; its result."""

        async def in_loop() -> T:
            return fn(self.emu)

        return self._run(in_loop())

    def receipts(self) -> list[Receipt]:
        """Every document printed so far."""
        return self.call(lambda emu: emu.receipts())

    def wait_for(self, predicate: Callable[[PrinterEmulator], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(emu)`` holds (checked in the loop after every change)."""
        self._run(self.emu.wait_for(lambda: predicate(self.emu), timeout), timeout + 1)

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def printer_device(port: int, **keys: Any) -> dict[str, Any]:
    """A ``printer.escpos`` devices.yaml entry for the emulator on ``port``, quick to notice trouble; ``keys`` add or override."""
    return {"id": "backroom", "kind": "printer.escpos", "connection": "tcp", "address": f"127.0.0.1:{port}",
            "profile": "generic-80-gb18030", "status_timeout": 0.5, "paper_check_interval": 0.1, **keys}
