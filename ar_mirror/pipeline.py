"""One frame through the mirror: track the face and the body, choose the view, draw the look, split before/after.

The face is followed by a ``Tracker`` (face mesh), the body by a
``BodyTracker`` (pose, and the person mask while a garment is worn). Which
runs when, to keep a 720p frame within a camera's 33 ms on two cores:

- in face view (or nobody there) the face mesh runs every frame and the
  pose every ``BODY_EVERY`` frames, enough to notice within a tenth of a
  second that the customer stepped back;
- in body view the pose runs on one frame in ``BODY_STRIDE``; on the
  frames between, the joints are carried on at the speed they had between
  the last two pose results (a garment on a customer turning does not lag
  a frame behind). The person mask, asked for only while the look has a
  garment, is made every frame, so the garment's outline always follows the
  body of that very frame. The face mesh runs only while the look has a
  face layer (makeup or glasses on a customer two metres away).

Garments are drawn first, face layers on top (the order of the look,
which edge_agent/usecases/tryon.py sets); a garment only in body view.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ar_mirror import apparel, glasses, makeup
from ar_mirror.body import Body, BodyTracker, ShoulderEstimate, choose_view, predicted
from ar_mirror.control import BODY_KINDS, Layer, Look, View
from ar_mirror.landmarks import Landmarks, Tracker
from ar_mirror.smoothing import OneEuro

DRAW: dict[str, Callable[[np.ndarray, Landmarks, Layer], None]] = {**makeup.DRAW, "glasses": glasses.draw}
DRAW_BODY: dict[str, Callable[[np.ndarray, Body, Layer], None]] = apparel.DRAW
# Frames a lost face keeps its overlay for: one missed detection must not
# make the lipstick blink, a face that really left is gone within 0.1 s.
HOLD_FRAMES = 2
# Outside body view, the pose runs on one frame in this many; in body view, on one in ``BODY_STRIDE``
# (the pose is the largest cost of a frame: about 11.5 ms of CPU at 720p, half of it saved).
BODY_EVERY = 3
BODY_STRIDE = 2
# Width of the line between "before" and "after", in pixels.
SPLIT_LINE = 2


def draw_look(frame: np.ndarray, face: Landmarks | None, look: Look, body: Body | None = None) -> None:
    """Draw every layer of ``look`` on ``frame`` in place (garments on ``body``, the rest on ``face``),
    leaving the "before" part as it was."""
    layers = [layer for layer in look.layers if (body if layer.kind in BODY_KINDS else face) is not None]
    if not layers:
        return
    w = frame.shape[1]
    split = round(w * look.compare)
    keep = slice(0, split) if look.compare_side == "left" else slice(w - split, w)
    before = frame[:, keep].copy() if split else None
    for layer in layers:
        if layer.kind in BODY_KINDS:
            assert body is not None
            DRAW_BODY[layer.kind](frame, body, layer)
        else:
            assert face is not None
            DRAW[layer.kind](frame, face, layer)
    if before is not None:
        frame[:, keep] = before
        if 0 < split < w:
            edge = split if look.compare_side == "left" else w - split
            frame[:, max(edge - SPLIT_LINE // 2, 0):edge + SPLIT_LINE // 2] = 255


class Pipeline:
    """Tracking, smoothing, the view and drawing for a stream of frames (one thread calls ``process``)."""

    def __init__(self, tracker: Tracker, smoother: OneEuro | None = None, body_tracker: BodyTracker | None = None):
        self.tracker = tracker
        self.smoother = smoother if smoother is not None else OneEuro()
        self.body_tracker = body_tracker
        self.face: Landmarks | None = None  # the smoothed landmarks of the last frame, if any
        self.body: Body | None = None  # the body of the last frame, if one was followed
        self.view: View = "none"
        self.shoulders = ShoulderEstimate()
        self.shoulder_cm: int | None = None  # the estimate in body view, read by the stats' thread
        self._missed = 0
        self._body_missed = 0
        self._frames = 0
        self._posed: tuple[Body, Body | None] | None = None  # the last two pose results (newest first)
        self._since_pose = 0

    def track(self, frame: np.ndarray, t: float, look: Look | None = None) -> Landmarks | None:
        """Follow face and body in ``frame`` taken at ``t`` (s) and choose the view; the face, if followed.

        ``look`` says what will be drawn: a garment asks for the person mask, a face layer for the face
        mesh in body view.
        """
        look = look if look is not None else Look()
        garments = any(layer.kind in BODY_KINDS for layer in look.layers)
        face_layers = any(layer.kind not in BODY_KINDS for layer in look.layers)
        self._frames += 1
        if self.body_tracker is not None:
            if self.view == "body" and self._posed is not None and self._since_pose + 1 < BODY_STRIDE:
                self._carry_body(frame, garments)
            elif self.view == "body" or self._frames % BODY_EVERY == 1:
                self._track_body(frame, garments)
        if self.view != "body" or face_layers:
            self._track_face(frame, t)
        else:
            self._forget_face()
        h, w = frame.shape[:2]
        self.view = choose_view(self.body, self.face is not None, (w, h))
        if self.view == "body" and self.body is not None:
            self.shoulders.add(self.body.shoulder_cm())
        elif self.body is None:
            self.shoulders.reset()
        self.shoulder_cm = self.shoulders.cm() if self.view == "body" else None
        return self.face

    def drawn_body(self) -> Body | None:
        """The body garments are drawn on: only in body view."""
        return self.body if self.view == "body" else None

    def present(self) -> bool:
        """Someone is in front of the mirror: a face, or a body."""
        return self.face is not None or self.body is not None

    def _track_body(self, frame: np.ndarray, mask: bool) -> None:
        assert self.body_tracker is not None
        found = self.body_tracker.track(frame, mask=mask)
        self._since_pose = 0
        if found is None:
            self._posed = None
            self._body_missed += 1
            if self._body_missed > HOLD_FRAMES:
                self.body = None
            return
        self._body_missed = 0
        self._posed = (found, self._posed[0] if self._posed is not None else None)
        self.body = found

    def _carry_body(self, frame: np.ndarray, mask: bool) -> None:
        """A frame the pose skips: the joints carried on, the person mask of this frame."""
        assert self.body_tracker is not None and self._posed is not None
        self._since_pose += 1
        last, before = self._posed
        person = self.body_tracker.segment(frame) if mask else None
        self.body = predicted(last, before, self._since_pose / BODY_STRIDE, person)

    def _track_face(self, frame: np.ndarray, t: float) -> None:
        found = self.tracker.track(frame)
        if found is None:
            self._missed += 1
            if self._missed > HOLD_FRAMES:
                self._forget_face()
            return
        self._missed = 0
        self.face = found.with_points(self.smoother(found.points, t, found.face_width()))

    def _forget_face(self) -> None:
        if self.face is not None:
            self.face = None
            self.smoother.reset()

    def process(self, frame: np.ndarray, t: float, look: Look) -> Landmarks | None:
        """Track and draw ``look`` on ``frame`` in place; the face found, if any."""
        face = self.track(frame, t, look)
        draw_look(frame, face, look, self.drawn_body())
        return face
