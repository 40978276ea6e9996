"""Bytes for a 2x20 pole display, in the CD5220 or the Epson DM-D command set; no I/O.

Each ``CommandSet`` holds the few commands the driver uses; ``screen`` draws
both lines whole (overwrite mode, each line padded to 20 columns), so a
screen never depends on what was shown before it. Texts are made ASCII first
(``ascii_text``): see the package docstring for what that keeps.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

COLUMNS = 20
ROWS = 2

ESC, FF, US, DC1 = 0x1B, 0x0C, 0x1F, 0x11


class Protocol(str, enum.Enum):
    """Which command set the display speaks (``protocol:`` in devices.yaml)."""

    CD5220 = "cd5220"
    EPSON = "epson"


@dataclass(frozen=True)
class CommandSet:
    """The commands the driver sends, as bytes, for one command set."""

    init: bytes            # back to power-on settings, screen cleared
    clear: bytes           # blank both lines, cursor home
    overwrite: bytes       # text at the end of a line does not scroll the screen
    cursor_off: bytes
    move_prefix: bytes     # followed by column (1-20) and line (1-2), one byte each

    def move(self, column: int, row: int) -> bytes:
        """Put the cursor at ``column`` (1-20) of line ``row`` (1-2)."""
        if not (1 <= column <= COLUMNS and 1 <= row <= ROWS):
            raise ValueError(f"no position {column},{row} on a {COLUMNS}x{ROWS} display")
        return self.move_prefix + bytes((column, row))


COMMANDS: dict[Protocol, CommandSet] = {
    # CD5220: ESC l x y moves the cursor; ESC DC1 overwrite mode; ESC _ 0 cursor off.
    Protocol.CD5220: CommandSet(init=bytes((ESC, 0x40)), clear=bytes((FF,)), overwrite=bytes((ESC, DC1)),
                                cursor_off=bytes((ESC, 0x5F, 0)), move_prefix=bytes((ESC, 0x6C))),
    # Epson DM-D: US $ x y moves the cursor; US MD1 (US 0x01) overwrite mode; US C 0 cursor off.
    Protocol.EPSON: CommandSet(init=bytes((ESC, 0x40)), clear=bytes((FF,)), overwrite=bytes((US, 0x01)),
                               cursor_off=bytes((US, 0x43, 0)), move_prefix=bytes((US, 0x24))),
}


def ascii_text(text: str) -> str:
    """``text`` as the display can show it: accents dropped, full-width forms folded, other
    non-ASCII characters and control characters removed, runs of spaces made one."""
    folded = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in folded if " " <= c <= "~")
    return " ".join(kept.split())


def fit(text: str) -> str:
    """``text`` (already ASCII) cut or padded to exactly one line."""
    return text[:COLUMNS].ljust(COLUMNS)


def amount(value: Decimal) -> str:
    """An amount with two decimals, as the display shows it."""
    return f"{value.quantize(Decimal('0.01')):.2f}"


def item_line(name: str, price: Decimal, fallback: str = "") -> str:
    """A product and its price on one line: the name cut to leave room for the price at the right."""
    shown = ascii_text(name) or ascii_text(fallback)
    price_text = amount(price)
    room = COLUMNS - len(price_text) - 1
    return fit(shown[:room].ljust(room) + " " + price_text)


def total_line(total: Decimal, currency: str = "") -> str:
    """``TOTAL`` at the left and the amount, with its currency when it fits, at the right."""
    value = amount(total)
    with_currency = f"{ascii_text(currency)} {value}".strip()
    right = with_currency if len(with_currency) <= COLUMNS - 6 else value
    return fit("TOTAL" + right.rjust(COLUMNS - 5))


def centred(text: str) -> str:
    """``text`` in the middle of a line."""
    return fit(ascii_text(text)[:COLUMNS].center(COLUMNS))


def setup(cmds: CommandSet) -> bytes:
    """What the driver sends once the port is open: initialise, overwrite mode, no cursor, blank."""
    return cmds.init + cmds.overwrite + cmds.cursor_off + cmds.clear


def _line_bytes(line: str) -> bytes:
    """One line's 20 bytes; a character outside printable ASCII (a caller's slip) shows as ``?``."""
    return "".join(c if " " <= c <= "~" else "?" for c in fit(line)).encode("ascii")


def screen(cmds: CommandSet, line1: str, line2: str) -> bytes:
    """Both lines drawn whole: each line's start, then its 20 characters (lines as ``item_line`` and
    the others make them)."""
    return cmds.move(1, 1) + _line_bytes(line1) + cmds.move(1, 2) + _line_bytes(line2)
