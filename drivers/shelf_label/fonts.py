"""The one place that finds the label font, and text fitting on top of it.

The font is WenQuanYi Micro Hei from the Debian package ``fonts-wqy-microhei``
(0.2.0-beta, unchanged since 2010; Apache-2.0 or GPLv3 with font exception).
One file draws Latin, digits, the currency signs we use and the CJK of
GB2312/GBK, so a product name mixing Chinese and Latin needs no fallback
chain. Pillow's built-in font has no CJK.

Golden images depend on the font file and on the FreeType inside the Pillow
wheel; both are pinned (the Debian release and pyproject's Pillow). Layout is
forced to Pillow's BASIC engine so that whether libraqm happens to be
installed does not change a pixel; CJK and Latin need no shaping.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from edge_core.errors import EdgeError

FONT_PACKAGE = "fonts-wqy-microhei"
# Where distributions put the file: Debian/Ubuntu first, then Fedora and Arch.
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/wqy-microhei/wqy-microhei.ttc"),
    Path("/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc"),
)
# Face 0 of the collection is the proportional "WenQuanYi Micro Hei"; 1 is Mono.
FONT_INDEX = 0
ELLIPSIS = "…"

Font = ImageFont.FreeTypeFont


class FontMissing(EdgeError):
    """The label font is not installed; the message names the package to install."""


def font_path() -> Path:
    """Path of the label font; FontMissing naming the Debian package when absent."""
    for path in FONT_PATHS:
        if path.is_file():
            return path
    raise FontMissing(f"the shelf-label font is not installed: install it with "
                      f"'apt-get install {FONT_PACKAGE}' (looked in {', '.join(map(str, FONT_PATHS))})")


@lru_cache(maxsize=256)
def font(size: int) -> Font:
    """The label font at ``size`` pixels, cached."""
    return ImageFont.truetype(str(font_path()), size, index=FONT_INDEX, layout_engine=ImageFont.Layout.BASIC)


def clean(text: str) -> str:
    """``text`` on one line: control characters and characters the font lacks (emoji) dropped,
    runs of white space made one space."""
    kept = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or (unicodedata.category(ch)[0] != "C" and has_glyph(ch)))
    return " ".join(kept.split())


# A private-use code point the face has no glyph for: what FreeType draws for
# any missing character (the .notdef box), to compare against.
_NOTDEF = "\ue000"


@lru_cache(maxsize=4096)
def has_glyph(ch: str) -> bool:
    """True if the label font draws ``ch`` (rather than its empty box)."""
    # Pillow has no cmap lookup; a missing glyph renders exactly as .notdef does.
    f = font(20)
    return (f.getbbox(ch), bytes(f.getmask(ch))) != (f.getbbox(_NOTDEF), bytes(f.getmask(_NOTDEF)))


def width(text: str, size: int) -> float:
    """Advance width of ``text`` at ``size`` pixels."""
    return font(size).getlength(text)


def line_height(size: int) -> int:
    """Distance between baselines of wrapped lines at ``size`` pixels."""
    # The face's own ascent + descent is ~1.3 em; 1.2 em packs two lines of a
    # name into a small label without CJK strokes touching.
    return round(size * 1.2)


def baseline(size: int) -> int:
    """Distance from the top of a line to its baseline at ``size`` pixels."""
    # CJK ideographs reach ~0.83 em above the baseline in this face.
    return round(size * 0.86)


def _is_cjk(ch: str) -> bool:
    # East Asian wide and full-width characters may break anywhere.
    return unicodedata.east_asian_width(ch) in ("W", "F")


# Characters that must not start a line (kinsoku): closing punctuation and the like.
_NO_LINE_START = set("，。、；：？！）」』】》〉”’,.;:?!)]}%…·")


def tokens(text: str) -> list[str]:
    """``text`` cut where a line may break: after spaces, between CJK characters."""
    out: list[str] = []
    word = ""
    for ch in text:
        if ch in _NO_LINE_START and (word or out):
            word += ch  # glued to what comes before it
        elif ch == " ":
            out.append(word + " ")
            word = ""
        elif _is_cjk(ch):
            if word:
                out.append(word)
            word = ch
        else:
            if word and _is_cjk(word[-1]):
                out.append(word)
                word = ""
            word += ch
    if word:
        out.append(word)
    return out


def _split_long(token: str, size: int, max_width: float) -> list[str]:
    """A token wider than a line, cut into pieces that fit (a very long word)."""
    pieces, piece = [], ""
    for ch in token:
        if piece and width(piece + ch, size) > max_width:
            pieces.append(piece)
            piece = ""
        piece += ch
    return pieces + [piece] if piece else pieces


def wrap(text: str, size: int, max_width: float) -> list[str]:
    """``text`` broken into lines no wider than ``max_width`` at ``size`` pixels."""
    lines: list[str] = []
    line = ""
    for tok in tokens(text):
        for piece in (_split_long(tok, size, max_width) if width(tok.rstrip(), size) > max_width else [tok]):
            if line and width((line + piece).rstrip(), size) > max_width:
                lines.append(line.rstrip())
                line = piece.lstrip()
            else:
                line += piece
    if line.strip():
        lines.append(line.rstrip())
    return lines


def ellipsize(text: str, size: int, max_width: float) -> str:
    """``text`` cut and ended with an ellipsis so that it fits ``max_width``."""
    if width(text, size) <= max_width:
        return text
    while text and width(text.rstrip() + ELLIPSIS, size) > max_width:
        text = text[:-1]
    return text.rstrip() + ELLIPSIS


def fit(text: str, max_size: int, min_size: int, box_w: int, box_h: int, max_lines: int) -> tuple[int, list[str]]:
    """The largest size from ``max_size`` down to ``min_size`` at which ``text`` fits
    the box in at most ``max_lines`` lines, and those lines; at ``min_size`` the
    last line that fits is ended with an ellipsis."""
    for size in range(max_size, min_size - 1, -1):
        lines_fit = max(1, min(max_lines, box_h // line_height(size)))
        lines = wrap(text, size, box_w)
        if len(lines) <= lines_fit:
            return size, lines
    # Even the smallest size needs more lines: keep what fits, cut the last one.
    lines_fit = max(1, min(max_lines, box_h // line_height(min_size)))
    kept = wrap(text, min_size, box_w)[:lines_fit - 1]
    return min_size, kept + [ellipsize(_tail_from(text, kept), min_size, box_w)]


def _tail_from(text: str, head_lines: list[str]) -> str:
    """What of ``text`` is left after the characters of ``head_lines`` (spaces aside)."""
    need = sum(len(line.replace(" ", "")) for line in head_lines)
    i = 0
    while need and i < len(text):
        if text[i] != " ":
            need -= 1
        i += 1
    return text[i:].lstrip()
