"""Makeup on the real photo: the colour lands in its region and nowhere else on the picture."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from ar_mirror import makeup, synthetic  # noqa: E402
from ar_mirror.control import Layer  # noqa: E402

SIZE = (640, 480)


@pytest.fixture
def scene(tracker, photo):
    """A frame of the still face and its landmarks."""
    frame = synthetic.render(photo, synthetic.still(SIZE), SIZE)
    tracker.track(frame)
    face = tracker.track(frame)
    assert face is not None
    return frame, face


def changed(before: np.ndarray, after: np.ndarray, threshold: int = 6) -> np.ndarray:
    """Pixels whose colour moved by more than ``threshold`` in some channel."""
    return (np.abs(after.astype(int) - before).max(axis=2) > threshold)


def polygon_mask(points: np.ndarray, grow: int = 0) -> np.ndarray:
    mask = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    if grow:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask.astype(bool)


def test_lipstick_colours_the_lips_and_nothing_outside_them(scene):
    frame, face = scene
    t = face.topology
    out = frame.copy()
    makeup.lipstick(out, face, Layer(sku="LIP", kind="lipstick", shade="#1030e0", opacity=0.8))
    moved = changed(frame, out)
    lips = polygon_mask(face.region(t.lips_outer)) & ~polygon_mask(face.region(t.lips_inner))
    # Inside the lip line (plus the feathered edge, a pixel or two at this size)...
    assert not (moved & ~polygon_mask(face.region(t.lips_outer), grow=3)).any()
    # ...none outside the face, none on the teeth...
    assert not (moved & ~polygon_mask(face.region(t.face_oval))).any()
    inner_core = cv2.erode(polygon_mask(face.region(t.lips_inner)).astype(np.uint8), np.ones((5, 5), np.uint8))
    assert not (moved & inner_core.astype(bool)).any()
    # ...and most of the lips themselves.
    assert (moved & lips).sum() > 0.8 * lips.sum()
    # The shade shows: the lips turned blue.
    b, g, r = out[lips].mean(axis=0) - frame[lips].mean(axis=0)
    assert b > 20 and r < 0


def test_no_opacity_no_change(scene):
    frame, face = scene
    out = frame.copy()
    makeup.lipstick(out, face, Layer(sku="LIP", kind="lipstick", shade="#ff0000", opacity=0.0))
    assert np.array_equal(out, frame)


def test_gloss_catches_the_light_and_matte_does_not(scene):
    frame, face = scene
    t = face.topology
    lips = polygon_mask(face.region(t.lips_outer)) & ~polygon_mask(face.region(t.lips_inner))
    brightest = {}
    for finish in ("matte", "gloss"):
        out = frame.copy()
        makeup.lipstick(out, face, Layer(sku="LIP", kind="lipstick", shade="#9b1b30", finish=finish, opacity=0.9))
        brightest[finish] = np.percentile(out[lips].astype(float).mean(axis=1), 99)
    assert brightest["gloss"] > brightest["matte"] + 15


def test_eyeshadow_shades_the_lids_not_the_eyes(scene):
    frame, face = scene
    t = face.topology
    out = frame.copy()
    makeup.eyeshadow(out, face, Layer(sku="SH", kind="eyeshadow", shade="#20a040", opacity=0.8))
    moved = changed(frame, out)
    assert moved.sum() > 200
    assert not (moved & ~polygon_mask(face.region(t.face_oval))).any()
    for eye in (t.right_eye, t.left_eye):
        core = cv2.erode(polygon_mask(face.region(eye)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert not (moved & core).any()
    # On the lids: mostly above the eyes' centres, and never below the eyes but for the
    # soft edge (a pixel or two) at their outer corners.
    ys = np.nonzero(moved)[0]
    eye_line = np.mean([c[1] for c in face.eye_centres()])
    assert (ys < eye_line).mean() > 0.85
    lowest = max(face.region(t.right_eye)[:, 1].max(), face.region(t.left_eye)[:, 1].max())
    assert ys.max() < lowest + 3


def test_blush_sits_on_both_cheeks_inside_the_face(scene):
    frame, face = scene
    t = face.topology
    out = frame.copy()
    makeup.blush(out, face, Layer(sku="BL", kind="blush", shade="#ff2060", opacity=0.6))
    moved = changed(frame, out)
    assert not (moved & ~polygon_mask(face.region(t.face_oval))).any()
    mid = round(float(face.points[list(t.face_oval), 0].mean()))
    halves = {t.right_cheek: moved[:, :mid], t.left_cheek: moved[:, mid:]}
    for (cheek, half), x0 in zip(halves.items(), (0, mid)):
        ys, xs = np.nonzero(half)
        centre = face.points[cheek]
        assert np.hypot(xs.mean() + x0 - centre[0], ys.mean() - centre[1]) < 0.05 * face.face_width()
