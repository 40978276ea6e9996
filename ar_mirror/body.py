"""The body as the mirror sees it, and the ``BodyTracker`` interface every pose model sits behind.

A ``Body`` is the pose's joints in frame pixels (with how visible each is),
named through a ``Skeleton`` the way face overlays use a ``Topology``, plus
the person mask when one was asked for. A newer pose or segmentation model
plugs in as another ``BodyTracker`` with its own skeleton; garments
(ar_mirror/apparel.py) and the view choice stay as they are.

The view: "body" when both shoulders and both hips are seen, the hips inside
the picture (the customer stands back far enough for a top to be drawn),
"face" when a face is followed but not a body, "none" when nobody is there.
The shoulder width for the size suggestion is measured between the pose's
shoulder joints, with the pose's own eye centres as the ruler (the mean
adult inter-pupil distance, 63 mm): no calibration target, no known
distance to the camera, and the eyes are in every body view.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ar_mirror.control import View


@dataclass(frozen=True)
class Skeleton:
    """Where one pose model keeps each joint: indices into its points."""

    name: str
    points: int
    shoulder_right: int
    shoulder_left: int
    hip_right: int
    hip_left: int
    elbow_right: int
    elbow_left: int
    wrist_right: int
    wrist_left: int
    eye_right: int
    eye_left: int


# MediaPipe Pose's 33 landmarks (mediapipe/python/solutions/pose.py PoseLandmark).
POSE_33 = Skeleton(name="mediapipe-pose-33", points=33, shoulder_right=12, shoulder_left=11, hip_right=24,
                   hip_left=23, elbow_right=14, elbow_left=13, wrist_right=16, wrist_left=15, eye_right=5,
                   eye_left=2)

# A joint counts as seen from this visibility up (MediaPipe's own drawing uses 0.5).
VISIBLE = 0.5
# The mean adult inter-pupil distance: the ruler of the shoulder measurement.
PUPILS_MM = 63.0
# Seam-to-seam shoulder width of a fitting garment over the distance between
# the pose's shoulder joints, which sit at the top of the arm bone, just
# inside where a shoulder seam goes. An anatomical assumption, not a
# calibration: a customer turned away from the camera measures narrower.
GARMENT_PER_JOINTS = 1.1


@dataclass(frozen=True)
class Body:
    """One person's joints in frame pixels, float32 (points, 2), their visibility (points,), and the person mask.

    ``mask`` is float32 0..1 at any size (the segmentation model's own); the
    caller resizes what it needs. None when no mask was asked for.
    """

    points: np.ndarray
    visibility: np.ndarray
    skeleton: Skeleton
    mask: np.ndarray | None = None

    def joint(self, name: str) -> np.ndarray:
        """One joint's (x, y)."""
        return self.points[getattr(self.skeleton, name)]

    def seen(self, *names: str, at: float = VISIBLE) -> bool:
        """Whether every named joint is visible enough (``at``) to draw on."""
        return all(self.visibility[getattr(self.skeleton, n)] >= at for n in names)

    def shoulder_width(self) -> float:
        """Pixels between the shoulder joints."""
        return float(np.linalg.norm(self.joint("shoulder_left") - self.joint("shoulder_right")))

    def in_view(self, size: tuple[int, int]) -> bool:
        """Shoulders and hips seen, the hips inside the ``size`` (width, height) picture: a top can be drawn."""
        w, h = size
        hips = np.stack([self.joint("hip_right"), self.joint("hip_left")])
        inside = bool(((hips[:, 0] >= 0) & (hips[:, 0] < w) & (hips[:, 1] >= 0) & (hips[:, 1] < h)).all())
        seen = self.seen("shoulder_right", "shoulder_left", "hip_right", "hip_left")
        return seen and inside and self.shoulder_width() > 8

    def shoulder_cm(self) -> float | None:
        """The garment shoulder width this body needs, in cm, with the eyes as the ruler; None if not measurable."""
        if not self.seen("eye_right", "eye_left", "shoulder_right", "shoulder_left"):
            return None
        eyes = float(np.linalg.norm(self.joint("eye_left") - self.joint("eye_right")))
        if eyes < 3:
            return None
        return self.shoulder_width() / eyes * PUPILS_MM / 10 * GARMENT_PER_JOINTS


def choose_view(body: Body | None, face: bool, size: tuple[int, int]) -> View:
    """What the mirror draws on: the body when it is in the picture, else the face, else nothing."""
    if body is not None and body.in_view(size):
        return "body"
    return "face" if face or body is not None else "none"


class ShoulderEstimate:
    """The median of the last measurements: a size suggestion that does not flicker as the customer moves."""

    def __init__(self, n: int = 45):
        self._values: deque[float] = deque(maxlen=n)

    def add(self, value: float | None) -> None:
        if value is not None:
            self._values.append(value)

    def reset(self) -> None:
        self._values.clear()

    def cm(self) -> int | None:
        """Whole centimetres, once a few frames were measured."""
        if len(self._values) < 5:
            return None
        return round(float(np.median(self._values)))


def predicted(last: Body, before: Body | None, ahead: float, mask: np.ndarray | None) -> Body:
    """``last`` moved ``ahead`` pose intervals further at the speed it had since ``before`` (or held without it),
    with ``mask``: the body of a frame the pose skipped."""
    if before is None:
        return Body(last.points, last.visibility, last.skeleton, mask)
    return Body(last.points + (last.points - before.points) * ahead, last.visibility, last.skeleton, mask)


class BodyTracker(Protocol):
    """Finds one person in a stream of frames (joints, and on request the person mask)."""

    skeleton: Skeleton

    def track(self, frame: np.ndarray, mask: bool = False) -> Body | None:
        """The person in a BGR frame, with the mask if ``mask``; None when nobody is found."""
        ...

    def segment(self, frame: np.ndarray) -> np.ndarray:
        """The person mask of a BGR frame alone (float32 0..1, the model's size), without the pose."""
        ...

    def reset(self) -> None:
        """Forget the person followed so far."""
        ...

    def close(self) -> None:
        """Release the models."""
        ...
