"""The mirror's frame loop on three threads: capture, then track, then draw and JPEG encode.

Each stage hands its frame to the next through a one-frame ``Slot``. Live,
a slot keeps only the newest frame (a late stage skips frames rather than
showing old ones); in the benchmark it blocks instead, so every frame is
counted. OpenCV and MediaPipe release the GIL while they work, so on two
cores one frame is drawn and encoded while the next is tracked; drawing
goes with encoding because that splits the work about evenly (at 720p about
3.5 ms each way). Nobody watching, nothing is drawn or encoded: the face is
still tracked, for the try-on session.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import cv2
import numpy as np

from ar_mirror.body import Body
from ar_mirror.capture import FrameSource
from ar_mirror.control import Look, Stats, View
from ar_mirror.landmarks import Landmarks
from ar_mirror.pipeline import Pipeline, draw_look
from ar_mirror.stream import part

T = TypeVar("T")
# JPEG quality of the stream: 80 looks like the camera on a screen and takes
# about 2 ms for a 720p frame with libjpeg-turbo.
JPEG_QUALITY = 80


@dataclass
class Frame:
    """A captured frame on its way through the stages."""

    seq: int
    image: np.ndarray
    t: float  # time.monotonic() when it was captured
    face: Landmarks | None = None
    body: Body | None = None  # in body view only: what garments are drawn on
    look: Look = Look()


class Slot(Generic[T]):
    """Hands one item at a time from one thread to another; ``drop`` keeps only the newest."""

    def __init__(self, drop: bool):
        self.drop = drop
        self.dropped = 0
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> None:
        """Offer an item; without ``drop``, wait until the last one was taken."""
        with self._cond:
            if not self.drop:
                self._cond.wait_for(lambda: self._item is None or self._closed)
            elif self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()

    def get(self) -> T | None:
        """The next item; None once the slot is closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more items: ``get`` returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A frame as one part of the MJPEG stream."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return part(jpeg.tobytes())


class MirrorRunner:
    """Runs ``source`` through ``pipeline`` and ``encode`` to ``publish`` until stopped, failed or ``limit`` frames."""

    def __init__(self, source: FrameSource, pipeline: Pipeline, publish: Callable[[bytes], None], *,
                 encode: Callable[[np.ndarray], bytes] = encode_jpeg, watched: Callable[[], bool] = lambda: True,
                 drop: bool = True, limit: int | None = None):
        self.source = source
        self.pipeline = pipeline
        self.publish = publish
        self.encode = encode
        self.watched = watched
        self.limit = limit
        self.look = Look()  # replaced whole by the control thread; read once per frame
        self.error: BaseException | None = None
        self.done = threading.Event()  # set on a failure, or after the last frame of ``limit``
        self.captured = self.processed = self.encoded = 0
        self.face = False  # someone in front of the mirror (a face, or a body)
        self.view: View = "none"
        self.latencies: deque[float] = deque(maxlen=10_000)  # capture to encoded, seconds
        self._shown: deque[float] = deque(maxlen=31)
        self._stopping = False
        self._to_track: Slot[Frame] = Slot(drop)
        self._to_show: Slot[Frame] = Slot(drop)
        self._threads = [threading.Thread(target=self._guard, args=(fn,), name=name, daemon=True)
                         for name, fn in (("capture", self._capture), ("track", self._track),
                                          ("show", self._show))]

    def start(self) -> None:
        """Start the three threads."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every stage; a capture stuck in a camera read is left behind (its thread is a daemon)."""
        self._stopping = True
        self._to_track.close()
        self._to_show.close()
        for thread in self._threads:
            thread.join(timeout)

    def _guard(self, stage: Callable[[], None]) -> None:
        try:
            stage()
        except Exception as err:  # noqa: BLE001 - any failure of a stage ends the mirror process, reported
            if self.error is None:
                self.error = err
            self.done.set()
            self._to_track.close()
            self._to_show.close()

    def _capture(self) -> None:
        seq = 0
        while not self._stopping and (self.limit is None or seq < self.limit):
            image = self.source.read()
            seq += 1
            self.captured = seq
            self._to_track.put(Frame(seq, image, time.monotonic()))
        self._to_track.close()

    def _track(self) -> None:
        while (frame := self._to_track.get()) is not None:
            frame.look = self.look
            frame.face = self.pipeline.track(frame.image, frame.t, frame.look)
            frame.body = self.pipeline.drawn_body()
            self.face = self.pipeline.present()
            self.view = self.pipeline.view
            self.processed += 1
            self._to_show.put(frame)
        self._to_show.close()

    def _show(self) -> None:
        while (frame := self._to_show.get()) is not None:
            if self.watched():
                draw_look(frame.image, frame.face, frame.look, frame.body)
                self.publish(self.encode(frame.image))
                self.encoded += 1
            now = time.monotonic()
            self.latencies.append(now - frame.t)
            self._shown.append(now)
        self.done.set()

    def stats(self, clients: int = 0) -> Stats:
        """Counters, the frame rate over the last second or so, and the newest latency."""
        shown = list(self._shown)
        fps = (len(shown) - 1) / (shown[-1] - shown[0]) if len(shown) > 1 and shown[-1] > shown[0] else 0.0
        latency = self.latencies[-1] * 1000 if self.latencies else 0.0
        shoulder = self.pipeline.shoulder_cm if self.view == "body" else None
        return Stats(captured=self.captured, processed=self.processed, encoded=self.encoded, face=self.face,
                     fps=round(fps, 1), latency_ms=round(latency, 1), clients=clients, view=self.view,
                     shoulder_cm=shoulder)
