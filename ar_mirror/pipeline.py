"""One frame through the mirror: track the face, smooth its landmarks, draw the look, split before/after."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ar_mirror import glasses, makeup
from ar_mirror.control import Layer, Look
from ar_mirror.landmarks import Landmarks, Tracker
from ar_mirror.smoothing import OneEuro

DRAW: dict[str, Callable[[np.ndarray, Landmarks, Layer], None]] = {**makeup.DRAW, "glasses": glasses.draw}
# Frames a lost face keeps its overlay for: one missed detection must not
# make the lipstick blink, a face that really left is gone within 0.1 s.
HOLD_FRAMES = 2
# Width of the line between "before" and "after", in pixels.
SPLIT_LINE = 2


def draw_look(frame: np.ndarray, face: Landmarks | None, look: Look) -> None:
    """Draw every layer of ``look`` on ``frame`` in place, leaving the "before" part as it was."""
    if face is None or not look.layers:
        return
    w = frame.shape[1]
    split = round(w * look.compare)
    keep = slice(0, split) if look.compare_side == "left" else slice(w - split, w)
    before = frame[:, keep].copy() if split else None
    for layer in look.layers:
        DRAW[layer.kind](frame, face, layer)
    if before is not None:
        frame[:, keep] = before
        if 0 < split < w:
            edge = split if look.compare_side == "left" else w - split
            frame[:, max(edge - SPLIT_LINE // 2, 0):edge + SPLIT_LINE // 2] = 255


class Pipeline:
    """Tracking, smoothing and drawing for a stream of frames (one thread calls ``process``)."""

    def __init__(self, tracker: Tracker, smoother: OneEuro | None = None):
        self.tracker = tracker
        self.smoother = smoother if smoother is not None else OneEuro()
        self.face: Landmarks | None = None  # the smoothed landmarks of the last frame, if any
        self._missed = 0

    def track(self, frame: np.ndarray, t: float) -> Landmarks | None:
        """The smoothed face in ``frame`` taken at ``t`` (s), holding the last one for a frame or two."""
        found = self.tracker.track(frame)
        if found is None:
            self._missed += 1
            if self._missed > HOLD_FRAMES:
                self.face = None
                self.smoother.reset()
            return self.face
        self._missed = 0
        self.face = found.with_points(self.smoother(found.points, t, found.face_width()))
        return self.face

    def process(self, frame: np.ndarray, t: float, look: Look) -> Landmarks | None:
        """Track and draw ``look`` on ``frame`` in place; the face found, if any."""
        face = self.track(frame, t)
        draw_look(frame, face, look)
        return face
