"""Draws the demo garments as flat RGBA PNGs: ``python ar_mirror/garments/make_garments.py``.

A T-shirt, a shirt and a jacket, seen from the front as laid flat, drawn
with OpenCV from polygons (nothing downloaded). Each is drawn on the same
skeleton: the person's right shoulder on the picture's left, as a camera
sees a customer. ``ANCHORS`` below is where the body's joints fall on the
flat garment (shoulders, the hips at the hem, the elbows, and for long
sleeves the wrists); ar_mirror/products.yaml repeats them for each SKU,
and a test checks that the two agree. Run it again after changing a
drawing: the PNGs are committed next to it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = (480, 560)  # width, height of every garment picture
# Where the joints fall on the flat garments, in image pixels (x, y); "right"
# is the person's right, on the picture's left. The shoulder and hip joints
# sit well inside a garment's outline, as they sit inside the body's.
ANCHORS = {
    "shoulder_right": (170.0, 118.0), "shoulder_left": (310.0, 118.0),
    "hip_right": (188.0, 440.0), "hip_left": (292.0, 440.0),
    "elbow_right": (60.0, 300.0), "elbow_left": (420.0, 300.0),
    "wrist_right": (25.0, 470.0), "wrist_left": (455.0, 470.0),
}


def _mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The other half of a symmetric outline (drawn for the picture's left half, from the top down)."""
    w = SIZE[0]
    return [(w - x, y) for x, y in reversed(points)]


def _outline(half: list[tuple[float, float]]) -> np.ndarray:
    return np.array(half + _mirror(half), np.int32)


def _shade(canvas: np.ndarray, colour: tuple[int, int, int]) -> None:
    """A soft fall of light from top to bottom, and darker sides: cloth, not a flat fill."""
    h, w = canvas.shape[:2]
    ys = np.linspace(1.06, 0.9, h, dtype=np.float32)[:, None]
    xs = 1 - 0.12 * np.abs(np.linspace(-1, 1, w, dtype=np.float32))[None, :] ** 2
    light = ys * xs
    for c in range(3):
        canvas[..., c] = np.clip(colour[c] * light, 0, 255).astype(np.uint8)


def _draw(name: str, body: np.ndarray, colour: tuple[int, int, int], details) -> None:
    h, w = SIZE[1], SIZE[0]
    rgb = np.zeros((h, w, 3), np.uint8)
    _shade(rgb, colour)
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [body], 255, lineType=cv2.LINE_AA)
    details(rgb, alpha)
    dark = tuple(int(c * 0.55) for c in colour)
    cv2.polylines(rgb, [body], True, dark, 2, lineType=cv2.LINE_AA)
    out = np.dstack([rgb[..., ::-1], alpha])  # RGB drawn, BGRA written
    cv2.imwrite(str(HERE / f"{name}.png"), out)


def tshirt() -> None:
    """A crew-neck T-shirt with short sleeves, navy."""
    half = [(200, 88), (150, 100), (118, 112), (70, 190), (112, 222), (138, 190), (150, 480), (240, 486)]
    body = _outline(half[:-1] + [(240, 486)])

    def details(rgb: np.ndarray, alpha: np.ndarray) -> None:
        cv2.ellipse(alpha, (240, 84), (44, 32), 0, 0, 180, 0, -1, lineType=cv2.LINE_AA)  # the neck opening
        cv2.ellipse(rgb, (240, 84), (48, 36), 0, 0, 180, (200, 200, 215), 5, lineType=cv2.LINE_AA)  # rib collar
        for sign in (-1, 1):  # sleeve hems
            x0, x1 = (70, 112) if sign < 0 else (410, 368)
            cv2.line(rgb, (x0 + 6 * -sign, 180), (x1 + 6 * -sign, 212), (20, 28, 60), 2, cv2.LINE_AA)
        cv2.line(rgb, (152, 462), (328, 462), (20, 28, 60), 2, cv2.LINE_AA)  # bottom hem
    _draw("tshirt", body, (38, 52, 110), details)


def shirt() -> None:
    """A long-sleeved button-down shirt, light blue, with a collar, a placket and cuffs."""
    half = [(205, 80), (148, 96), (112, 110), (60, 250), (14, 470), (46, 482), (92, 300), (140, 210),
            (146, 486), (240, 500)]
    body = _outline(half)

    def details(rgb: np.ndarray, alpha: np.ndarray) -> None:
        cv2.ellipse(alpha, (240, 76), (38, 26), 0, 0, 180, 0, -1, lineType=cv2.LINE_AA)
        for sign in (-1, 1):  # collar points
            pts = np.array([(240, 100), (240 + sign * 44, 72), (240 + sign * 30, 128)], np.int32)
            cv2.fillPoly(rgb, [pts], (235, 242, 250), lineType=cv2.LINE_AA)
            cv2.polylines(rgb, [pts], True, (120, 140, 170), 2, cv2.LINE_AA)
        cv2.line(rgb, (240, 120), (240, 496), (120, 140, 170), 2, cv2.LINE_AA)  # placket
        for y in range(150, 480, 55):
            cv2.circle(rgb, (248, y), 5, (250, 250, 250), -1, cv2.LINE_AA)
        for sign in (-1, 1):  # cuffs
            x = 30 if sign < 0 else 450
            cv2.line(rgb, (x - 18, 440), (x + 18, 452), (120, 140, 170), 3, cv2.LINE_AA)
        cv2.rectangle(rgb, (272, 170), (312, 215), (120, 140, 170), 2, cv2.LINE_AA)  # pocket
    _draw("shirt", body, (168, 198, 230), details)


def jacket() -> None:
    """A bomber jacket, olive, open at the front, with ribbed cuffs and waistband."""
    half = [(200, 78), (140, 92), (104, 108), (48, 250), (6, 476), (50, 490), (90, 310), (134, 220),
            (140, 500), (222, 506)]
    body = _outline(half)

    def details(rgb: np.ndarray, alpha: np.ndarray) -> None:
        cv2.ellipse(alpha, (240, 74), (42, 30), 0, 0, 180, 0, -1, lineType=cv2.LINE_AA)
        opening = np.array([(222, 100), (258, 100), (258, 506), (222, 506)], np.int32)
        cv2.fillPoly(alpha, [opening], 0, lineType=cv2.LINE_AA)  # open front: what is under it shows
        cv2.ellipse(rgb, (240, 78), (48, 36), 0, 0, 180, (40, 50, 35), 8, lineType=cv2.LINE_AA)  # rib collar
        cv2.rectangle(rgb, (140, 474), (340, 506), (45, 55, 38), -1)  # rib waistband
        for sign in (-1, 1):
            x = 28 if sign < 0 else 452
            cv2.line(rgb, (x - 24, 462), (x + 24, 474), (45, 55, 38), 12, cv2.LINE_AA)  # rib cuffs
            cv2.line(rgb, (240 + sign * 22, 110), (240 + sign * 22, 474), (170, 170, 160), 3, cv2.LINE_AA)  # zip
            cv2.line(rgb, (240 + sign * 70, 300), (240 + sign * 80, 380), (60, 72, 48), 3, cv2.LINE_AA)  # pocket
    _draw("jacket", body, (96, 112, 74), details)


def main() -> None:
    """Write the three PNGs next to this file."""
    tshirt()
    shirt()
    jacket()


if __name__ == "__main__":
    main()
