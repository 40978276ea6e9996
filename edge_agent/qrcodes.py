"""QR codes for people: drawn in a terminal so that a phone reads them whatever its colours, and as a PNG.

The terminal drawing uses half blocks with explicit ANSI colours (black
modules on a bright white ground, the quiet zone included): a QR drawn in
the terminal's own colours reads only where text is light on dark, and a
phone's camera sees an inverted code elsewhere. The PNG (4 modules of quiet
zone, as the standard asks) is for a screen that shows no colours, or to
send to a phone.
"""

from __future__ import annotations

import io
from pathlib import Path

QUIET_ZONE = 2  # modules of white around the code: phones read 2 well, and the banner stays short
_PAINT = "\x1b[30;107m"  # black on bright white: the terminal's own colours never show through
_RESET = "\x1b[0m"


def _modules(text: str, border: int) -> list[list[bool]]:
    import qrcode

    code = qrcode.QRCode(border=border)
    code.add_data(text)
    code.make(fit=True)
    return code.get_matrix()


def terminal_qr(text: str) -> str:
    """``text`` as a QR code in half blocks with explicit ANSI colours: black modules on white, quiet zone included.

    Each character is two rows of modules: ``▀`` the upper one dark, ``▄`` the lower, ``█`` both, space neither."""
    rows = _modules(text, QUIET_ZONE)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    glyph = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    return "".join(_PAINT + "".join(glyph[top, bottom] for top, bottom in zip(upper, lower, strict=True)) + _RESET
                   + "\n" for upper, lower in zip(rows[::2], rows[1::2], strict=True))


def write_qr_png(text: str, path: Path, scale: int = 8) -> Path:
    """``text`` as a QR code PNG at ``path`` (black on white, 4 modules of quiet zone), written atomically."""
    from PIL import Image

    rows = _modules(text, 4)
    image = Image.new("1", (len(rows[0]), len(rows)), 1)
    image.putdata([0 if dark else 1 for row in rows for dark in row])
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(out.getvalue())
    tmp.replace(path)
    return path
