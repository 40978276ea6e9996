"""Glasses: a transparent (RGBA) frame image placed so its lenses sit on the eyes.

The two lens centres of the image (its ``anchors``) are mapped onto the two
eye centres by a similarity transform, so the frame scales with the face's
distance and turns with the head's roll. Built-in frames are drawn with
OpenCV in memory the first time they are used; a product's own image is an
RGBA PNG with its anchors in the try-on file.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ar_mirror.control import Layer
from ar_mirror.landmarks import Landmarks

# Built-in frames: drawn at 2x and scaled down, for smooth edges.
_W, _H, _SS = 600, 220, 2
_LENS_Y, _LENS_X = 110, (150, 450)  # lens centres: 300 px apart, the frame symmetric about them
_LENS_TINT = 40  # alpha of the glass itself: a faint grey, so the lens reads as glass


def _draw_builtin(style: str, bgr: tuple[int, int, int]) -> np.ndarray:
    """An RGBA (BGRA) image of a frame of ``style`` in colour ``bgr``."""
    s = _SS
    img = np.zeros((_H * s, _W * s, 4), np.uint8)
    rim = (*bgr, 255)
    glass = (235, 235, 235, _LENS_TINT)
    y = _LENS_Y * s
    for x in (_LENS_X[0] * s, _LENS_X[1] * s):
        if style == "round":
            cv2.circle(img, (x, y), 88 * s, glass, -1, cv2.LINE_AA)
            cv2.circle(img, (x, y), 88 * s, rim, 11 * s, cv2.LINE_AA)
        elif style == "square":
            pts = np.array([[x - 100 * s, y - 72 * s], [x + 100 * s, y - 72 * s],
                            [x + 100 * s, y + 72 * s], [x - 100 * s, y + 72 * s]], np.int32)
            cv2.fillPoly(img, [pts], glass, cv2.LINE_AA)
            cv2.polylines(img, [pts], True, rim, 12 * s, cv2.LINE_AA)
        else:  # cat-eye: an ellipse tilted up towards the temples
            tilt = -12 if x < _W * s // 2 else 12
            cv2.ellipse(img, (x, y), (100 * s, 68 * s), tilt, 0, 360, glass, -1, cv2.LINE_AA)
            cv2.ellipse(img, (x, y), (100 * s, 68 * s), tilt, 0, 360, rim, 12 * s, cv2.LINE_AA)
    # Bridge and the start of each temple, on the lenses' centre line.
    half = {"round": 88, "square": 100}.get(style, 100) * s
    cv2.line(img, (_LENS_X[0] * s + half, y), (_LENS_X[1] * s - half, y), rim, 10 * s, cv2.LINE_AA)
    cv2.line(img, (0, y), (_LENS_X[0] * s - half, y), rim, 10 * s, cv2.LINE_AA)
    cv2.line(img, (_LENS_X[1] * s + half, y), (_W * s, y), rim, 10 * s, cv2.LINE_AA)
    return cv2.resize(img, (_W, _H), interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=16)
def frame_image(style: str, shade: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The RGBA image of a frame and, for a built-in one, its two lens centres (float32, 2x2)."""
    if style in ("round", "square", "cat-eye"):
        bgr = Layer(sku="-", kind="glasses", shade=shade).bgr()
        return _draw_builtin(style, bgr), np.float32([[_LENS_X[0], _LENS_Y], [_LENS_X[1], _LENS_Y]])
    img = cv2.imread(style, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"{style}: not an RGBA image")
    return img, None  # a product image's anchors come with its try-on data


def placement(anchors: np.ndarray, face: Landmarks) -> np.ndarray:
    """The 2x3 similarity transform that puts the image's lens centres on the person's eye centres."""
    right, left = face.eye_centres()
    src = anchors[1] - anchors[0]
    dst = left - right
    scale = float(np.hypot(*dst) / max(np.hypot(*src), 1e-6))
    angle = float(np.arctan2(dst[1], dst[0]) - np.arctan2(src[1], src[0]))
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    shift = right - rot @ anchors[0]
    return np.hstack([rot, shift[:, None]]).astype(np.float32)


def draw(frame: np.ndarray, face: Landmarks, layer: Layer) -> None:
    """Put the glasses of ``layer`` on the face, blending by the image's alpha."""
    image, builtin = frame_image(layer.style, layer.shade)
    anchors = np.float32(layer.anchors) if layer.anchors is not None else builtin
    if anchors is None:
        raise ValueError(f"{layer.sku}: the frame image {layer.style} needs anchors (its lens centres)")
    m = placement(anchors, face)
    h, w = image.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]) @ m[:, :2].T + m[:, 2]
    fh, fw = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, (fw, fh))
    if x1 <= x0 or y1 <= y0:
        return
    # Warp only into the box the glasses cover, not the whole frame.
    local = m.copy()
    local[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(image, local, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3].astype(np.float32) * (1 / 255)
    roi = frame[y0:y1, x0:x1]
    roi[:] = cv2.blendLinear(warped[..., :3], roi, alpha, 1 - alpha)  # one SIMD pass, a third of numpy's time
