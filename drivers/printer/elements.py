"""What a printer puts on paper, as the parser (drivers/printer/parser.py) reads it back. No I/O.

Elements (text lines, barcodes, QR codes, images, cuts, drawer pulses, the
ESC @ that starts a document) and ``Receipt``, one document's elements,
with ``DocumentSplitter`` to cut an element stream into documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Align = Literal["left", "center", "right"]


# Elements --------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """One printed line of text and the style it was printed in."""

    line: str
    bold: bool = False
    double: bool = False  # double width or height (ESC ! or GS !)
    align: Align = "left"
    invert: bool = False  # white on black (GS B)
    small: bool = False  # Font B (ESC M 1)


@dataclass(frozen=True)
class Barcode:
    """A 1D barcode (GS k); ``data`` as a scanner would read it."""

    kind: str
    data: str


@dataclass(frozen=True)
class QR:
    """A QR code printed by the printer itself (GS ( k), with its payload."""

    data: str


@dataclass(frozen=True)
class Image:
    """A bit image; ``rows`` are packed 8 dots a byte, leftmost dot in the top bit, 1 = black."""

    width: int
    height: int
    rows: tuple[bytes, ...] = field(repr=False)

    def dark(self, x: int, y: int) -> bool:
        """True where the dot at (x, y) is printed."""
        return bool(self.rows[y][x >> 3] & (0x80 >> (x & 7)))

    def qr_modules(self) -> list[list[bool]] | None:
        """The module grid of a QR code printed as this image (no quiet zone), or None if it is not one."""
        ys = [y for y in range(self.height) if any(self.rows[y])]
        if not ys:
            return None
        xs = [x for x in range(self.width) if any(self.dark(x, y) for y in (ys[0], ys[-1]))]
        left, top, bottom = xs[0], ys[0], ys[-1]
        run = 0
        while left + run < self.width and self.dark(left + run, top):
            run += 1  # the top-left finder pattern: a 7-module dark run
        if run == 0 or run % 7:
            return None
        size_dots = bottom - top + 1
        module = run // 7
        n = size_dots // module
        if size_dots % module or n < 21 or (n - 17) % 4 or left + n * module > self.width:
            return None
        half = module // 2
        return [[self.dark(left + c * module + half, top + r * module + half) for c in range(n)] for r in range(n)]


@dataclass(frozen=True)
class Cut:
    """A paper cut (GS V)."""

    partial: bool


@dataclass(frozen=True)
class Pulse:
    """A cash-drawer kick (ESC p or DLE DC4 1) on connector pin 2 or 5."""

    pin: int


@dataclass(frozen=True)
class Init:
    """ESC @: the printer was initialized (where a new document starts)."""


Element = Text | Barcode | QR | Image | Cut | Pulse | Init


# Documents -------------------------------------------------------------------

DocumentEnd = Literal["cut", "init", "disconnect", "open"]


@dataclass(frozen=True)
class Receipt:
    """One document as printed: its elements (the cut included) and what ended it.

    ``end``: "cut"; "init" (the next document's ESC @, printers without cutter);
    "disconnect" (the connection closed: a finished job on a printer without
    cutter, or a job cut short); "open" (still being received).
    """

    elements: tuple[Element, ...]
    end: DocumentEnd

    @property
    def lines(self) -> list[str]:
        """Every text line, in order."""
        return [e.line for e in self.elements if isinstance(e, Text)]

    @property
    def text(self) -> str:
        """The text lines joined with newlines."""
        return "\n".join(self.lines)

    @property
    def barcodes(self) -> list[Barcode]:
        """Every barcode, in order."""
        return [e for e in self.elements if isinstance(e, Barcode)]

    @property
    def qr_codes(self) -> list[QR]:
        """Every printer-drawn QR code, in order."""
        return [e for e in self.elements if isinstance(e, QR)]

    @property
    def images(self) -> list[Image]:
        """Every image, in order."""
        return [e for e in self.elements if isinstance(e, Image)]

    @property
    def cuts(self) -> list[Cut]:
        """Every cut (one, at the end, for a document from a printer with a cutter)."""
        return [e for e in self.elements if isinstance(e, Cut)]

    def transcript(self) -> str:
        """A readable, stable rendering (golden files): one line per element, styles as tags."""
        out: list[str] = []
        for e in self.elements:
            if isinstance(e, Text):
                tags = "".join(
                    tag for tag, on in (("[B]", e.bold), ("[2]", e.double), ("[INV]", e.invert), ("[S]", e.small),
                                        ("[C]", e.align == "center"), ("[R]", e.align == "right")) if on
                )
                out.append(f"{tags} {e.line}" if tags else e.line)
            elif isinstance(e, Barcode):
                out.append(f"<BARCODE {e.kind} {e.data}>")
            elif isinstance(e, QR):
                out.append(f"<QR {e.data}>")
            elif isinstance(e, Image):
                grid = e.qr_modules()
                qr = f" qr {len(grid)}x{len(grid)}" if grid else ""
                out.append(f"<IMAGE {e.width}x{e.height}{qr}>")
            elif isinstance(e, Cut):
                out.append("<CUT partial>" if e.partial else "<CUT full>")
            elif isinstance(e, Pulse):
                out.append(f"<DRAWER pin {e.pin}>")
        out.append(f"<END {self.end}>")
        return "\n".join(out) + "\n"


class DocumentSplitter:
    """Collects elements into documents, closing one at each cut or at an ESC @ after content."""

    def __init__(self) -> None:
        self.documents: list[Receipt] = []
        self.current: list[Element] = []

    def add(self, element: Element) -> None:
        """Take the next element."""
        if isinstance(element, Init):
            self.close("init")
            return
        self.current.append(element)
        if isinstance(element, Cut):
            self.close("cut")

    def close(self, end: DocumentEnd) -> None:
        """End the current document, if it has anything in it."""
        if self.current:
            self.documents.append(Receipt(tuple(self.current), end))
            self.current = []

    def all(self) -> list[Receipt]:
        """The finished documents, and the one being received (end "open") if it has content."""
        return self.documents + ([Receipt(tuple(self.current), "open")] if self.current else [])


def split_documents(elements: Iterable[Element]) -> list[Receipt]:
    """``elements`` as documents (see DocumentSplitter)."""
    splitter = DocumentSplitter()
    for e in elements:
        splitter.add(e)
    return splitter.all()
