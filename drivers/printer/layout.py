"""A page builder for receipts: text lines, two columns, rules, QR codes, barcodes, cuts. No I/O.

Commands come from python-escpos's ``Dummy`` printer (styles, QR, images,
cut), set up with our profile; text goes through our encoder
(drivers/printer/encoding.py) and ``Dummy._raw``, never ``Dummy.text``,
whose own encoder would switch code tables behind ours. The CODE128
barcode is built here too: ``Escpos.barcode`` prints to stdout and cannot
size a barcode against the paper.
"""

from __future__ import annotations

import uuid
from typing import Literal

import qrcode
from escpos.constants import BARCODE_HEIGHT, BARCODE_TXT_OFF, BARCODE_TYPE_B, BARCODE_WIDTH, QR_ECLEVEL_M
from escpos.printer import Dummy
from PIL import Image as PILImage

from drivers.printer.encoding import TextEncoder
from drivers.printer.profiles import PrinterProfile, escpos_profile

Align = Literal["left", "center", "right"]

LF = b"\n"
# QR error correction M (15 %): survives a smudge, keeps a URL at version 4-5.
QR_ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M
QR_BORDER = 4  # modules of quiet zone, as ISO/IEC 18004 asks for
BARCODE_HEIGHT_DOTS = 80  # GS h n: 10 mm at 203 dpi
# GS w n: module width in dots; Epson TM printers take 2 to 6.
BARCODE_MODULE_WIDTHS = (3, 2)
# A sale id (UUID) as CODE128 digits: its 128-bit number, zero-padded to 40
# digits, packs two digits per symbol in code set C (20 symbols, 255 modules,
# 510 dots at module width 2). The UUID's 36 characters in code set B would
# take 431 modules, 862 dots: wider than any 80 mm printer (512-576 dots), and
# a printer silently drops a barcode that does not fit ("GS k: Print barcode").
UUID_DIGITS = 40


def code128_data(text: str) -> bytes | None:
    """GS k CODE128 data (code set prefix included) for ``text``, or None if it cannot be one."""
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        parsed = None
    if parsed is not None and str(parsed) == text.lower():
        text = f"{parsed.int:0{UUID_DIGITS}d}"
    if text.isdigit() and text.isascii() and len(text) % 2 == 0:
        # Code set C: each data byte is a pair of digits as a number 0-99.
        return b"{C" + bytes(int(text[i:i + 2]) for i in range(0, len(text), 2))
    if text and all(0x20 <= ord(c) < 0x7F for c in text):
        # Code set B: printable ASCII; "{" starts a code set change, so "{{" stands for "{".
        return b"{B" + text.replace("{", "{{").encode("ascii")
    return None


def code128_modules(data: bytes) -> int:
    """Width in modules of the CODE128 symbol for GS k ``data``, quiet zones excluded."""
    symbols = 0
    i = 0
    while i < len(data):
        i += 2 if data[i] == ord("{") else 1  # "{B", "{C", "{{": one symbol each
        symbols += 1
    # 11 modules a symbol (the start symbol is the first "{X"), 11 the check symbol, 13 the stop.
    return 11 * (symbols + 1) + 13


def barcode_text(digits: str) -> str:
    """The id a scanned receipt barcode stands for: a 40-digit code is a UUID, else as read."""
    if len(digits) == UUID_DIGITS and digits.isdigit() and digits.isascii() and int(digits) < 1 << 128:
        return str(uuid.UUID(int=int(digits)))
    return digits


