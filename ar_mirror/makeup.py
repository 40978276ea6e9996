"""Makeup drawn on a frame: lipstick, eyeshadow and blush, each in a feathered mask around its region.

Every layer works only inside its region's bounding box (a lip is a few
thousand pixels of a 720p frame). The shade replaces the skin's colour but
keeps its light and shade (the luminance relative to the region's mean), so
lips keep their texture; the finish sets how much of that texture is kept
and whether light catches it (gloss, shimmer).
"""

from __future__ import annotations

import cv2
import numpy as np

from ar_mirror.control import Layer
from ar_mirror.landmarks import Landmarks

# Per finish: how much of the skin's light and shade shows through the shade,
# and how strong the highlights are where light already catches the region.
FINISHES: dict[str, tuple[float, float]] = {
    "matte": (0.55, 0.0),
    "satin": (0.8, 0.15),
    "gloss": (1.0, 0.6),
    "shimmer": (0.9, 0.35),
}


def _roi(points: np.ndarray, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The bounding box (x0, y0, x1, y1) of ``points`` grown by ``margin``, clipped to the frame; None if empty."""
    h, w = shape[:2]
    x0, y0 = np.floor(points.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + margin).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _fill(size: tuple[int, int], origin: tuple[int, int], *polygons: np.ndarray) -> np.ndarray:
    """A float32 mask of ``size`` (h, w) with the polygons filled (given in frame pixels)."""
    mask = np.zeros(size, np.uint8)
    shifted = [np.round((p - origin) * 4).astype(np.int32) for p in polygons]
    # Fixed point (2 fractional bits) and anti-aliased edges: sub-pixel landmark motion moves the edge smoothly.
    cv2.fillPoly(mask, shifted, 255, lineType=cv2.LINE_AA, shift=2)
    return mask.astype(np.float32) * (1 / 255)


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """The mask with soft edges."""
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=max(sigma, 0.5))


def tint(roi: np.ndarray, alpha: np.ndarray, layer: Layer) -> None:
    """Lay ``layer``'s shade over ``roi`` (BGR, modified in place), weighted by ``alpha`` (0..1 per pixel)."""
    texture, shine = FINISHES[layer.finish]
    luma = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY).astype(np.float32)  # BT.601 weights
    weight = alpha.sum()
    if weight < 1:
        return
    mean = float((luma * alpha).sum() / weight)
    relative = 1 + (luma / max(mean, 1.0) - 1) * texture
    coloured = np.float32(layer.bgr()) * relative[..., None]
    if shine:
        # Highlights where the region is already brightest (the light on the lower lip).
        bright = float(np.percentile(luma[alpha > 0.5], 90)) if (alpha > 0.5).any() else 255.0
        highlight = np.clip((luma - bright) / max(255 - bright, 1), 0, 1) ** 1.5
        coloured += (255 * shine * highlight)[..., None]
    shaded = np.clip(coloured, 0, 255).astype(np.uint8)
    roi[:] = cv2.blendLinear(shaded, roi, alpha, 1 - alpha)


def lipstick(frame: np.ndarray, face: Landmarks, layer: Layer) -> None:
    """Colour the lips (the outer lip line minus the mouth's opening)."""
    t = face.topology
    outer, inner = face.region(t.lips_outer), face.region(t.lips_inner)
    sigma = face.face_width() / 200
    box = _roi(outer, 3 * sigma + 1, frame.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    size = (y1 - y0, x1 - x0)
    lips = _fill(size, (x0, y0), outer) - _fill(size, (x0, y0), inner)
    alpha = _feather(np.clip(lips, 0, 1), sigma) * layer.opacity
    tint(frame[y0:y1, x0:x1], alpha, layer)


def _resample(line: np.ndarray, n: int) -> np.ndarray:
    """``n`` points evenly spaced along a polyline."""
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    along = np.concatenate([[0], np.cumsum(steps)])
    targets = np.linspace(0, along[-1], n)
    return np.stack([np.interp(targets, along, line[:, k]) for k in (0, 1)], axis=1)


def eyeshadow(frame: np.ndarray, face: Landmarks, layer: Layer) -> None:
    """Shade each upper lid, from the lash line up to about half way to the brow, never the eye itself."""
    t = face.topology
    sigma = face.face_width() / 60
    for lid_ids, brow_ids, eye_ids in ((t.right_upper_lid, t.right_brow_lower, t.right_eye),
                                       (t.left_upper_lid, t.left_brow_lower, t.left_eye)):
        lid = face.region(lid_ids)
        brow = _resample(face.region(brow_ids), len(lid))
        upper = lid + 0.55 * (brow - lid)
        band = np.concatenate([lid, upper[::-1]])
        box = _roi(band, 3 * sigma + 1, frame.shape)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        size = (y1 - y0, x1 - x0)
        alpha = _feather(_fill(size, (x0, y0), band), sigma)
        alpha *= 1 - _fill(size, (x0, y0), face.region(eye_ids))  # the feather must not tint the eye
        tint(frame[y0:y1, x0:x1], alpha * layer.opacity, layer)


def blush(frame: np.ndarray, face: Landmarks, layer: Layer) -> None:
    """A soft oval on the apple of each cheek, kept inside the face's outline."""
    t = face.topology
    width = face.face_width()
    right, left = face.eye_centres()
    angle = float(np.arctan2(*(left - right)[::-1]))
    cos, sin = np.cos(angle), np.sin(angle)
    # An elliptical Gaussian computed directly: a blurred mask this soft would
    # need a 90-pixel kernel at 720p, ten times the cost.
    sx, sy = 0.085 * width, 0.055 * width
    oval = face.region(t.face_oval)
    centre = oval.mean(axis=0)
    oval = centre + 0.95 * (oval - centre)  # a margin: the blush's soft edge stays off the jawline
    for cheek in (face.points[t.right_cheek], face.points[t.left_cheek]):
        box = _roi(cheek[None, :], 2.5 * sx, frame.shape)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        xs = np.arange(x0, x1, dtype=np.float32) - cheek[0]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cheek[1]
        u, v = xs * cos + ys * sin, ys * cos - xs * sin  # along and across the eye line
        alpha = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2)) * _fill((y1 - y0, x1 - x0), (x0, y0), oval)
        tint(frame[y0:y1, x0:x1], alpha * layer.opacity, layer)


DRAW = {"lipstick": lipstick, "eyeshadow": eyeshadow, "blush": blush}
