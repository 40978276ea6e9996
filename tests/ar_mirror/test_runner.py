"""The three-stage frame loop: every frame through capture, track and draw, encode."""

from __future__ import annotations

import threading

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from ar_mirror import synthetic  # noqa: E402
from ar_mirror.capture import CameraFailed  # noqa: E402
from ar_mirror.control import Layer, Look  # noqa: E402
from ar_mirror.pipeline import Pipeline  # noqa: E402
from ar_mirror.runner import MirrorRunner, Slot  # noqa: E402

SIZE = (640, 480)


class Replay:
    """A FrameSource over frames made beforehand; fails after them if ``fail`` is set."""

    def __init__(self, frames: list[np.ndarray], fail: bool = False):
        self.frames, self.fail, self.i = frames, fail, 0
        self.size, self.name = SIZE, "replay"

    def read(self) -> np.ndarray:
        if self.i >= len(self.frames):
            if self.fail:
                raise CameraFailed("replay: no more frames")
            self.i = 0
        self.i += 1
        return self.frames[self.i - 1].copy()

    def close(self) -> None:
        pass


def test_a_slot_hands_over_in_order_or_keeps_the_newest():
    keep_all: Slot[int] = Slot(drop=False)
    got: list[int | None] = []
    taker = threading.Thread(target=lambda: got.extend(iter(keep_all.get, None)))
    taker.start()
    for i in range(50):
        keep_all.put(i)
    keep_all.close()
    taker.join(10)
    assert got == list(range(50))
    newest: Slot[int] = Slot(drop=True)
    for i in range(5):
        newest.put(i)
    newest.close()
    assert (newest.get(), newest.get(), newest.dropped) == (4, None, 4)


def test_every_frame_is_tracked_drawn_and_encoded(tracker, photo):
    frames = [synthetic.render(photo, synthetic.moving(i, SIZE), SIZE) for i in range(20)]
    parts: list[bytes] = []
    runner = MirrorRunner(Replay(frames), Pipeline(tracker), parts.append, drop=False, limit=40)
    runner.look = Look(layers=(Layer(sku="LIP", kind="lipstick", shade="#1030e0", opacity=0.9),))
    runner.start()
    assert runner.done.wait(30)
    runner.stop()
    assert runner.error is None
    assert (runner.captured, runner.processed, runner.encoded, len(parts)) == (40, 40, 40, 40)
    assert len(runner.latencies) == 40 and runner.face
    jpeg = parts[-1].split(b"\r\n\r\n", 1)[1][:-2]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)
    stats = runner.stats()
    assert stats.encoded == 40 and stats.face and stats.fps > 0


def test_nobody_watching_nothing_encoded(tracker, photo):
    frames = [synthetic.render(photo, synthetic.still(SIZE), SIZE)]
    runner = MirrorRunner(Replay(frames), Pipeline(tracker), lambda data: None, drop=False, limit=5,
                          watched=lambda: False)
    runner.start()
    assert runner.done.wait(30)
    runner.stop()
    assert (runner.processed, runner.encoded) == (5, 0)


def test_a_failing_camera_ends_the_loop_with_its_error(tracker, photo):
    frames = [synthetic.render(photo, synthetic.still(SIZE), SIZE)] * 3
    runner = MirrorRunner(Replay(frames, fail=True), Pipeline(tracker), lambda data: None)
    runner.start()
    assert runner.done.wait(30)
    runner.stop()
    assert isinstance(runner.error, CameraFailed)
