"""Real-time status (DLE EOT n) of an ESC/POS printer: the queries and their replies. No I/O.

Epson ESC/POS Command Reference, "DLE EOT: Transmit real-time status"
(https://download4.epson.biz/sec_pubs/pos/reference_en/escpos/dle_eot.html).
The printer answers ``DLE EOT n`` with one byte even while offline, out of
paper or with the cover open; that is what makes it usable before a job.
In every reply, for n = 1 to 4, bit 0 is fixed to 0, bit 1 to 1, bit 4 to 1
and bit 7 to 0 ("Not used. Fixed to Off/On"): a byte that breaks that
pattern is not a status byte, and the stream is out of step or not ESC/POS.

    n=1 printer status        bit 2 drawer kick-out connector pin 3 HIGH
                              bit 3 offline
                              bit 5 waiting for online recovery
                              bit 6 paper feed button pressed
    n=2 offline cause         bit 2 cover open
                              bit 3 paper being fed by the feed button
                              bit 5 printing stopped by a paper end
                              bit 6 an error occurred
    n=3 error cause           bit 3 autocutter error
                              bit 5 unrecoverable error
                              bit 6 automatically recoverable error (head too hot, ...)
                              (bit 2 is "recoverable error" on some models and
                              undefined on others, so it is not read)
    n=4 roll paper sensor     bits 2,3 paper near end (both set)
                              bits 5,6 paper end (both set)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_core.errors import DeviceProtocolError

DLE_EOT = b"\x10\x04"

# The four queries, in the order ``parse_status`` expects their replies.
STATUS_QUERIES: tuple[int, ...] = (1, 2, 3, 4)

# Fixed bits of every DLE EOT reply: bits 0 and 7 off, bits 1 and 4 on.
FIXED_MASK = 0b1001_0011
FIXED_VALUE = 0b0001_0010


@dataclass(frozen=True)
class PrinterStatus:
    """What the four DLE EOT replies say, one flag per fact."""

    online: bool = True
    cover_open: bool = False
    paper_end: bool = False
    paper_near_end: bool = False
    error: bool = False  # n=2 bit 6: some error stopped the printer
    cutter_error: bool = False
    unrecoverable_error: bool = False
    auto_recoverable_error: bool = False
    # The level of pin 3 of the drawer kick-out connector. Whether HIGH means
    # open or closed depends on the drawer's switch, so it is reported as is.
    drawer_pin3_high: bool = False
    waiting_recovery: bool = False
    feed_button: bool = False


def query(n: int) -> bytes:
    """The ``DLE EOT n`` bytes asking for status ``n`` (1 to 4)."""
    if n not in STATUS_QUERIES:
        raise ValueError(f"DLE EOT n must be one of {STATUS_QUERIES}, got {n}")
    return DLE_EOT + bytes((n,))


def all_queries() -> bytes:
    """The four queries back to back; the printer answers with four bytes in the same order."""
    return b"".join(query(n) for n in STATUS_QUERIES)


def check_reply(n: int, reply: int) -> int:
    """``reply`` if it is a well-formed answer to ``DLE EOT n``; DeviceProtocolError if not."""
    if not 0 <= reply <= 255:
        raise DeviceProtocolError(f"DLE EOT {n}: {reply} is not a byte")
    if reply & FIXED_MASK != FIXED_VALUE:
        raise DeviceProtocolError(
            f"DLE EOT {n}: reply 0x{reply:02x} has the fixed bits wrong "
            f"(bits 1 and 4 must be 1, bits 0 and 7 must be 0): not a status byte"
        )
    return reply


def parse_status(replies: bytes | Iterable[int]) -> PrinterStatus:
    """The status in the replies to DLE EOT 1, 2, 3 and 4, one byte each, in that order."""
    data = bytes(replies)
    if len(data) != len(STATUS_QUERIES):
        what = "no reply" if not data else f"{len(data)} byte{'' if len(data) == 1 else 's'} {data[:16]!r}"
        raise DeviceProtocolError(f"expected {len(STATUS_QUERIES)} status bytes (DLE EOT 1-4), got {what}")
    printer, offline, error, paper = (check_reply(n, b) for n, b in zip(STATUS_QUERIES, data))
    return PrinterStatus(
        online=not printer & 0x08,
        drawer_pin3_high=bool(printer & 0x04),
        waiting_recovery=bool(printer & 0x20),
        feed_button=bool(printer & 0x40),
        cover_open=bool(offline & 0x04),
        # The paper end stop (n=2 bit 5) or the end sensor (n=4 bits 5, 6):
        # some printers set only one of the two sensor bits, so either counts.
        paper_end=bool(offline & 0x20) or bool(paper & 0x60),
        error=bool(offline & 0x40),
        cutter_error=bool(error & 0x08),
        unrecoverable_error=bool(error & 0x20),
        auto_recoverable_error=bool(error & 0x40),
        paper_near_end=bool(paper & 0x0C),
    )


def reply(n: int, status: PrinterStatus) -> int:
    """The byte a printer in ``status`` answers to ``DLE EOT n`` (what the emulator sends)."""
    b = FIXED_VALUE
    if n == 1:
        b |= (0x04 if status.drawer_pin3_high else 0) | (0 if status.online else 0x08)
        b |= (0x20 if status.waiting_recovery else 0) | (0x40 if status.feed_button else 0)
    elif n == 2:
        b |= (0x04 if status.cover_open else 0) | (0x08 if status.feed_button else 0)
        b |= (0x20 if status.paper_end else 0) | (0x40 if status.error else 0)
    elif n == 3:
        b |= (0x08 if status.cutter_error else 0) | (0x20 if status.unrecoverable_error else 0)
        b |= 0x40 if status.auto_recoverable_error else 0
    elif n == 4:
        # The near-end sensor sits before the end sensor: at paper end it sees no paper either.
        b |= (0x0C if status.paper_near_end or status.paper_end else 0) | (0x60 if status.paper_end else 0)
    else:
        raise ValueError(f"DLE EOT n must be one of {STATUS_QUERIES}, got {n}")
    return b


def problem(status: PrinterStatus) -> str | None:
    """Why the printer cannot print now ("paper out", "cover open", ...), or None if it can."""
    if status.cover_open:
        return "cover open"
    if status.paper_end:
        return "paper out"
    if status.cutter_error:
        return "cutter error"
    if status.unrecoverable_error:
        return "unrecoverable error"
    if status.auto_recoverable_error:
        return "recoverable error (print head too hot?)"
    if status.error:
        return "printer error"
    if not status.online:
        return "offline"
    return None


def warning(status: PrinterStatus) -> str | None:
    """What to tell staff although printing works ("paper near end"), or None."""
    if status.paper_near_end and not status.paper_end:
        return "paper near end"
    return None
