"""The whole look on video synthesized from the photo (moved, scaled, rotated): glasses stay on the eyes."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from ar_mirror import glasses, synthetic  # noqa: E402
from ar_mirror.control import Layer, Look  # noqa: E402
from ar_mirror.pipeline import Pipeline, draw_look  # noqa: E402
from ar_mirror.smoothing import OneEuro  # noqa: E402

SIZE = (640, 480)
GREEN_GLASSES = Layer(sku="GLS", kind="glasses", shade="#00ff00", style="round")


def lens_centres(frame: np.ndarray, out: np.ndarray, eye_line: np.ndarray) -> np.ndarray:
    """The centres of the two lenses as drawn: the centroids of the rim's pixels on each side.

    A built-in frame is symmetric about each lens (half a bridge inside, as
    much temple outside), so each side's centroid is its lens's centre.
    """
    o = out.astype(int)
    rim = (o[..., 1] - np.maximum(o[..., 0], o[..., 2]) > 80) & (np.abs(o - frame).max(axis=2) > 30)
    ys, xs = np.nonzero(rim)
    pts = np.stack([xs, ys], axis=1).astype(float)
    side = (pts - pts.mean(axis=0)) @ eye_line > 0
    return np.array([pts[~side].mean(axis=0), pts[side].mean(axis=0)])


def test_glasses_sit_on_the_eyes_of_the_still_photo(tracker, photo):
    pose = synthetic.still(SIZE)
    frame = synthetic.render(photo, pose, SIZE)
    tracker.track(frame)
    face = tracker.track(frame)
    out = frame.copy()
    glasses.draw(out, face, GREEN_GLASSES)
    eyes = pose.apply(synthetic.PHOTO_EYES)
    found = lens_centres(frame, out, eyes[1] - eyes[0])
    assert np.linalg.norm(found - eyes, axis=1).max() < 2.5


def test_glasses_follow_the_moving_head_within_a_few_pixels(tracker, photo):
    pipeline = Pipeline(tracker)
    look = Look(layers=(GREEN_GLASSES,))
    errors = []
    for i in range(60):  # two seconds at 30 fps: sways, nods, leans in and out, tilts
        pose = synthetic.moving(i, SIZE)
        frame = synthetic.render(photo, pose, SIZE)
        out = frame.copy()
        assert pipeline.process(out, i / 30, look) is not None
        eyes = pose.apply(synthetic.PHOTO_EYES)
        found = lens_centres(frame, out, eyes[1] - eyes[0])
        errors.append(np.linalg.norm(found - eyes, axis=1).max())
    # The lenses (their centre between the eyes, the frame's size and its roll)
    # are within a few pixels of the true eyes on a face about 160 px wide.
    assert max(errors) < 4.0, np.round(errors, 1)
    assert np.median(errors) < 2.0


def test_smoothing_steadies_the_overlay_on_a_noisy_camera(tracker, photo):
    frame = synthetic.render(photo, synthetic.still(SIZE), SIZE)
    rng = np.random.default_rng(7)
    noisy = [np.clip(frame + rng.integers(-10, 11, frame.shape, dtype=np.int16), 0, 255).astype(np.uint8)
             for _ in range(40)]  # sensor noise

    def jitter(smoother: OneEuro) -> float:
        """How far each landmark wanders over the frames (px, the mean over landmarks)."""
        tracker.reset()
        pipeline = Pipeline(tracker, smoother)
        points = np.array([pipeline.track(f, i / 30).points for i, f in enumerate(noisy)])[10:]
        return float(np.linalg.norm(points.std(axis=0), axis=1).mean())

    raw = jitter(OneEuro(min_cutoff=1e6))  # a cutoff this high passes everything through
    smooth = jitter(OneEuro())
    assert smooth < 0.5 * raw, (smooth, raw)


def test_before_after_leaves_one_side_untouched(tracker, photo):
    frame = synthetic.render(photo, synthetic.still(SIZE), SIZE)
    tracker.track(frame)
    face = tracker.track(frame)
    lips = Layer(sku="LIP", kind="lipstick", shade="#1030e0", opacity=0.8)
    for side in ("left", "right"):
        out = frame.copy()
        draw_look(out, face, Look(layers=(lips, GREEN_GLASSES), compare=0.5, compare_side=side))
        half = slice(0, 319) if side == "left" else slice(321, 640)
        other = slice(321, 640) if side == "left" else slice(0, 319)
        assert np.array_equal(out[:, half], frame[:, half])
        assert not np.array_equal(out[:, other], frame[:, other])
