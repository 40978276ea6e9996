"""Frames synthesized from a real face photo, moved, scaled and rotated: the camera of tests and ``make run``.

The photo is scikit-image's ``astronaut.png`` (Eileen Collins, NASA, public
domain), read straight from the installed package's data folder: nothing is
downloaded, and scikit-image itself is not imported. Because every frame is
the photo under a known affine transform, a test knows exactly where the
eyes and lips are in each frame.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Where things are in astronaut.png (512x512), in pixel coordinates (pixel i
# centred on i, as OpenCV draws and warps), measured by hand and checked
# against the face mesh on the still photo: the person's right eye (on the
# left of the picture) and left eye, the middle of the face, its width.
PHOTO_EYES = np.float32([[203.2, 101.1], [246.4, 103.4]])
PHOTO_FACE_CENTRE = (225.0, 125.0)
PHOTO_FACE_WIDTH = 87.0
BACKGROUND = (96, 104, 112)  # BGR: a grey wall


def face_photo() -> np.ndarray:
    """The astronaut photo as BGR uint8; FileNotFoundError when scikit-image is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the synthetic camera needs scikit-image's astronaut.png: pip install scikit-image")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(f"cannot read {path}")
    return photo


@dataclass(frozen=True)
class Pose:
    """Where the photo's face goes in a frame: centre (px), face width (px), roll (degrees, counter-clockwise)."""

    x: float
    y: float
    face: float
    angle: float = 0.0

    def matrix(self) -> np.ndarray:
        """2x3 affine from photo pixels to frame pixels."""
        m = cv2.getRotationMatrix2D(PHOTO_FACE_CENTRE, self.angle, self.face / PHOTO_FACE_WIDTH)
        m[:, 2] += (self.x - PHOTO_FACE_CENTRE[0], self.y - PHOTO_FACE_CENTRE[1])
        return m

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Photo points (N, 2) moved into the frame."""
        m = self.matrix()
        return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def still(size: tuple[int, int]) -> Pose:
    """The face in the middle of a ``size`` (width, height) frame, a third of its height wide."""
    w, h = size
    return Pose(w / 2, h / 2, h / 3)


def stepped_back(i: int, size: tuple[int, int], fps: float = 30.0) -> Pose:
    """Frame ``i`` of the customer stepped back: the whole photo (head, shoulders, torso) 85 % of the frame's
    height, its bottom at the frame's, swaying a little from side to side (about 6 s per cycle)."""
    w, h = size
    scale = 0.85 * h / 512
    t = i / fps
    return Pose(
        x=w / 2 + (PHOTO_FACE_CENTRE[0] - 256) * scale + 0.03 * w * math.sin(2 * math.pi * t / 6.0),
        y=h - (512 - PHOTO_FACE_CENTRE[1]) * scale - 0.04 * h,
        face=PHOTO_FACE_WIDTH * scale,
        angle=3 * math.sin(2 * math.pi * t / 7.3),
    )


def moving(i: int, size: tuple[int, int], fps: float = 30.0) -> Pose:
    """Frame ``i`` of a head that sways, nods, leans in and out and tilts, about 5 s per cycle."""
    w, h = size
    t = i / fps
    return Pose(
        x=w / 2 + 0.10 * w * math.sin(2 * math.pi * t / 5.0),
        y=h / 2 + 0.06 * h * math.sin(2 * math.pi * t / 3.7),
        face=h / 3 * (1 + 0.15 * math.sin(2 * math.pi * t / 6.3)),
        angle=12 * math.sin(2 * math.pi * t / 4.4),
    )


def render(photo: np.ndarray, pose: Pose, size: tuple[int, int]) -> np.ndarray:
    """One frame: the photo under ``pose`` on a plain background."""
    return cv2.warpAffine(photo, pose.matrix(), size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BACKGROUND)


class SyntheticCamera:
    """A ``FrameSource`` that renders the moving photo, paced at ``fps`` like a camera."""

    def __init__(self, size: tuple[int, int], fps: float = 30.0, still_face: bool = False, body: bool = False):
        self.size = size
        self.fps = fps
        self.still_face = still_face
        self.body = body
        self.name = "synthetic-body" if body else "synthetic-still" if still_face else "synthetic"
        self._photo = face_photo()
        self._i = 0
        self._next = time.monotonic()

    def read(self) -> np.ndarray:
        """The next frame, no earlier than its time."""
        # Pacing is what a camera does: a frame exists only every 1/fps s.
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic() - 1 / self.fps)
        if self.body:
            pose = stepped_back(self._i, self.size, self.fps)
        else:
            pose = still(self.size) if self.still_face else moving(self._i, self.size, self.fps)
        self._i += 1
        return render(self._photo, pose, self.size)

    def close(self) -> None:
        """Nothing to release."""
