"""Drawing primitives for labels: text lines, a price, a struck price, stars, a QR code.

Everything draws palette indices on a mode "P" image with anti-aliasing off
(``fontmode = "1"``, polygons and rectangles are never smoothed): an e-paper
pixel is white, black or red, and a grey edge would be turned into one of
them by the access point anyway, unpredictably. Drawing exact indices makes
the output what the panel shows.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw

from drivers.shelf_label import fonts

Box = tuple[int, int, int, int]


def canvas(size: tuple[int, int], palette: tuple[tuple[int, int, int], ...]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white "P" image with exactly ``palette`` (index 0 is white), and its pen."""
    img = Image.new("P", size, 0)
    img.putpalette([c for rgb in palette for c in rgb])
    pen = ImageDraw.Draw(img)
    pen.fontmode = "1"  # no anti-aliasing: e-paper has no grey
    return img, pen


def _x(box: Box, w: float, align: str) -> int:
    x, _, bw, _ = box
    if align == "center":
        return x + round((bw - w) / 2)
    if align == "right":
        return x + bw - math.ceil(w)
    return x


def text_lines(pen: ImageDraw.ImageDraw, box: Box, lines: list[str], size: int, align: str, ink: int) -> None:
    """Draw ``lines`` from the top of ``box``, ``line_height`` apart."""
    f = fonts.font(size)
    y = box[1] + fonts.baseline(size)
    for line in lines:
        pen.text((_x(box, f.getlength(line), align), y), line, font=f, fill=ink, anchor="ls")
        y += fonts.line_height(size)


