"""Tops and outerwear drawn on the live body from a flat garment picture, fitted to the pose each frame.

A garment picture (RGBA) names where the body's joints fall on it (a
``Layer``'s ``fit``). Once per picture its pixels are split into pieces,
each following one bone: the torso (the quad of shoulders and hips) and,
per side, the upper sleeve (shoulder to elbow) and the lower sleeve (elbow
to wrist); a pixel outside the torso quad goes to the bone it is nearest.
Each frame:

1. the torso piece is warped by the perspective transform taking the
   picture's shoulders and hips onto the pose's (a turned or leaning body
   turns and leans the shirt), each sleeve piece by the affine transform
   taking its bone onto the arm's, its width scaled as the torso is; a
   bone whose joints are not seen follows the torso;
2. the torso piece is cut where the forearms and hands are, when elbow
   and wrist are seen: a capsule from the elbow to past the wrist, kept
   only where the person mask says it is the person, so a hand raised in
   front of the chest stays in front of the shirt (a sleeve, drawn over
   the torso, still covers its own arm);
3. everything is multiplied by the person mask: a garment never paints the
   background, even where the flat picture is wider than the body;
4. the colour keeps some of the light and shade of what was under it
   (folds, the light from one side), as makeup keeps the skin's.

All of it happens in the garment's bounding box in the frame (a quarter to
a half of a 720p frame for a customer two metres away).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ar_mirror.body import Body
from ar_mirror.control import Layer

# Of the light and shade under the garment, how much shows in it, blurred
# (over ``SHADE_BLUR`` of the box's width) so that only the broad light and
# folds show, not the print of what the customer wears.
TEXTURE = 0.35
SHADE_BLUR = 0.04
# Forearm capsule's thickness over the forearm's length, and how far past the wrist the hand goes.
FOREARM_WIDTH = 0.38
HAND_BEYOND_WRIST = 0.45
# A forearm is cut out of the shirt only when elbow and wrist are this visible: a wrist the pose
# guesses below the picture's edge (a photo cut at the waist) must not cut a hole in the shirt.
FOREARM_SEEN = 0.65

# Each piece: its name, the joints of its bone (None for the torso quad).
_SIDES = ("right", "left")
_BONES = {f"{part}_{side}": (f"{a}_{side}", f"{b}_{side}")
          for side in _SIDES for part, a, b in (("upper", "shoulder", "elbow"), ("lower", "elbow", "wrist"))}


@dataclass(frozen=True)
class Garment:
    """A garment picture split into pieces: premultiplied BGRA float32 per piece, with its box in the picture."""

    pieces: dict[str, tuple[np.ndarray, tuple[int, int]]]  # name -> (BGRA crop, its top-left x, y)
    fit: dict[str, np.ndarray]


def _segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every pixel (xs, ys grids) to the segment ab."""
    d = b - a
    t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    return np.hypot(xs - (a[0] + t * d[0]), ys - (a[1] + t * d[1]))


