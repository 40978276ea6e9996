"""Frame sources: a video file loops, a missing camera or file says so before anything starts."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage")

from ar_mirror import synthetic  # noqa: E402
from ar_mirror.capture import CameraMissing, open_source  # noqa: E402


def test_a_video_file_plays_and_starts_over(tmp_path, photo):
    path = tmp_path / "face.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 120, (320, 240))
    for i in range(5):
        writer.write(synthetic.render(photo, synthetic.moving(i * 10, (320, 240)), (320, 240)))
    writer.release()
    source = open_source(str(path), (1280, 720), 30)
    try:
        assert source.size == (320, 240)  # a file's own size, whatever was asked
        frames = [source.read() for _ in range(12)]
    finally:
        source.close()
    assert all(f.shape == (240, 320, 3) for f in frames)
    assert np.abs(frames[0].astype(int) - frames[5]).mean() < 1  # frame 6 is frame 1 again


@pytest.mark.parametrize("spec", ["/dev/v4l/by-id/usb-nothing-video-index0", "/no/such/file.mp4"])
def test_what_is_not_there_is_missing(spec):
    with pytest.raises(CameraMissing, match="no such"):
        open_source(spec, (640, 480), 30)


def test_the_synthetic_sources(photo):
    still = open_source("synthetic-still", (320, 240), 1000)
    assert still.name == "synthetic-still" and np.array_equal(still.read(), still.read())
    moving = open_source("synthetic", (320, 240), 1000)
    assert not np.array_equal(moving.read(), moving.read())