def fitted_text(pen: ImageDraw.ImageDraw, box: Box, text: str, size: int, min_size: int, lines: int,
                align: str, ink: int, middle: bool = False) -> None:
    """Draw ``text`` wrapped and shrunk to fit ``box``, ellipsised below ``min_size``."""
    used, wrapped = fonts.fit(text, size, min_size, box[2], box[3], lines)
    if middle:
        spare = box[3] - len(wrapped) * fonts.line_height(used)
        box = (box[0], box[1] + max(0, spare // 2), box[2], box[3])
    text_lines(pen, box, wrapped, used, align, ink)


@dataclass(frozen=True)
class PriceParts:
    """A price as drawn: a small currency sign, a big whole part, small decimals."""

    sign: str
    whole: str
    decimals: str  # without the separator; "" for currencies without minor units


# The sign and decimals are drawn at this share of the whole part's size,
# the usual shelf-label look ("¥ 12 80" with the 80 raised).
_SMALL = 0.5


def _price_width(parts: PriceParts, size: int) -> float:
    small = max(6, round(size * _SMALL))
    gap = max(1, size // 12)
    w = fonts.width(parts.whole, size)
    if parts.sign:
        w += fonts.width(parts.sign, small) + gap
    if parts.decimals:
        w += fonts.width("." + parts.decimals, small) + gap
    return w


def price(pen: ImageDraw.ImageDraw, box: Box, parts: PriceParts, size: int, min_size: int, align: str,
          ink: int) -> bool:
    """Draw a price as big as fits ``box``; False, drawing nothing, if it does not fit at ``min_size``."""
    x0, y0, bw, bh = box
    for s in range(size, min_size - 1, -1):
        # Digits reach ~0.71 em above the baseline; the box must hold them.
        if _price_width(parts, s) <= bw and _digit_top(s) <= bh:
            break
    else:
        return False
    small = max(6, round(s * _SMALL))
    gap = max(1, s // 12)
    # Baseline so the digits sit vertically centred in the box.
    base = y0 + (bh + _digit_top(s)) // 2
    x = _x(box, _price_width(parts, s), align)
    if parts.sign:
        pen.text((x, base), parts.sign, font=fonts.font(small), fill=ink, anchor="ls")
        x += round(fonts.width(parts.sign, small)) + gap
    pen.text((x, base), parts.whole, font=fonts.font(s), fill=ink, anchor="ls")
    if parts.decimals:
        x += round(fonts.width(parts.whole, s)) + gap
        # Raised decimals: their tops level with the top of the whole part.
        pen.text((x, base - _digit_top(s) + _digit_top(small)), "." + parts.decimals, font=fonts.font(small),
                 fill=ink, anchor="ls")
    return True


def _digit_top(size: int) -> int:
    """Height of a digit above the baseline at ``size`` pixels."""
    return -fonts.font(size).getbbox("0", anchor="ls")[1]


def struck(pen: ImageDraw.ImageDraw, box: Box, text: str, size: int, min_size: int, align: str, ink: int) -> None:
    """Draw ``text`` shrunk to fit one line, with a line struck through its digits."""
    s = next((s for s in range(size, min_size - 1, -1) if fonts.width(text, s) <= box[2]), min_size)
    text = fonts.ellipsize(text, s, box[2])
    w = fonts.width(text, s)
    x = _x(box, w, align)
    base = box[1] + fonts.baseline(s)
    pen.text((x, base), text, font=fonts.font(s), fill=ink, anchor="ls")
    mid = base - _digit_top(s) // 2
    thick = max(1, s // 10)
    pen.rectangle((x - 1, mid - thick // 2, x + math.ceil(w), mid - thick // 2 + thick - 1), fill=ink)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The ten corners of a five-pointed star of outer radius ``r``, point up."""
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        a = math.pi / 2 - i * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
    return pts


def stars(img: Image.Image, box: Box, rating: float, size: int, ink: int) -> int:
    """Draw five stars ``size`` px high, filled to ``rating`` in halves; returns the x after them."""
    pen = ImageDraw.Draw(img)
    halves = round(rating * 2)
    x, y = box[0], box[1] + (box[3] - size) // 2
    step = size + max(1, size // 8)
    for i in range(5):
        pts = _star(x + size / 2, y + size / 2 + size * 0.05, size / 2)
        pen.polygon(pts, outline=ink)
        filled = min(2, max(0, halves - 2 * i))  # 0 empty, 1 half, 2 full
        if filled:
            # A mask of the star's box only (a whole-label mask per star was a quarter of a
            # label's drawing time). Moving the corners by whole pixels is exact in floating
            # point, so the star is filled exactly as it would be in place.
            x0, y0 = math.floor(min(p[0] for p in pts)) - 1, math.floor(min(p[1] for p in pts)) - 1
            x1, y1 = math.ceil(max(p[0] for p in pts)) + 2, math.ceil(max(p[1] for p in pts)) + 2
            mask = Image.new("1", (x1 - x0, y1 - y0), 0)
            ImageDraw.Draw(mask).polygon([(px - x0, py - y0) for px, py in pts], fill=1)
            if filled == 1:  # keep the left half only
                ImageDraw.Draw(mask).rectangle((x + size // 2 - x0, 0, x1 - x0, y1 - y0), fill=0)
            img.paste(ink, (x0, y0), mask)
        x += step
    return x


# A product's URL, and so its QR code, stays when its price changes: keeping
# the matrix of the last few thousand URLs makes a re-price skip qrcode's mask
# search (about 4 ms a label, 80 % of a label's render). Packed 1 bit a module,
# an entry is ~200 bytes; 20,000 entries cover a large store's labels.
QR_CACHE = 20_000


@functools.lru_cache(maxsize=QR_CACHE)
def qr_matrix(data: str, border: int) -> tuple[int, bytes]:
    """The QR code of ``data`` with its quiet zone: (modules a side, rows packed as mode "1" bytes)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=border)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()  # includes the quiet zone
    n = len(matrix)
    img = Image.new("1", (n, n), 0)
    img.putdata([1 if dark else 0 for row in matrix for dark in row])
    return n, img.tobytes()


def qr(img: Image.Image, box: Box, data: str, border: int, min_module: int, ink: int) -> bool:
    """Draw a QR code of ``data`` centred in ``box``, modules as big as fit; False if it does not fit."""
    n, packed = qr_matrix(data, border)
    module = min(box[2], box[3]) // n
    if module < min_module:
        return False
    x0 = box[0] + (box[2] - n * module) // 2
    y0 = box[1] + (box[3] - n * module) // 2
    # Each dark module a module x module square of ``ink``: the matrix scaled up
    # without interpolation is exactly that mask.
    mask = Image.frombytes("1", (n, n), packed).resize((n * module, n * module), Image.Resampling.NEAREST)
    img.paste(ink, (x0, y0, x0 + n * module, y0 + n * module), mask)
    return True
