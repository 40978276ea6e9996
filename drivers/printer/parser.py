"""ESC/POS bytes back into what a printer would put on paper. No I/O.

``EscPosParser`` is fed the byte stream a printer receives, in chunks split
anywhere, and turns it into elements: text lines (with bold, size,
justification), barcodes, QR codes, images, cuts, drawer pulses. It answers
real-time status queries (DLE EOT n) through a callback, decodes text with
the code table last selected by ESC t or as GB18030 while Chinese mode
(FS &) is on, and skips what it does not know without ever raising:
unknown commands by their first two bytes, parameters it cannot use by the
length the command declares. The elements and ``Receipt`` (one document)
are defined in drivers/printer/elements.py.

Command names and layouts follow the Epson ESC/POS Command Reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers.printer.elements import (
    QR,
    Align,
    Barcode,
    Cut,
    DocumentSplitter,
    Element,
    Image,
    Init,
    Pulse,
    Receipt,
    Text,
    split_documents,
)

__all__ = [
    "EscPosParser", "decode_code128", "EPSON_CODE_TABLES", "BARCODE_KINDS",
    # Re-exported from elements.py: what the parser produces.
    "Element", "Text", "Barcode", "QR", "Image", "Cut", "Pulse", "Init", "Receipt", "DocumentSplitter",
    "split_documents",
]

# ESC t n: Epson's numbers for the character code tables Python has a codec for.
EPSON_CODE_TABLES: dict[int, str] = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 13: "cp857", 14: "cp737",
    15: "iso8859_7", 16: "cp1252", 17: "cp866", 18: "cp852", 19: "cp858", 33: "cp775", 34: "cp855",
    35: "cp861", 36: "cp862", 37: "cp864", 38: "cp869", 39: "iso8859_2", 40: "iso8859_15",
    45: "cp1250", 46: "cp1251", 47: "cp1253", 48: "cp1254", 49: "cp1255", 50: "cp1256",
    51: "cp1257", 52: "cp1258",
}
# Barcode systems of "GS k m": function A (m 0-6, NUL-terminated) and B (m 65-79, counted).
BARCODE_KINDS: dict[int, str] = {
    0: "UPC-A", 1: "UPC-E", 2: "EAN13", 3: "EAN8", 4: "CODE39", 5: "ITF", 6: "CODABAR",
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39", 70: "ITF", 71: "CODABAR",
    72: "CODE93", 73: "CODE128", 74: "GS1-128", 75: "GS1 DATABAR OMNIDIRECTIONAL",
    76: "GS1 DATABAR TRUNCATED", 77: "GS1 DATABAR LIMITED", 78: "GS1 DATABAR EXPANDED", 79: "CODE128 AUTO",
}
# A command that declares more parameter bytes than this is taken for garbage
# (its header is skipped) rather than waited for; a receipt is a few KiB.
MAX_COMMAND = 4 << 20
# How far a NUL-terminated parameter (GS k function A, ESC D) may run.
MAX_TERMINATED = 255
# ESC and GS commands with exactly one parameter byte.
_ESC_ONE_BYTE = frozenset("!EatdJe-3A MRUV{rG%?=TuvK")
_GS_ONE_BYTE = frozenset("!BHhwfbarITEj|")


# The parser ------------------------------------------------------------------

_NEED_MORE = -1  # a handler's answer when the command is not complete yet


@dataclass
class _Mode:
    """Print modes that ESC @ resets."""

    bold: bool = False
    esc_double_width: bool = False
    esc_double_height: bool = False
    gs_width: int = 1
    gs_height: int = 1
    align: Align = "left"
    invert: bool = False
    font_b: bool = False
    table: int = 0
    kanji: bool = False

    @property
    def double(self) -> bool:
        return self.esc_double_width or self.esc_double_height or self.gs_width > 1 or self.gs_height > 1


class EscPosParser:
    """Turns an ESC/POS byte stream into elements; see the module docstring."""

    def __init__(self, code_tables: Mapping[int, str] | None = None,
                 answer: Callable[[int], bytes] | None = None):
        self.code_tables = dict(EPSON_CODE_TABLES if code_tables is None else code_tables)
        # What the printer sends back for DLE EOT n; the default is a healthy printer.
        self.answer = answer or (lambda n: bytes((0x12,)))
        self.elements: list[Element] = []
        self.status_queries = 0
        self._buf = bytearray()
        self._mode = _Mode()
        self._line: list[str] = []
        self._line_style: tuple[bool, bool, Align, bool, bool] | None = None
        self._qr_data = b""
        self._graphics: Image | None = None
        self._replies = bytearray()

    # Public -------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Parse ``data`` (any chunk of the stream); returns what the printer answers to it."""
        self._buf += data
        pos = 0
        while pos < len(self._buf):
            used = self._step(pos)
            if used == _NEED_MORE:
                break
            pos += used
        del self._buf[:pos]
        replies, self._replies = bytes(self._replies), bytearray()
        return replies

    def take(self) -> list[Element]:
        """The elements parsed since the last ``take``."""
        out, self.elements = self.elements, []
        return out

    @property
    def pending(self) -> int:
        """Bytes held back because the command they start is not complete yet."""
        return len(self._buf)

    def drop_pending(self) -> None:
        """Forget an incomplete command and the unprinted line (the link dropped mid-job)."""
        self._buf.clear()
        self._line = []
        self._line_style = None

    def reset(self) -> None:
        """Back to the power-on state: pending bytes, modes, stored QR data and graphics gone."""
        self.drop_pending()
        self._mode = _Mode()
        self._qr_data = b""
        self._graphics = None

    # Text ---------------------------------------------------------------------

    def _char(self, ch: str) -> None:
        if not self._line:
            m = self._mode
            self._line_style = (m.bold, m.double, m.align, m.invert, m.font_b)
        self._line.append(ch)

    def _print_line(self, empty_too: bool) -> None:
        if not self._line and not empty_too:
            return
        m = self._mode
        style = self._line_style or (m.bold, m.double, m.align, m.invert, m.font_b)
        self.elements.append(Text("".join(self._line), *style))
        self._line = []
        self._line_style = None

    def _text(self, pos: int) -> int:
        b = self._buf
        if self._mode.kanji and b[pos] >= 0x80:
            lead = b[pos]
            if not 0x81 <= lead <= 0xFE:
                self._char("\ufffd")
                return 1
            if pos + 1 >= len(b):
                return _NEED_MORE
            size = 4 if 0x30 <= b[pos + 1] <= 0x39 else 2
            if pos + size > len(b):
                return _NEED_MORE
            self._char(bytes(b[pos:pos + size]).decode("gb18030", errors="replace")[:1])
            return size
        end = pos
        while end < len(b) and b[end] >= 0x20 and not (self._mode.kanji and b[end] >= 0x80):
            end += 1
        chunk = bytes(b[pos:end])
        codec = self.code_tables.get(self._mode.table)
        for byte in chunk:
            if byte < 0x7F:
                self._char(chr(byte))
            elif byte > 0x7F:
                self._char(bytes((byte,)).decode(codec, errors="replace") if codec else "\ufffd")
        return end - pos

    # Dispatch -----------------------------------------------------------------

    def _step(self, pos: int) -> int:
        b0 = self._buf[pos]
        if b0 >= 0x20:
            return self._text(pos)
        if b0 == 0x0A:  # LF: print and line feed
            self._print_line(empty_too=True)
        elif b0 == 0x0C:  # FF: in standard mode, print and feed
            self._print_line(empty_too=False)
        elif b0 == 0x09:  # HT: next tab stop (every 8 columns by default)
            for _ in range(8 - len(self._line) % 8):
                self._char(" ")
        elif b0 == 0x10:
            return self._dle(pos)
        elif b0 == 0x1B:
            return self._esc(pos)
        elif b0 == 0x1C:
            return self._fs(pos)
        elif b0 == 0x1D:
            return self._gs(pos)
        # CR (ignored with auto line feed off), CAN, BEL, other controls: nothing.
        return 1

    def _have(self, pos: int, n: int) -> bool:
        return pos + n <= len(self._buf)

    def _dle(self, pos: int) -> int:
        if not self._have(pos, 3):
            return _NEED_MORE
        fn, n = self._buf[pos + 1], self._buf[pos + 2]
        if fn == 0x04:  # DLE EOT n: transmit real-time status
            if n in (7, 8, 18):  # ink, peeler, interface: DLE EOT n a
                return 4 if self._have(pos, 4) else _NEED_MORE
            if 1 <= n <= 4:
                self.status_queries += 1
                self._replies += self.answer(n)
            return 3
        if fn == 0x05:  # DLE ENQ n: real-time request
            return 3
        if fn == 0x14:  # DLE DC4 fn ...: real-time pulse, power-off, clear buffer
            size = {1: 5, 2: 5, 7: 4, 8: 10}.get(n, 3)
            if not self._have(pos, size):
                return _NEED_MORE
            if n == 1:
                self.elements.append(Pulse(2 if self._buf[pos + 3] in (0, 48) else 5))
            return size
        return 1  # a lone DLE

    def _esc(self, pos: int) -> int:
        if not self._have(pos, 2):
            return _NEED_MORE
        c = chr(self._buf[pos + 1])
        m = self._mode
        if c == "@":  # ESC @: initialize printer
            self._line, self._line_style, self._qr_data = [], None, b""
            self._mode = _Mode()
            self.elements.append(Init())
            return 2
        if c in "2<LSmi":  # line spacing default, return home, page/standard mode, cuts of old models
            if c in "mi":
                self._print_line(empty_too=False)
                self.elements.append(Cut(partial=c == "m"))
            return 2
        fixed = {"p": 5, "$": 4, "\\": 4, "B": 4, "c": 4, "W": 10}
        if c in fixed:
            size = fixed[c]
            if not self._have(pos, size):
                return _NEED_MORE
            if c == "p":  # ESC p m t1 t2: generate pulse
                self.elements.append(Pulse(2 if self._buf[pos + 2] in (0, 48) else 5))
            return size
        if c == "*":  # ESC * m nL nH d1...dk: select bit-image mode
            return self._esc_bit_image(pos)
        if c == "D":  # ESC D n1...nk NUL: set horizontal tab positions
            return self._terminated(pos, 2)
        if c == "&":  # ESC & y c1 c2 [x d1...d(y*x)]k: define user-defined characters
            return self._esc_user_chars(pos)
        if c not in _ESC_ONE_BYTE:
            return 2  # unknown: skip ESC and its letter
        if not self._have(pos, 3):
            return _NEED_MORE
        n = self._buf[pos + 2]
        if c == "!":  # ESC ! n: select print modes
            m.font_b, m.bold = bool(n & 0x01), bool(n & 0x08)
            m.esc_double_height, m.esc_double_width = bool(n & 0x10), bool(n & 0x20)
        elif c == "M":  # ESC M n: select character font
            m.font_b = n in (1, 49)
        elif c == "E":  # ESC E n: emphasized mode
            m.bold = bool(n & 1)
        elif c == "a":  # ESC a n: justification
            m.align = {0: "left", 48: "left", 1: "center", 49: "center", 2: "right", 50: "right"}.get(n, m.align)
        elif c == "t":  # ESC t n: select character code table
            m.table = n
        elif c in "dJe":  # ESC d n / ESC J n / ESC e n: print and feed
            self._print_line(empty_too=False)
        return 3  # the others: one parameter byte, nothing to record

    def _esc_bit_image(self, pos: int) -> int:
        if not self._have(pos, 5):
            return _NEED_MORE
        mode, n = self._buf[pos + 2], self._buf[pos + 3] | self._buf[pos + 4] << 8
        rows = 3 if mode in (32, 33) else 1
        size = 5 + n * rows
        if size > MAX_COMMAND:
            return 2
        if not self._have(pos, size):
            return _NEED_MORE
        data = self._buf[pos + 5:pos + size]
        height = rows * 8
        packed = [bytearray((n + 7) // 8) for _ in range(height)]
        for x in range(n):
            for r in range(rows):
                column = data[x * rows + r]
                for bit in range(8):
                    if column & (0x80 >> bit):
                        packed[r * 8 + bit][x >> 3] |= 0x80 >> (x & 7)
        self._print_line(empty_too=False)
        self.elements.append(Image(n, height, tuple(bytes(r) for r in packed)))
        return size

    def _esc_user_chars(self, pos: int) -> int:
        if not self._have(pos, 5):
            return _NEED_MORE
        y, c1, c2 = self._buf[pos + 2], self._buf[pos + 3], self._buf[pos + 4]
        at = pos + 5
        for _ in range(max(0, c2 - c1 + 1)):
            if not self._have(at, 1):
                return _NEED_MORE
            at += 1 + y * self._buf[at]
            if at - pos > MAX_COMMAND:
                return 2
        return at - pos if at <= len(self._buf) else _NEED_MORE

    def _terminated(self, pos: int, header: int) -> int:
        """A command whose parameters run to a NUL: its length, or garbage after MAX_TERMINATED."""
        end = self._buf.find(b"\x00", pos + header, pos + header + MAX_TERMINATED + 1)
        if end < 0:
            return header if self._have(pos, header + MAX_TERMINATED + 1) else _NEED_MORE
        return end + 1 - pos

    def _fs(self, pos: int) -> int:
        if not self._have(pos, 2):
            return _NEED_MORE
        c = chr(self._buf[pos + 1])
        if c == "&":  # FS &: select Kanji (Chinese) character mode
            self._mode.kanji = True
            return 2
        if c == ".":  # FS .: cancel Kanji character mode
            self._mode.kanji = False
            return 2
        if c == "(":  # FS ( X pL pH ...: functions with a counted parameter block
            return self._counted(pos)[0]
        size = {"!": 3, "-": 3, "C": 3, "W": 3, "S": 4, "p": 4, "2": 76}.get(c, 2)
        return size if self._have(pos, size) else _NEED_MORE

    def _counted(self, pos: int, prefix: int = 3, length_bytes: int = 2) -> tuple[int, bytes]:
        """(size, parameters) of a command whose ``prefix`` bytes are followed by a little-endian length."""
        if not self._have(pos, prefix + length_bytes):
            return _NEED_MORE, b""
        start = pos + prefix
        n = int.from_bytes(self._buf[start:start + length_bytes], "little")
        if n > MAX_COMMAND:
            return prefix + length_bytes, b""  # garbage: skip the header
        size = prefix + length_bytes + n
        if not self._have(pos, size):
            return _NEED_MORE, b""
        return size, bytes(self._buf[pos + size - n:pos + size])

    def _gs(self, pos: int) -> int:
        if not self._have(pos, 2):
            return _NEED_MORE
        c = chr(self._buf[pos + 1])
        if c == "(":  # GS ( X pL pH ...: 2D codes (k), graphics (L), and many settings
            if not self._have(pos, 3):
                return _NEED_MORE
            size, params = self._counted(pos)
            if params:
                kind = chr(self._buf[pos + 2])
                if kind == "k":
                    self._two_d_code(params)
                elif kind == "L":
                    self._graphics_function(params)
            return size
        if c == "8":  # GS 8 L p1 p2 p3 p4 m fn ...: graphics, four-byte length
            if not self._have(pos, 3):
                return _NEED_MORE
            size, params = self._counted(pos, length_bytes=4)
            if params and chr(self._buf[pos + 2]) == "L":
                self._graphics_function(params)
            return size
        if c == "v":  # GS v 0 m xL xH yL yH d1...dk: print raster bit image
            return self._raster(pos)
        if c == "k":  # GS k m ...: print barcode
            return self._barcode(pos)
        if c == "V":  # GS V m [n]: select cut mode and cut paper
            if not self._have(pos, 3):
                return _NEED_MORE
            mode = self._buf[pos + 2]
            size = 4 if mode in (65, 66, 97, 98, 103, 104) else 3
            if not self._have(pos, size):
                return _NEED_MORE
            self._print_line(empty_too=False)
            self.elements.append(Cut(partial=mode in (1, 49, 66, 98, 104)))
            return size
        if c in "LW$\\P":  # two parameter bytes: margins, print area, positions, motion units
            return 4 if self._have(pos, 4) else _NEED_MORE
        if c in "^g":  # GS ^ r t m: execute macro; GS g 0/2 ...: maintenance counters
            return 5 if self._have(pos, 5) else _NEED_MORE
        if c not in _GS_ONE_BYTE:
            return 2  # GS : (macro definition), GS c, and the unknown: skip GS and its letter
        if not self._have(pos, 3):
            return _NEED_MORE
        n = self._buf[pos + 2]
        if c == "!":  # GS ! n: select character size
            self._mode.gs_width, self._mode.gs_height = (n >> 4 & 7) + 1, (n & 7) + 1
        elif c == "B":  # GS B n: white/black reverse printing
            self._mode.invert = bool(n & 1)
        return 3  # the others: one parameter byte, nothing to record

    def _raster(self, pos: int) -> int:
        if not self._have(pos, 8):
            return _NEED_MORE
        if self._buf[pos + 2] != 0x30:
            return 2  # only GS v 0 exists
        w_bytes = self._buf[pos + 4] | self._buf[pos + 5] << 8
        height = self._buf[pos + 6] | self._buf[pos + 7] << 8
        size = 8 + w_bytes * height
        if size > MAX_COMMAND:
            return 8  # garbage: skip the header
        if not self._have(pos, size):
            return _NEED_MORE
        data = bytes(self._buf[pos + 8:pos + size])
        self._print_line(empty_too=False)
        rows = tuple(data[i * w_bytes:(i + 1) * w_bytes] for i in range(height))
        self.elements.append(Image(w_bytes * 8, height, rows))
        return size

    def _barcode(self, pos: int) -> int:
        if not self._have(pos, 3):
            return _NEED_MORE
        m = self._buf[pos + 2]
        if m <= 6:  # function A: data up to NUL
            size = self._terminated(pos, 3)
            if size in (_NEED_MORE, 3):
                return size
            data = bytes(self._buf[pos + 3:pos + size - 1])
        else:  # function B: GS k m n d1...dn
            if not self._have(pos, 4):
                return _NEED_MORE
            n = self._buf[pos + 3]
            size = 4 + n
            if not self._have(pos, size):
                return _NEED_MORE
            data = bytes(self._buf[pos + 4:pos + size])
        kind = BARCODE_KINDS.get(m, f"m={m}")
        self._print_line(empty_too=False)
        text = decode_code128(data) if kind in ("CODE128", "GS1-128") else data.decode("ascii", errors="replace")
        self.elements.append(Barcode(kind, text))
        return size

    def _two_d_code(self, params: bytes) -> None:
        # GS ( k pL pH cn fn [parameters]; cn 49 is QR Code.
        if len(params) < 2 or params[0] != 49:
            return
        fn = params[1]
        if fn == 80 and len(params) >= 3:  # <Function 180> store the data (m = 48)
            self._qr_data = params[3:]
        elif fn == 81:  # <Function 181> print the symbol
            self._print_line(empty_too=False)
            if self._qr_data:
                self.elements.append(QR(self._qr_data.decode("utf-8", errors="replace")))

    def _graphics_function(self, params: bytes) -> None:
        # GS ( L / GS 8 L: m fn ...; fn 112 stores raster graphics, fn 50 prints them.
        if len(params) < 2:
            return
        fn = params[1]
        if fn == 112 and len(params) >= 10:
            width = params[6] | params[7] << 8
            height = params[8] | params[9] << 8
            w_bytes = (width + 7) // 8
            data = params[10:]
            if len(data) >= w_bytes * height:
                self._graphics = Image(width, height, tuple(data[i * w_bytes:(i + 1) * w_bytes]
                                                              for i in range(height)))
        elif fn in (50, 2) and self._graphics is not None:
            self._print_line(empty_too=False)
            self.elements.append(self._graphics)
            self._graphics = None


def decode_code128(data: bytes) -> str:
    """What a scanner reads from GS k CODE128 data: code sets switched by "{A", "{B", "{C"."""
    out: list[str] = []
    code_set = "B"
    i = 0
    while i < len(data):
        b = data[i]
        if b == ord("{") and i + 1 < len(data):
            nxt = chr(data[i + 1])
            i += 2
            if nxt in "ABC":
                code_set = nxt
            elif nxt == "{":
                out.append("{")
            elif nxt == "S" and i < len(data):  # shift: one character from the other of A/B
                out.append(chr(data[i]))
                i += 1
            # "{1".."{4": FNC1-4 carry no data
            continue
        if code_set == "C":
            out.append(f"{b:02d}" if b < 100 else "\ufffd")
        else:
            out.append(chr(b) if b < 0x80 else "\ufffd")
        i += 1
    return "".join(out)
