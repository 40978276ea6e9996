"""Face landmarks and the ``Tracker`` interface every face model sits behind.

Overlays never use raw landmark numbers: they ask a ``Topology`` for named
regions (the outer lip line, an eye's contour), so a tracker with another
mesh, e.g. a newer model file, brings its own topology and the overlays stay
as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Topology:
    """Named regions of one landmark model, as index lists into its points (each an ordered loop)."""

    name: str
    points: int
    lips_outer: tuple[int, ...]
    lips_inner: tuple[int, ...]
    face_oval: tuple[int, ...]
    # "right" and "left" are the person's own: their right eye shows on the
    # left of an unmirrored camera picture.
    right_eye: tuple[int, ...]
    left_eye: tuple[int, ...]
    right_upper_lid: tuple[int, ...]  # from the outer corner to the inner one
    left_upper_lid: tuple[int, ...]
    right_brow_lower: tuple[int, ...]  # from the outer end to the inner one
    left_brow_lower: tuple[int, ...]
    right_cheek: int
    left_cheek: int


# MediaPipe's 468-point face mesh; the loops follow FACEMESH_LIPS,
# FACEMESH_FACE_OVAL, FACEMESH_*_EYE and FACEMESH_*_EYEBROW of
# mediapipe/python/solutions/face_mesh_connections.py (a test checks that
# each step of a loop is one of its edges). Cheeks: 205 and 425 sit on the
# apples of the cheeks, below the outer third of each eye.
FACE_MESH_468 = Topology(
    name="mediapipe-face-mesh-468",
    points=468,
    lips_outer=(0, 37, 39, 40, 185, 61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267),
    lips_inner=(13, 82, 81, 80, 191, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312),
    face_oval=(10, 109, 67, 103, 54, 21, 162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377,
               400, 378, 379, 365, 397, 288, 361, 323, 454, 356, 389, 251, 284, 332, 297, 338),
    right_eye=(7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163),
    left_eye=(249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 263),
    right_upper_lid=(33, 246, 161, 160, 159, 158, 157, 173, 133),
    left_upper_lid=(263, 466, 388, 387, 386, 385, 384, 398, 362),
    right_brow_lower=(46, 53, 52, 65, 55),
    left_brow_lower=(276, 283, 282, 295, 285),
    right_cheek=205,
    left_cheek=425,
)


@dataclass(frozen=True)
class Landmarks:
    """One face's landmarks in the frame's pixel coordinates, float32 of shape (points, 2)."""

    points: np.ndarray
    topology: Topology

    def region(self, indices: tuple[int, ...]) -> np.ndarray:
        """The points of one region, in order."""
        return self.points[list(indices)]

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The person's right and left eye centres (the mean of each eye's contour)."""
        t = self.topology
        return self.region(t.right_eye).mean(axis=0), self.region(t.left_eye).mean(axis=0)

    def face_width(self) -> float:
        """Width of the face oval along its longest horizontal extent, in pixels."""
        oval = self.region(self.topology.face_oval)
        return float(oval[:, 0].max() - oval[:, 0].min())

    def with_points(self, points: np.ndarray) -> "Landmarks":
        """The same face with other coordinates (smoothed, or moved to another frame)."""
        return Landmarks(points.astype(np.float32, copy=False), self.topology)


class Tracker(Protocol):
    """Finds one face in a stream of frames; keeps state from frame to frame."""

    topology: Topology

    def track(self, frame: np.ndarray) -> Landmarks | None:
        """Landmarks of the face in a BGR frame, or None when no face is found."""
        ...

    def reset(self) -> None:
        """Forget the face followed so far (the next frame is searched whole)."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...
