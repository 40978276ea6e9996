"""The serial scanner's stand-in for ``make run``: a pty at the device's relative ``port`` that
scans the demo's codes in turn, every ``EDGE_DEMO_SCAN_EVERY`` seconds (15 by default)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from drivers.base import DemoSite
from drivers.scanner.emulator import SerialScannerEmulator

# What the demo scanners scan in turn: products of demo/catalog.json, a code
# the store does not sell, a bad check digit, and a member card.
DEMO_SCANS = ["6901234567892", "6901234567946", "4006381333931", "6901234567890", "RM1:M-0042", "6901234567915"]


def scan_every(environ: Mapping[str, str]) -> float:
    """Seconds between demo scans (``EDGE_DEMO_SCAN_EVERY``, 15 by default)."""
    return float(environ.get("EDGE_DEMO_SCAN_EVERY", "15"))


class DemoScanner:
    """A pty scanner emulator that scans ``DEMO_SCANS`` in turn, every ``every`` seconds."""

    tcp_port: int | None = None

    def __init__(self, path: Path, every: float):
        self.emulator = SerialScannerEmulator(path)
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make the pty and its link at the device's port, and start scanning."""
        self.emulator.plug()
        self._task = asyncio.create_task(self._scan())

    async def _scan(self) -> None:
        i = 0
        while True:
            await asyncio.sleep(self.every)  # a demo's pace, not synchronisation
            self.emulator.scan(DEMO_SCANS[i % len(DEMO_SCANS)])
            i += 1

    async def stop(self) -> None:
        """Stop scanning and remove the pty."""
        if self._task is not None:
            self._task.cancel()
        self.emulator.close()

    def banner(self) -> list[tuple[str, str]]:
        """Nothing of its own: the live feed's line says what it scans."""
        return []


def demo_emulator(port: str, site: DemoSite) -> DemoScanner | None:
    """A pty scanner for a relative ``port`` (resolved from the agent's working directory), else None (a real
    scanner at /dev/serial/by-id/...)."""
    if os.path.isabs(port):
        return None
    return DemoScanner(site.workdir / port, scan_every(site.environ))