def _torso_quad(fit: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([fit["shoulder_right"], fit["shoulder_left"], fit["hip_left"], fit["hip_right"]])


@lru_cache(maxsize=16)
def _load(path: str, fit_items: tuple[tuple[str, tuple[float, float]], ...]) -> Garment:
    """Read and split a garment picture (cached: a look is set once and drawn every frame)."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise ValueError(f"{path}: a garment must be an RGBA PNG")
    fit = {name: np.float32(xy) for name, xy in fit_items}
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    quad = _torso_quad(fit)
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(quad).astype(np.int32)], 1)
    outside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    distances = {"torso": outside}
    for name, (a, b) in _BONES.items():
        if a in fit and b in fit:
            distances[name] = _segment_distance(xs, ys, fit[a], fit[b])
    names = list(distances)
    owner = np.argmin(np.stack([distances[n] for n in names]), axis=0)
    owner[inside > 0] = 0
    bgra = image.astype(np.float32)
    bgra[..., :3] *= bgra[..., 3:] / 255  # premultiplied: warps blur colour and alpha alike
    pieces = {}
    for i, name in enumerate(names):
        mine = (owner == i) & (image[..., 3] > 0)
        if not mine.any():
            continue
        y_idx, x_idx = np.nonzero(mine)
        x0, y0, x1, y1 = x_idx.min(), y_idx.min(), x_idx.max() + 1, y_idx.max() + 1
        crop = bgra[y0:y1, x0:x1] * mine[y0:y1, x0:x1, None]
        pieces[name] = (np.ascontiguousarray(crop), (int(x0), int(y0)))
    return Garment(pieces, fit)


def garment(layer: Layer) -> Garment:
    """The layer's garment picture, split into pieces."""
    if layer.fit is None:
        raise ValueError(f"{layer.sku}: a garment layer needs its fit")
    return _load(layer.style, tuple(sorted(layer.fit.items())))


def _bone_matrix(src: tuple[np.ndarray, np.ndarray], dst: tuple[np.ndarray, np.ndarray], scale: float) -> np.ndarray:
    """3x3 affine taking bone ``src`` onto ``dst``, the width across it scaled by ``scale``."""
    (a, b), (c, d) = src, dst
    u, v = b - a, d - c
    n_src = np.float32([-u[1], u[0]]) / max(float(np.hypot(*u)), 1e-6)
    n_dst = np.float32([-v[1], v[0]]) / max(float(np.hypot(*v)), 1e-6)
    m = cv2.getAffineTransform(np.float32([a, b, a + 20 * n_src]), np.float32([c, d, c + 20 * scale * n_dst]))
    return np.vstack([m, [0, 0, 1]])


def _transforms(g: Garment, body: Body) -> dict[str, np.ndarray]:
    """Per piece, the 3x3 matrix from garment picture pixels to frame pixels."""
    src = _torso_quad(g.fit)
    dst = np.stack([body.joint("shoulder_right"), body.joint("shoulder_left"), body.joint("hip_left"),
                    body.joint("hip_right")]).astype(np.float32)
    torso = cv2.getPerspectiveTransform(src, dst)
    scale = body.shoulder_width() / max(float(np.linalg.norm(src[1] - src[0])), 1e-6)
    out = {"torso": torso}
    for name, (a, b) in _BONES.items():
        if name not in g.pieces:
            continue
        if body.seen(a, b) and a in g.fit and b in g.fit:
            out[name] = _bone_matrix((g.fit[a], g.fit[b]), (body.joint(a), body.joint(b)), scale)
        else:
            # The bone is not seen: the piece stays where the flat picture has it, relative to the torso.
            upper = f"upper_{name.split('_')[1]}"
            out[name] = out.get(upper, torso) if name.startswith("lower") else torso
    return out


def _box(g: Garment, mats: dict[str, np.ndarray], shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The frame box every warped piece falls in, clipped to the frame."""
    corners = []
    for name, m in mats.items():
        crop, (x0, y0) = g.pieces[name]
        h, w = crop.shape[:2]
        pts = np.float32([[x0, y0], [x0 + w, y0], [x0, y0 + h], [x0 + w, y0 + h]])[None]
        corners.append(cv2.perspectiveTransform(pts, m)[0])
    allc = np.concatenate(corners)
    fh, fw = shape[:2]
    x0, y0 = np.floor(allc.min(axis=0)).astype(int)
    x1, y1 = np.ceil(allc.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def front_of_body(body: Body, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """Where the forearms and hands may be, in the box (float32 0..1): a capsule per seen forearm, past the wrist;
    None when no forearm is seen."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), np.uint8)
    drawn = False
    for side in _SIDES:
        if not body.seen(f"elbow_{side}", f"wrist_{side}", at=FOREARM_SEEN):
            continue
        e, w = body.joint(f"elbow_{side}"), body.joint(f"wrist_{side}")
        length = float(np.linalg.norm(w - e))
        hand = w + (w - e) * HAND_BEYOND_WRIST
        thick = max(int(round(FOREARM_WIDTH * length)), 2)
        a = tuple(np.round((e - (x0, y0)) * 4).astype(int))
        b = tuple(np.round((hand - (x0, y0)) * 4).astype(int))
        cv2.line(out, a, b, 255, thick, lineType=cv2.LINE_AA, shift=2)
        drawn = True
    return out.astype(np.float32) * (1 / 255) if drawn else None


def person_mask(body: Body, box: tuple[int, int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """The person mask (0..1) resampled into the box of a frame of ``shape``; all ones without a mask."""
    x0, y0, x1, y1 = box
    if body.mask is None:
        return np.ones((y1 - y0, x1 - x0), np.float32)
    mh, mw = body.mask.shape[:2]
    sx, sy = shape[1] / mw, shape[0] / mh
    # Mask pixel i centred on i, as the frame's: frame x = (i + 0.5) * sx - 0.5.
    m = np.float32([[sx, 0, 0.5 * sx - 0.5 - x0], [0, sy, 0.5 * sy - 0.5 - y0]])
    return cv2.warpAffine(body.mask, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _piece_box(crop: np.ndarray, m: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Where one warped piece falls inside ``box``, relative to the box's corner."""
    h, w = crop.shape[:2]
    pts = cv2.perspectiveTransform(np.float32([[[0, 0], [w, 0], [0, h], [w, h]]]), m)[0]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, bw), min(y1, bh)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def draw(frame: np.ndarray, body: Body, layer: Layer) -> None:
    """Draw the garment of ``layer`` on ``body`` in ``frame`` (BGR, in place)."""
    g = garment(layer)
    if "torso" not in g.pieces:
        return
    mats = _transforms(g, body)
    box = _box(g, mats, frame.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    colour = np.zeros((y1 - y0, x1 - x0, 3), np.float32)  # premultiplied by the garment's alpha
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    in_front = front_of_body(body, box)
    for name in ("torso", *(n for n in _BONES if n in mats)):
        crop, (cx, cy) = g.pieces[name]
        m = np.float64([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ mats[name] @ np.float64(
            [[1, 0, cx], [0, 1, cy], [0, 0, 1]])
        piece = _piece_box(crop, m, box)
        if piece is None:
            continue
        px0, py0, px1, py1 = piece
        m = np.float64([[1, 0, -px0], [0, 1, -py0], [0, 0, 1]]) @ m
        warped = cv2.warpPerspective(crop, m, (px1 - px0, py1 - py0), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT)
        if name == "torso" and in_front is not None:
            warped *= (1 - in_front[py0:py1, px0:px1])[..., None]
        a = warped[..., 3] * (1 / 255)
        if name == "torso":  # the first piece: nothing under it yet
            colour[py0:py1, px0:px1] = warped[..., :3]
            alpha[py0:py1, px0:px1] = a
            continue
        # "Over": the piece drawn later covers what is under it.
        under = 1 - a
        colour[py0:py1, px0:px1] *= under[..., None]
        colour[py0:py1, px0:px1] += warped[..., :3]
        alpha[py0:py1, px0:px1] *= under
        alpha[py0:py1, px0:px1] += a
    cover = person_mask(body, box, frame.shape) * layer.opacity
    alpha *= cover
    if float(alpha.max()) <= 0.0:
        return
    roi = frame[y0:y1, x0:x1]
    size = (x1 - x0, y1 - y0)
    luma = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
    # Blurred on a quarter-size copy: a wide blur for a few hundred microseconds.
    small = cv2.resize(luma, (max(size[0] // 4, 1), max(size[1] // 4, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigmaX=max(SHADE_BLUR * size[0] / 4, 0.5))
    covered = alpha > 0.5
    mean = float(cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)[covered].mean()) if covered.any() else 128.0
    small = (1 - TEXTURE) + small * (TEXTURE / max(mean, 1.0))
    light = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR) * cover
    out = colour * light[..., None]
    out += roi * (1 - alpha)[..., None]
    roi[:] = np.clip(out, 0, 255).astype(np.uint8)


DRAW = {"top": draw, "outerwear": draw}
