"""A pole display on a pty, for tests and ``make run``: it parses the bytes back into its two lines.

``VfdScreen`` is the parser: a 2x20 character grid and a cursor, fed bytes
in either command set (drivers/display/protocol.py), sequences split across
reads included. It knows what a display does with what the driver sends and
a little more (home, carriage return, line feed, clear line); a command it
does not know is counted in ``unknown`` and skipped, as a display ignores it.

``PoleDisplayEmulator`` makes a pty and links ``path`` to it, as the scanner
emulator does; the agent opens ``path`` like ``/dev/serial/by-id/...``.
``DemoPole`` is the one ``make run`` starts: it also writes the screen, as two
lines between bars, to a text file on every change.

    python -m drivers.display.emulator --path .run/dev/pole-1 --protocol epson
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import termios
import tty
from collections.abc import Callable
from pathlib import Path

from drivers.base import DemoSite
from drivers.display.protocol import COLUMNS, ESC, FF, ROWS, US, Protocol

HOME, CR, LF, CAN, BS = 0x0B, 0x0D, 0x0A, 0x18, 0x08

# Bytes after the lead byte (ESC or US) for each command, by command set; -1: the parameter bytes
# are the command's (a cursor move takes two).
_ARGS: dict[Protocol, dict[int, dict[int, int]]] = {
    Protocol.CD5220: {ESC: {0x40: 0, 0x11: 0, 0x12: 0, 0x13: 0, 0x5F: 1, 0x6C: 2, 0x74: 1, 0x52: 1}},
    Protocol.EPSON: {ESC: {0x40: 0, 0x74: 1, 0x52: 1, 0x3D: 1},
                     US: {0x01: 0, 0x02: 0, 0x03: 0, 0x43: 1, 0x24: 2, 0x42: 0, 0x0A: 0, 0x0D: 0, 0x58: 1}},
}
_MOVE = {Protocol.CD5220: (ESC, 0x6C), Protocol.EPSON: (US, 0x24)}


class VfdScreen:
    """What a 2x20 display shows after the bytes fed to it."""

    def __init__(self, protocol: Protocol = Protocol.CD5220):
        self.protocol = protocol
        self.grid = [[" "] * COLUMNS for _ in range(ROWS)]
        self.row = self.col = 0
        self.unknown = 0   # commands it did not know and skipped
        self.inits = 0     # ESC @ seen
        self._pending = b""

    @property
    def lines(self) -> tuple[str, str]:
        """The two lines as shown, 20 characters each."""
        return "".join(self.grid[0]), "".join(self.grid[1])

    @property
    def text(self) -> str:
        """Both lines, trailing spaces cut, joined by a newline."""
        return "\n".join(line.rstrip() for line in self.lines)

    def clear(self) -> None:
        self.grid = [[" "] * COLUMNS for _ in range(ROWS)]
        self.row = self.col = 0

    def feed(self, data: bytes) -> None:
        """Take bytes as the display receives them."""
        buf = self._pending + data
        i = 0
        while i < len(buf):
            used = self._one(buf, i)
            if used == 0:  # a command cut by the read: wait for the rest
                break
            i += used
        self._pending = buf[i:]

    def _one(self, buf: bytes, i: int) -> int:
        """Apply the command or character at ``buf[i]``; the bytes it took, 0 if it is incomplete."""
        b = buf[i]
        table = _ARGS[self.protocol].get(b)
        if table is not None:
            if i + 1 >= len(buf):
                return 0
            op = buf[i + 1]
            n = table.get(op)
            if n is None:
                self.unknown += 1
                return 2
            if i + 2 + n > len(buf):
                return 0
            self._command(b, op, buf[i + 2:i + 2 + n])
            return 2 + n
        if b == FF:
            self.clear()
        elif b == HOME:
            self.row = self.col = 0
        elif b == CR:
            self.col = 0
        elif b == LF:
            self.row = min(self.row + 1, ROWS - 1)
        elif b == BS:
            self.col = max(self.col - 1, 0)
        elif b == CAN:
            self.grid[self.row] = [" "] * COLUMNS
            self.col = 0
        elif 0x20 <= b <= 0x7E:
            self._put(chr(b))
        else:
            self.unknown += 1
        return 1

    def _command(self, lead: int, op: int, args: bytes) -> None:
        if (lead, op) == (ESC, 0x40):
            self.inits += 1
            self.clear()
        elif (lead, op) == _MOVE[self.protocol]:
            col, row = args
            if 1 <= col <= COLUMNS and 1 <= row <= ROWS:
                self.col, self.row = col - 1, row - 1
            else:
                self.unknown += 1
        # Modes, cursor, code page, brightness: nothing to show.

    def _put(self, ch: str) -> None:
        """Overwrite mode: write at the cursor; past the end of a line, on to the next, then home."""
        self.grid[self.row][self.col] = ch
        self.col += 1
        if self.col == COLUMNS:
            self.col = 0
            self.row = (self.row + 1) % ROWS


class PoleDisplayEmulator:
    """A pole display at ``path`` (a link to a pty) that shows what the agent writes."""

    def __init__(self, path: Path | str, protocol: Protocol = Protocol.CD5220,
                 on_change: Callable[[VfdScreen], None] | None = None):
        self.path = Path(path)
        self.screen = VfdScreen(protocol)
        self.on_change = on_change
        self.received = 0
        self._fds: tuple[int, int] | None = None
        self._changed: asyncio.Event | None = None

    async def start(self) -> None:
        """Make the pty, point ``path`` at it and read what arrives."""
        master, slave = os.openpty()
        # Raw: no echo back to the agent, no CR/LF translation of the display's bytes.
        tty.setraw(slave, termios.TCSANOW)
        name = os.ttyname(slave)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        tmp.replace(self.path)
        # The slave stays open here too: without it the master reads EIO whenever the agent has the
        # port closed (between its retries), and the reader would spin.
        self._fds = (master, slave)
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        assert self._fds is not None
        try:
            data = os.read(self._fds[0], 4096)
        except OSError:
            return
        self.received += len(data)
        self.screen.feed(data)
        if self.on_change is not None:
            self.on_change(self.screen)
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, predicate: Callable[[VfdScreen], bool], timeout: float = 30.0) -> VfdScreen:
        """Wait until ``predicate(screen)`` holds; TimeoutError with what it shows if not in ``timeout`` s."""
        assert self._changed is not None, "start() first"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.screen):
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"the display shows {self.screen.lines!r}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return self.screen

    async def stop(self) -> None:
        """Unplug: the link goes and the pty closes."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._fds is not None:
            master, slave = self._fds
            self._fds = None
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)


