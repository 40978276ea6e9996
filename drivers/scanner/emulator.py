"""A serial barcode scanner on a pty, for tests and ``make run``.

The agent opens ``path``, a symlink to the pty's device, exactly as it opens
``/dev/serial/by-id/...`` for a real scanner; the emulator writes what a
scanner sends (optional AIM identifier, the code, the suffix) on the other
side. ``unplug`` closes the pty and removes the link, which is what the
kernel does when a USB-serial scanner is pulled; ``plug`` makes a new one at
the same path.

    python -m drivers.scanner.emulator --path .run/dev/scanner-1 --every 5 6901234567892 RM1:M-0001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from pathlib import Path


class SerialScannerEmulator:
    """One emulated serial scanner at ``path``."""

    def __init__(self, path: Path | str, suffix: bytes = b"\r", aim: str | None = None):
        self.path = Path(path)
        self.suffix = suffix
        self.aim = aim  # e.g. "]E0": sent before every code
        self._master: int | None = None
        self.scans = 0

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> "SerialScannerEmulator":
        """Create the pty and point ``path`` at it."""
        self.unplug()
        master, slave = os.openpty()
        # Raw: no echo back to us, no CR -> LF translation on the way in.
        tty.setraw(slave, termios.TCSANOW)
        name = os.ttyname(slave)
        os.close(slave)  # the pty lives while the master is open; the agent opens it by name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        tmp.replace(self.path)
        self._master = master
        return self

    def unplug(self) -> None:
        """Remove the device: the link goes, and reads on the pty fail."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def scan(self, code: str, *, suffix: bytes | None = None, aim: str | None = None) -> None:
        """Send one code as the scanner would: AIM identifier, code, suffix."""
        prefix = aim if aim is not None else (self.aim or "")
        self.write((prefix + code).encode() + (self.suffix if suffix is None else suffix))
        self.scans += 1

    def write(self, data: bytes) -> None:
        """Send raw bytes (line noise, partial frames)."""
        if self._master is None:
            raise RuntimeError("the emulated scanner is unplugged")
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view):]

    def close(self) -> None:
        """Unplug for good."""
        self.unplug()


async def _demo(args: argparse.Namespace) -> None:
    emu = SerialScannerEmulator(args.path, suffix={"cr": b"\r", "crlf": b"\r\n", "lf": b"\n"}[args.suffix]).plug()
    print(f"scanner emulator at {args.path}: scanning one of {len(args.codes)} codes every {args.every} s",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    i = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.every):
                    await stop.wait()
            if not stop.is_set() and args.codes:
                emu.scan(args.codes[i % len(args.codes)])
                i += 1
    finally:
        emu.close()


def main() -> int:
    """Run one emulated scanner until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="where to put the link to the pty")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between scans")
    parser.add_argument("--suffix", choices=("cr", "crlf", "lf"), default="cr")
    parser.add_argument("codes", nargs="*", help="codes to scan in turn")
    asyncio.run(_demo(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