def qr_code(data: str, dots: int) -> qrcode.QRCode:
    """The QR code documents print for ``data`` on a line ``dots`` wide (module size fitted)."""
    code = qrcode.QRCode(version=None, error_correction=QR_ERROR_CORRECTION, box_size=1, border=QR_BORDER)
    code.add_data(data)
    code.make(fit=True)
    code.box_size = max(1, min(6, dots // (code.modules_count + 2 * QR_BORDER)))
    return code


def qr_matrix(data: str) -> list[list[bool]]:
    """The module grid (True = dark, no quiet zone) of the QR code documents print for ``data``."""
    code = qr_code(data, 10_000)
    return [list(row) for row in code.modules]  # type: ignore[union-attr]


class Page:
    """One document being built for one printer profile."""

    def __init__(self, profile: PrinterProfile):
        self.profile = profile
        self.printer = Dummy(profile=escpos_profile(profile))
        self.encoder = TextEncoder(profile)
        self.replaced = 0  # characters printed as "?"
        self._style: tuple[bool, bool, Align, bool, bool] | None = None
        self.init()

    # Output -----------------------------------------------------------------

    @property
    def output(self) -> bytes:
        """Every byte of the document so far."""
        return self.printer.output

    def raw(self, data: bytes) -> None:
        """Append bytes as they are."""
        self.printer._raw(data)

    # Text -------------------------------------------------------------------

    def clean(self, text: object) -> str:
        """``text`` as it will print (approximated, "?" for the rest); counts the "?"."""
        s, replaced = self.encoder.normalize(str(text))
        self.replaced += replaced
        return s

    def width(self, text: str) -> int:
        """Printed columns of cleaned ``text``."""
        return self.encoder.width(text)

    def columns(self, double: bool = False) -> int:
        """Characters per line in Font A, halved at double size."""
        return self.profile.columns("a", double_width=double)

    def text(self, text: object, *, bold: bool = False, double: bool = False, align: Align = "left",
             invert: bool = False, small: bool = False) -> None:
        """Print ``text``, wrapped to the line, in one style (``small``: Font B)."""
        cpl = self.profile.columns("b") if small else self.columns(double)
        for line in self.wrap(self.clean(text), cpl):
            self._emit(line, bold=bold, double=double, align=align, invert=invert, small=small)

    def pair(self, left: object, right: object, *, bold: bool = False, double: bool = False) -> None:
        """``left`` at the left margin and ``right`` flush right; ``left`` wraps, ``right`` never splits."""
        cpl = self.columns(double)
        lhs, rhs = self.clean(left), self.clean(right)
        rw = self.width(rhs)
        room = cpl - rw - 1
        first = next(iter(lhs.split()), "")
        if self.width(lhs) > room and (room < min(8, cpl // 3) or self.width(first) > room):
            # The right side is too wide to share a line (or would break the left's first
            # word, "REFUN/D" in double size on 58 mm): each gets its own, the right one in
            # the smaller Font B if that keeps it on one line.
            self.text(lhs, bold=bold, double=double)
            small = not double and rw > cpl and rw <= self.profile.columns("b")
            self.text(rhs, bold=bold, double=double, align="right", small=small)
            return
        lines = self.wrap(lhs, room) or [""]
        self._emit(lines[0] + " " * (cpl - self.width(lines[0]) - rw) + rhs, bold=bold, double=double)
        for line in lines[1:]:
            self._emit(line, bold=bold, double=double)

    def rule(self, char: str = "-") -> None:
        """A full-width line of ``char``."""
        self._emit(char * self.columns(), bold=False, double=False, align="left")

    def blank(self, n: int = 1) -> None:
        """``n`` empty lines."""
        for _ in range(n):
            self._emit("", bold=False, double=False, align="left")

    def wrap(self, text: str, width: int) -> list[str]:
        """Cleaned ``text`` in lines of at most ``width`` columns, split at spaces when it can.

        Leading spaces indent every line; a word wider than the line (a URL,
        CJK text without spaces) breaks anywhere.
        """
        body = text.lstrip(" ")
        if not body.strip():
            return []
        indent = " " * min(len(text) - len(body), width // 2)
        width -= len(indent)
        lines: list[str] = []
        current = ""
        for word in body.split(" "):
            candidate = f"{current} {word}" if current else word
            if self.width(candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = ""
            for ch in word:
                if current and self.width(current + ch) > width:
                    lines.append(current)
                    current = ""
                current += ch
        if current:
            lines.append(current)
        return [indent + line.rstrip() for line in lines]

    def _emit(self, line: str, *, bold: bool, double: bool, align: Align = "left", invert: bool = False,
              small: bool = False) -> None:
        self._set_style(bold, double, align, invert, small)
        self.raw(self.encoder.encode(line) + LF)

    def _set_style(self, bold: bool, double: bool, align: Align, invert: bool = False, small: bool = False) -> None:
        style = (bold, double, align, invert, small)
        if style == self._style:
            return
        # Escpos.set sends ESC ! (size), ESC E (emphasis, after ESC !, which clears it),
        # ESC M (font), ESC a (justification) and GS B (white/black reverse).
        self.printer.set(normal_textsize=not double, double_width=double, double_height=double,
                         bold=bold, font="b" if small else "a", align=align, invert=invert)
        self._style = style

    # Codes, images, paper ---------------------------------------------------

    def qr(self, data: str) -> bool:
        """Print a QR code of ``data`` as the profile can; False (nothing printed) if it cannot."""
        if not data or self.profile.qr == "none":
            return False
        self._set_style(False, False, "center")
        if self.profile.qr == "native":
            # GS ( k: QR Code model 2, module size, error correction M, store, print;
            # the printer centres it by ESC a like text.
            size = 6 if self.profile.dots_per_line >= 512 else 4
            self.printer.qr(data, ec=QR_ECLEVEL_M, size=size, native=True)
        else:
            self.image(qr_code(data, self.profile.dots_per_line).make_image().get_image())
        self._set_style(False, False, "left")
        return True

    def image(self, image: PILImage.Image) -> None:
        """Print ``image`` centred as a raster bit image (GS v 0)."""
        self.printer.image(image, center=True, impl="bitImageRaster")

    def barcode(self, text: str) -> bool:
        """Print ``text`` as CODE128 if the profile can and it fits the line; False if not printed."""
        data = code128_data(text)
        if not self.profile.barcode_code128 or data is None or len(data) > 255:
            return False
        modules = code128_modules(data)
        width = next((w for w in BARCODE_MODULE_WIDTHS if modules * w <= self.profile.dots_per_line), None)
        if width is None:
            return False
        self._set_style(False, False, "center")
        self.raw(BARCODE_HEIGHT + bytes((BARCODE_HEIGHT_DOTS,)) + BARCODE_WIDTH + bytes((width,)))
        self.raw(BARCODE_TXT_OFF)  # GS H 0: no human-readable line; the id is printed as text
        self.raw(BARCODE_TYPE_B["CODE128"] + bytes((len(data),)) + data)
        self._set_style(False, False, "left")
        return True

    def init(self) -> None:
        """ESC @: reset the printer's modes (and code table) to their power-on state."""
        self.printer.hw("INIT")
        self.encoder.reset()
        self._style = None

    def cut(self) -> None:
        """Feed past the tear bar and cut as the profile's cutter can (only feed without one)."""
        self._set_style(False, False, "left")
        # Escpos.cut feeds 6 lines (ESC d 6), then GS V 0 (full) or GS V 1 (partial)
        # as the profile's features allow; with no cutter it only feeds.
        self.printer.cut(mode="PART" if self.profile.cutter == "partial" else "FULL")
