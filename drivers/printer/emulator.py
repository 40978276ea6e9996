"""A receipt printer emulator for tests and ``make run``: ESC/POS on TCP (port 9100 style) and a pty.

It parses what it receives (drivers/printer/parser.py) into text lines,
barcodes, QR payloads, images and cuts, answers DLE EOT status queries from
its state flags, and can misbehave on purpose (call its controls from the
event loop it runs on)::

    emu = PrinterEmulator(port=0)        # 0: any free port; emu.port after start()
    await emu.start()
    ...                                  # print to 127.0.0.1:emu.port
    await emu.wait_for(lambda: len(emu.receipts()) >= 1)
    assert "TOTAL" in emu.receipts()[0].text
    emu.set_state(paper_end=True)        # DLE EOT now says paper out; data is held, not printed
    emu.status_replies = "silent"        # or "garbage"
    emu.drop_after(100)                  # close the connection once 100 more bytes arrived

While paper is out, the cover open or the printer offline, received data is
parsed but its elements are held, as a printer keeps data in its buffer, and
come out when the condition clears. A connection that closes ends the
document being printed (``Receipt.end == "disconnect"``) and discards a
command left incomplete; a real printer would wait for the rest of it.

``python -m drivers.printer.emulator --port 9100 [--pty] [--profile NAME]``
runs it standalone and prints what it receives.
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
from collections.abc import Callable
from typing import Literal

from drivers.printer import status as st
from drivers.printer.parser import (
    EPSON_CODE_TABLES,
    QR,
    Barcode,
    Cut,
    DocumentSplitter,
    Element,
    EscPosParser,
    Image,
    Init,
    Pulse,
    Receipt,
    Text,
)
from drivers.printer.profiles import PrinterProfile, get_profile

__all__ = [
    "PrinterEmulator", "EscPosParser", "Receipt", "Element",
    "Text", "Barcode", "QR", "Image", "Cut", "Pulse", "Init",
]

StatusReplies = Literal["normal", "silent", "garbage"]
# What a confused device sends to DLE EOT: bit 0 and bit 7 set, bits 1 and 4 clear.
GARBAGE_REPLY = b"\xe5"


class PrinterEmulator:
    """An ESC/POS printer on ``host:port`` (0 = any free port) and, with ``pty=True``, a pty."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, pty: bool = False,
                 profile: PrinterProfile | str | None = None,
                 on_element: Callable[[Element], None] | None = None):
        self.host = host
        self.port = port
        self.pty_path: str | None = None  # the serial port a driver opens, after start()
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.on_element = on_element
        # State the status replies report.
        self.paper_end = False
        self.paper_near_end = False
        self.cover_open = False
        self.offline = False
        self.cutter_error = False
        self.drawer_pin3_high = False
        self.status_replies: StatusReplies = "normal"
        self.received = 0  # bytes, over every connection
        self.connections = 0
        self._want_pty = pty
        self._drop_after: int | None = None
        self._parser = EscPosParser(self._code_tables(), answer=self._answer)
        self._docs = DocumentSplitter()
        self._held: list[Element] = []
        self._changed: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._session = asyncio.Lock()
        self._pty_fds: tuple[int, int] | None = None

    def _code_tables(self) -> dict[int, str] | None:
        if self.profile is None or self.profile.gb18030:
            return None
        return {**EPSON_CODE_TABLES, **{cp.esc_t: cp.codec for cp in self.profile.code_pages}}

    # Lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (and open the pty); ``port`` and ``pty_path`` hold where, afterwards."""
        self._changed = asyncio.Event()
        self._session = asyncio.Lock()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self._want_pty:
            self._open_pty()

    async def stop(self) -> None:
        """Stop listening, drop every connection and close the pty: a power cut.

        What was printed stays in ``receipts()``; ``start()`` again powers the
        printer back on, on the same port, in its power-on state.
        """
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            # Python 3.11's wait_closed does not wait for the connection handlers:
            # wait here, so none is left to be cancelled (and logged) at loop close.
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=2)
            await self._server.wait_closed()
            self._server = None
        if self._pty_fds is not None:
            master, slave = self._pty_fds
            asyncio.get_running_loop().remove_reader(master)
            os.close(master)
            os.close(slave)
            self._pty_fds = None
        self._parser.reset()
        self._held.clear()  # what waited in the receive buffer does not survive a power cut
        self._docs.close("disconnect")

    async def __aenter__(self) -> PrinterEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Controls --------------------------------------------------------------------

    def set_state(self, **flags: bool) -> None:
        """Change state flags (paper_end, paper_near_end, cover_open, offline, cutter_error, drawer_pin3_high)."""
        for name, value in flags.items():
            if name not in ("paper_end", "paper_near_end", "cover_open", "offline", "cutter_error",
                            "drawer_pin3_high"):
                raise TypeError(f"no state flag {name!r}")
            setattr(self, name, bool(value))
        if not self.stopped and self._held:
            held, self._held = self._held, []
            for e in held:
                self._add(e)
        self._notify()

    def drop_after(self, n: int) -> None:
        """Close the TCP connection once ``n`` more bytes have arrived (one time; they are printed)."""
        self._drop_after = n

    @property
    def stopped(self) -> bool:
        """True while the printer would not print (paper out, cover open, offline, cutter error)."""
        return self.paper_end or self.cover_open or self.offline or self.cutter_error

    def status(self) -> st.PrinterStatus:
        """The status the printer reports now."""
        return st.PrinterStatus(
            online=not self.stopped,
            cover_open=self.cover_open,
            paper_end=self.paper_end,
            paper_near_end=self.paper_near_end,
            error=self.cutter_error,
            cutter_error=self.cutter_error,
            drawer_pin3_high=self.drawer_pin3_high,
        )

    # What was printed --------------------------------------------------------

    def receipts(self) -> list[Receipt]:
        """Every document printed so far, split at cuts; the last may still be open."""
        return self._docs.all()

    @property
    def held(self) -> list[Element]:
        """Elements received while stopped, waiting to be printed."""
        return list(self._held)

    @property
    def status_queries(self) -> int:
        """DLE EOT queries received."""
        return self._parser.status_queries

    def clear(self) -> None:
        """Forget every printed document."""
        self._docs = DocumentSplitter()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked after every change); TimeoutError otherwise."""
        changed = self._changed
        assert changed is not None, "start() the emulator first"
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()  # before the check: a change after it sets the event again
                if predicate():
                    return
                await changed.wait()

    # Internals -----------------------------------------------------------------

    def _answer(self, n: int) -> bytes:
        if self.status_replies == "silent":
            return b""
        if self.status_replies == "garbage":
            return GARBAGE_REPLY
        return bytes((st.reply(n, self.status()),))

    def _add(self, element: Element) -> None:
        if self.stopped and not isinstance(element, Init):
            self._held.append(element)
            return
        self._docs.add(element)
        if self.on_element is not None:
            self.on_element(element)

    def _receive(self, data: bytes, droppable: bool = True) -> tuple[bytes, bool]:
        """Parse ``data``; (the replies, True if the link is to be dropped now)."""
        drop = False
        if droppable and self._drop_after is not None:
            if len(data) >= self._drop_after:
                data, drop = data[:self._drop_after], True
                self._drop_after = None
            else:
                self._drop_after -= len(data)
        self.received += len(data)
        replies = self._parser.feed(data)
        for e in self._parser.take():
            self._add(e)
        return replies, drop

    def _link_closed(self) -> None:
        self._parser.drop_pending()
        self._docs.close("disconnect")
        self._notify()

    def _notify(self) -> None:
        # Wakes every wait_for; call it from the emulator's event loop thread.
        if self._changed is not None:
            self._changed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            # One job at a time, as on a printer's port 9100: a second client's
            # bytes wait in its socket until the first hangs up.
            async with self._session:
                self.connections += 1
                try:
                    await self._session_loop(reader, writer)
                finally:
                    self._link_closed()
        except ConnectionError:
            pass  # the client reset the connection: the same as it hanging up
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _session_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            replies, drop = self._receive(data)
            if replies:
                writer.write(replies)
            self._notify()
            if drop:
                writer.transport.abort()  # a pulled cable or a power cut: no goodbye
                return
            await writer.drain()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        # Raw mode: every byte as sent, no echo, no CR/LF translation.
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        # The emulator keeps the slave open too, so the master never reads EIO
        # between one client closing the port and the next opening it.
        self._pty_fds = (master, slave)
        self.pty_path = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._pty_readable, master)

    def _pty_readable(self, master: int) -> None:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            asyncio.get_running_loop().remove_reader(master)
            return
        replies, _ = self._receive(data, droppable=False)
        if replies:
            with contextlib.suppress(OSError):
                os.write(master, replies)
        self._notify()


# Standalone ------------------------------------------------------------------------


def describe(e: Element) -> str:
    """One element as a line of text, as the standalone emulator prints it."""
    if isinstance(e, Text):
        return e.line
    if isinstance(e, Barcode):
        return f"[barcode {e.kind}: {e.data}]"
    if isinstance(e, QR):
        return f"[QR: {e.data}]"
    if isinstance(e, Image):
        grid = e.qr_modules()
        return f"[image {e.width}x{e.height}{' (a QR code)' if grid else ''}]"
    if isinstance(e, Cut):
        return "-" * 16 + (" partial cut " if e.partial else " full cut ") + "-" * 16
    if isinstance(e, Pulse):
        return f"[drawer kick, pin {e.pin}]"
    return ""


async def _main(args: argparse.Namespace) -> None:
    def show(e: Element) -> None:
        if not isinstance(e, Init):
            print(describe(e), flush=True)

    emu = PrinterEmulator(args.host, args.port, pty=args.pty, profile=args.profile, on_element=show)
    await emu.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    where = f"tcp://{emu.host}:{emu.port}" + (f" and {emu.pty_path}" if emu.pty_path else "")
    print(f"ESC/POS printer emulator on {where}; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        await done.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until Ctrl-C, printing what it receives."""
    ap = argparse.ArgumentParser(prog="python -m drivers.printer.emulator", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--pty", action="store_true", help="also open a pty and print its path")
    ap.add_argument("--profile", default=None, help="printer profile whose code tables to decode with")
    args = ap.parse_args(argv)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
