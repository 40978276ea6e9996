"""Text to printer bytes for a profile: GB18030 in Chinese mode, or code pages. No I/O.

python-escpos has its own encoder (``escpos.magicencode``); documents bypass
it because it knows no Chinese mode (it sends GB18030 bytes without FS &),
takes its tables from its own capabilities database rather than our
profile, and prints "?" without saying so.

Code-page printers: every character goes out in one of the profile's
tables; a run of text that the current table cannot print switches to the
table that prints the longest run from there ("ESC t n: Select character
code table"). GB18030 printers: runs with non-ASCII text are wrapped in
"FS &: Select Kanji character mode" ... "FS .: Cancel Kanji character
mode"; in that mode a byte >= 0x80 starts a double-byte character printed
full width, ASCII stays single width.

A character no table can print is first approximated (NFKD: "ő" -> "o",
"ﬁ" -> "fi"; typographic quotes and dashes -> ASCII) and otherwise replaced
by "?", that character only, and counted. Control characters are never sent
as text: a product name holding ESC must not become a printer command.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from drivers.printer.profiles import CodePage, PrinterProfile

ESC_T = b"\x1bt"  # ESC t n: Select character code table
FS_KANJI_ON = b"\x1c&"  # FS &: Select Kanji character mode (Chinese printers: GB2312/GBK/GB18030)
FS_KANJI_OFF = b"\x1c."  # FS .: Cancel Kanji character mode
REPLACEMENT = "?"

# Typographic characters NFKD leaves alone, and their plain ASCII stand-ins.
_ASCII_STANDINS = {
    "\u2018": "'", "\u2019": "'", "\u201a": ",", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2032": "'", "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2022": "*", "\u00b7": ".", "\u2044": "/", "\u00d7": "x",
}
# CJK Unified Ideographs Extension A: four bytes in GB18030 but part of its
# mandatory repertoire, so a printer sold as GB18030 carries the glyphs.
_CJK_EXT_A = range(0x3400, 0x4DC0)


@dataclass(frozen=True)
class Encoded:
    """Printer bytes for some text, and how many characters had to become "?"."""

    data: bytes
    replaced: int


def _printable_gb18030(ch: str) -> bool:
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return False
    if ord(ch) < 0x80:
        return True
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me"):
        return False
    # One or two bytes is the GBK set every Chinese printer font has; four-byte
    # sequences (emoji, rare scripts) are not in the fonts, bar extension A.
    return len(ch.encode("gb18030")) <= 2 or ord(ch) in _CJK_EXT_A


@dataclass
class _Tables:
    """Which characters each code page of a profile prints, cached per character."""

    pages: tuple[CodePage, ...]

    def __post_init__(self) -> None:
        self._cache: dict[str, tuple[int, ...]] = {}

    def holding(self, ch: str) -> tuple[int, ...]:
        """Indexes (into ``pages``) of the tables that print ``ch``."""
        found = self._cache.get(ch)
        if found is None:
            found = tuple(i for i, cp in enumerate(self.pages) if _in_page(ch, cp.codec))
            self._cache[ch] = found
        return found


def _in_page(ch: str, codec: str) -> bool:
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return False
    try:
        ch.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


class TextEncoder:
    """Encodes text for one printer, remembering the code table it last selected.

    One encoder per document: ``reset`` after ``ESC @``, which puts the printer
    back on its power-on table (table 0 unless a memory switch says otherwise,
    so the encoder treats it as unknown and selects a table before the first
    non-ASCII character).
    """

    def __init__(self, profile: PrinterProfile):
        self.profile = profile
        self.replaced = 0
        self._tables = _Tables(profile.code_pages)
        self._current: int | None = None  # index into profile.code_pages

    def reset(self) -> None:
        """Forget the selected code table (call after ESC @)."""
        self._current = None

    def printable(self, ch: str) -> bool:
        """True when this printer prints ``ch`` as it is."""
        if self.profile.gb18030:
            return _printable_gb18030(ch)
        return bool(self._tables.holding(ch))

    def normalize(self, text: str) -> tuple[str, int]:
        """``text`` as it will print: approximations and "?" in, and how many "?" went in."""
        out: list[str] = []
        replaced = 0
        for ch in unicodedata.normalize("NFC", text):
            if self.printable(ch):
                out.append(ch)
                continue
            if ch in "\t\n\r\v\f\u00a0\u2028\u2029":
                out.append(" ")
                continue
            standin = _ASCII_STANDINS.get(ch)
            if standin is None:
                decomposed = unicodedata.normalize("NFKD", ch)
                standin = "".join(c for c in decomposed if not unicodedata.combining(c))
            if standin and standin != ch and all(self.printable(c) for c in standin):
                out.append(standin)
            elif unicodedata.category(ch) in ("Mn", "Me", "Cf"):
                continue  # a lone accent, a variation selector, a zero-width joiner: nothing to show
            else:
                out.append(REPLACEMENT)
                replaced += 1
        return "".join(out), replaced

    def width(self, text: str) -> int:
        """Columns ``text`` takes once printed; call it on normalized text."""
        if self.profile.gb18030:
            # Chinese mode prints every multi-byte character full width (24 dots),
            # whatever unicodedata.east_asian_width says ("é" is "A", but two columns here).
            return sum(1 if ord(ch) < 0x80 else 2 for ch in text)
        # Code-page glyphs are all single width.
        return len(text)

    def encode(self, text: str) -> bytes:
        """Printer bytes for ``text``, with the code-table switches or Chinese mode it needs."""
        clean, replaced = self.normalize(text)
        self.replaced += replaced
        if self.profile.gb18030:
            return self._gb18030(clean)
        return self._code_pages(clean)

    def _gb18030(self, text: str) -> bytes:
        if text.isascii():
            return text.encode("ascii")
        return FS_KANJI_ON + text.encode("gb18030") + FS_KANJI_OFF

    def _code_pages(self, text: str) -> bytes:
        pages = self.profile.code_pages
        out = bytearray()
        i = 0
        while i < len(text):
            ch = text[i]
            if ord(ch) < 0x80:
                # ASCII is the same in every table these printers have: no switch.
                out.append(ord(ch))
                i += 1
                continue
            holding = self._tables.holding(ch)
            if self._current not in holding:
                best = max(holding, key=lambda t: (self._run(text, i, t), -t))
                self._current = best
                out += ESC_T + bytes((pages[best].esc_t,))
            out += ch.encode(pages[self._current].codec)  # type: ignore[index]
            i += 1
        return bytes(out)

    def _run(self, text: str, start: int, table: int) -> int:
        """How many characters from ``start`` table ``table`` prints without a switch."""
        n = 0
        for ch in text[start:]:
            if ord(ch) >= 0x80 and table not in self._tables.holding(ch):
                break
            n += 1
        return n


def encode(text: str, profile: PrinterProfile) -> Encoded:
    """Printer bytes for ``text`` on a printer in an unknown code table (selects one first)."""
    enc = TextEncoder(profile)
    data = enc.encode(text)
    return Encoded(data, enc.replaced)


def normalize(text: str, profile: PrinterProfile) -> tuple[str, int]:
    """``text`` as ``profile`` prints it, and how many characters became "?"."""
    return TextEncoder(profile).normalize(text)


def display_width(text: str, profile: PrinterProfile) -> int:
    """Columns ``text`` takes on ``profile`` once printed (CJK counts two on GB18030 printers)."""
    enc = TextEncoder(profile)
    return enc.width(enc.normalize(text)[0])
