"""Glasses from a product's own RGBA image, and any tracker behind the ``Tracker`` interface."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage")

from ar_mirror import glasses, synthetic  # noqa: E402
from ar_mirror.control import Layer, Look  # noqa: E402
from ar_mirror.landmarks import FACE_MESH_468, Landmarks  # noqa: E402
from ar_mirror.pipeline import Pipeline  # noqa: E402
from ar_mirror.products import load  # noqa: E402

SIZE = (640, 480)


class KnownFace:
    """A tracker that "finds" landmarks it was given: the true eyes of the synthetic photo."""

    topology = FACE_MESH_468

    def __init__(self, pose: synthetic.Pose):
        points = np.zeros((468, 2), np.float32)
        right, left = pose.apply(synthetic.PHOTO_EYES)
        points[list(FACE_MESH_468.right_eye)] = right
        points[list(FACE_MESH_468.left_eye)] = left
        oval = pose.apply([[180, 60], [270, 60], [270, 180], [180, 180]])
        points[list(FACE_MESH_468.face_oval)[:4]] = oval
        self.face = Landmarks(points, FACE_MESH_468)

    def track(self, frame):
        return self.face

    def reset(self):
        pass

    def close(self):
        pass


def test_a_product_image_is_placed_by_its_anchors(tmp_path, photo):
    # A product photo of a frame: two magenta rings 200 px apart, on transparency.
    image = np.zeros((120, 320, 4), np.uint8)
    for x in (60, 260):
        cv2.circle(image, (x, 60), 45, (255, 0, 255, 255), 8)
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    (tmp_path / "tryon.yaml").write_text("GLS-9:\n  kind: glasses\n  style: frame.png\n  anchors: [[60, 60], [260, 60]]\n")
    layer = load(tmp_path / "tryon.yaml")["GLS-9"].layer("GLS-9")
    pose = synthetic.Pose(300, 250, 170, angle=-15)
    frame = synthetic.render(photo, pose, SIZE)
    out = frame.copy()
    Pipeline(KnownFace(pose)).process(out, 0.0, Look(layers=(layer,)))
    o = out.astype(int)
    ring = (o[..., 0] - o[..., 1] > 120) & (o[..., 2] - o[..., 1] > 120)
    ys, xs = np.nonzero(ring)
    eyes = pose.apply(synthetic.PHOTO_EYES)
    side = (np.stack([xs, ys], 1) - eyes.mean(0)) @ (eyes[1] - eyes[0]) > 0
    found = np.array([[xs[~side].mean(), ys[~side].mean()], [xs[side].mean(), ys[side].mean()]])
    assert np.linalg.norm(found - eyes, axis=1).max() < 1.5


def test_an_image_frame_without_anchors_is_refused():
    layer = Layer(sku="GLS-9", kind="glasses", style="/nonexistent.png")
    with pytest.raises(ValueError, match="not an RGBA image"):
        glasses.draw(np.zeros((10, 10, 3), np.uint8), KnownFace(synthetic.still(SIZE)).face, layer)


def test_built_in_frames_are_symmetric_about_their_lenses():
    for style in ("round", "square", "cat-eye"):
        image, anchors = glasses.frame_image(style, "#202020")
        assert image.shape[2] == 4 and anchors is not None
        alpha = image[..., 3].astype(float)
        cx = (alpha.sum(axis=0) * np.arange(image.shape[1])).sum() / alpha.sum()
        assert abs(cx - anchors[:, 0].mean()) < 1.0, style
