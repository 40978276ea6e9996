"""The synthetic camera: the real astronaut photo, and frames whose geometry the tests know exactly."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage")

from ar_mirror import synthetic  # noqa: E402


def test_the_photo_is_scikit_images_astronaut(photo):
    assert np.array_equal(synthetic.face_photo(), photo)


def test_a_point_of_the_photo_lands_where_the_pose_says(photo):
    marked = photo.copy()
    x, y = synthetic.PHOTO_EYES[0]
    cv2.circle(marked, (round(x), round(y)), 2, (0, 255, 0), -1)
    pose = synthetic.Pose(400, 260, 150, angle=20)
    frame = synthetic.render(marked, pose, (640, 480))
    plain = synthetic.render(photo, pose, (640, 480))
    ys, xs = np.nonzero(np.abs(frame.astype(int) - plain).sum(axis=2) > 60)
    expected = pose.apply([[x, y]])[0]
    assert np.hypot(xs.mean() - expected[0], ys.mean() - expected[1]) < 1.5


def test_the_moving_head_moves_scales_and_rolls():
    poses = [synthetic.moving(i, (640, 480)) for i in range(150)]
    xs, faces, angles = (np.array([getattr(p, k) for p in poses]) for k in ("x", "face", "angle"))
    assert np.ptp(xs) > 100 and np.ptp(faces) > 40 and np.ptp(angles) > 20
    # Smooth: a real head moves a few pixels per frame at 30 fps.
    assert np.abs(np.diff(xs)).max() < 5


def test_the_camera_hands_out_frames_of_its_size():
    camera = synthetic.SyntheticCamera((320, 240), fps=1000)
    frames = [camera.read() for _ in range(3)]
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[2])