def render(screen: VfdScreen) -> str:
    """The screen as text between bars, as the demo writes it to its file."""
    bar = "+" + "-" * COLUMNS + "+"
    return "\n".join([bar, *(f"|{line}|" for line in screen.lines), bar]) + "\n"


class DemoPole:
    """The pole display ``make run`` starts: a pty emulator whose screen is written to ``screen_file``."""

    tcp_port: int | None = None

    def __init__(self, path: Path, protocol: Protocol, screen_file: Path):
        self.screen_file = screen_file
        self.emulator = PoleDisplayEmulator(path, protocol, on_change=self._write)

    def _write(self, screen: VfdScreen) -> None:
        tmp = self.screen_file.with_name(self.screen_file.name + ".new")
        tmp.write_text(render(screen), encoding="ascii")
        tmp.replace(self.screen_file)

    async def start(self) -> None:
        """Make the pty at the device's port and a blank screen file."""
        self.screen_file.parent.mkdir(parents=True, exist_ok=True)
        self._write(self.emulator.screen)
        await self.emulator.start()

    async def stop(self) -> None:
        """Unplug the display."""
        await self.emulator.stop()

    def banner(self) -> list[tuple[str, str]]:
        """Where its screen shows."""
        return [("Pole display", f"watch -n1 cat {self.screen_file}")]


def demo_emulator(port: str, protocol: Protocol, device_id: str, site: DemoSite) -> DemoPole | None:
    """A pty display for a relative ``port`` (resolved from the agent's working directory), else None (a
    real display at /dev/serial/by-id/...)."""
    if os.path.isabs(port):
        return None
    return DemoPole(site.workdir / port, protocol, site.run_dir / f"{device_id}.screen.txt")


async def _main(args: argparse.Namespace) -> None:
    emu = PoleDisplayEmulator(args.path, Protocol(args.protocol),
                              on_change=lambda s: print(render(s), flush=True))
    await emu.start()
    print(f"pole display ({args.protocol}) at {args.path}; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emu.stop()


def main() -> int:
    """Run one emulated display until Ctrl-C, printing its screen on every change."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="where the link to the pty goes")
    parser.add_argument("--protocol", choices=[p.value for p in Protocol], default=Protocol.CD5220.value)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
