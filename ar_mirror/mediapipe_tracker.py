"""The ``Tracker`` on MediaPipe's face mesh (mediapipe 0.10.21 bundles its models: nothing is downloaded).

How a face is followed, the way phone try-on apps do it:

1. While no face is followed, MediaPipe's long-range ("full range")
   face detector looks at the whole frame, downscaled to ``DETECT_WIDTH``
   (the model sees 192x192 anyway). It finds faces down to about 5 % of
   the frame's width (70 px at 1280x720, two metres from a 70° webcam);
   the face mesh's own short-range detector needs about 12 %.
2. A square window around the face is cropped from the full frame and
   scaled to ``CROP`` x ``CROP``; the face mesh tracks in that window. A
   distant face is zoomed in, a near one scaled down: the model sees the
   face at about its own input size either way, and never a full 720p frame.
3. Each frame the window is re-centred on the landmarks just found, so it
   moves a few pixels per frame with the head and the mesh's own tracking
   (which expects that) never loses the face because of the crop. The
   detector runs again only when the mesh loses the face.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import cv2
import numpy as np

from ar_mirror.landmarks import FACE_MESH_468, Landmarks, Topology

# Side of the square the face mesh sees, in pixels.
CROP = 256
# Width the long-range detector's input is scaled to (its model is 192x192).
DETECT_WIDTH = 640
# Window side over the detector's box (brows to chin) and over the landmarks' bounding box:
# the mesh's own region of interest is 1.5x the landmarks' box, plus room for the head to move.
WINDOW_PER_BOX = 2.4
WINDOW_PER_LANDMARKS = 2.0


# Modules ``import mediapipe`` pulls in for features the mirror never uses,
# which touch the disk when imported: matplotlib.pyplot (drawing_utils)
# writes a font cache under ~/.cache; sounddevice (the audio tasks) looks
# for PortAudio by running ldconfig and gcc, which write temporary files.
_STUBBED = ("matplotlib", "matplotlib.pyplot", "sounddevice")


def solutions(*names: str) -> tuple[Any, ...]:
    """MediaPipe's ``solutions`` modules ``names``, imported with ``_STUBBED`` stood in for.

    The stand-ins are empty modules, present only during the import: nothing
    the mirror's solutions run uses them, and the mirror process writes no file.
    """
    import importlib

    stubs = [name for name in _STUBBED if name not in sys.modules]
    for name in stubs:
        sys.modules[name] = types.ModuleType(name)
    if "matplotlib.pyplot" in stubs and "matplotlib" in stubs:
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]  # type: ignore[attr-defined]
    try:
        return tuple(importlib.import_module(f"mediapipe.python.solutions.{name}") for name in names)
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def _face_solutions() -> tuple[Any, Any]:
    """MediaPipe's face_mesh and face_detection modules."""
    face_mesh, face_detection = solutions("face_mesh", "face_detection")
    return face_mesh, face_detection


class MediapipeTracker:
    """One face at a time: long-range detection when lost, face mesh in a window that follows the face."""

    topology: Topology = FACE_MESH_468

    def __init__(self, min_confidence: float = 0.5, crop: int = CROP):
        face_mesh, face_detection = _face_solutions()
        self.crop = crop
        self._mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False,
                                        min_detection_confidence=min_confidence,
                                        min_tracking_confidence=min_confidence)
        # model_selection=1: the full-range model, for faces up to about five metres away.
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        self._window: tuple[float, float, float] | None = None  # centre x, centre y, side, in frame pixels
        self.detections = 0  # how often the long-range detector ran (tests and the benchmark read it)

    def track(self, frame: np.ndarray) -> Landmarks | None:
        """The face's 468 landmarks in ``frame``'s pixels, or None."""
        if self._window is None:
            self._window = self._detect(frame)
            if self._window is None:
                return None
        crop, x0, y0, scale = self._crop(frame, *self._window)
        result = self._mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            self._window = None
            return None
        # MediaPipe's coordinates run from the crop's left edge to its right
        # one; a frame's pixel i is centred on i: hence the half pixel.
        points = _normalized_xy(result.multi_face_landmarks[0]) * (self.crop / scale)
        points += (x0 - 0.5, y0 - 0.5)
        self._window = _window_around(points)
        return Landmarks(points, self.topology)

    def _crop(self, frame: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, int, int, float]:
        """The window scaled to ``crop`` x ``crop``, its top-left pixel, and the scale."""
        n = max(round(side), 2)
        x0, y0 = round(cx - n / 2), round(cy - n / 2)
        scale = self.crop / n
        h, w = frame.shape[:2]
        if x0 >= 0 and y0 >= 0 and x0 + n <= w and y0 + n <= h:
            # Inside the frame: a plain resize of the slice, twice as fast as a warp.
            crop = cv2.resize(frame[y0:y0 + n, x0:x0 + n], (self.crop, self.crop), interpolation=cv2.INTER_LINEAR)
        else:
            # Over an edge: the same sampling as resize (pixel centres), padded with black.
            m = np.float32([[scale, 0, scale * (0.5 - x0) - 0.5], [0, scale, scale * (0.5 - y0) - 0.5]])
            crop = cv2.warpAffine(frame, m, (self.crop, self.crop), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
        return crop, x0, y0, scale

    def _detect(self, frame: np.ndarray) -> tuple[float, float, float] | None:
        """A window around the largest face the long-range detector finds in the whole frame."""
        self.detections += 1
        h, w = frame.shape[:2]
        small = frame if w <= DETECT_WIDTH else cv2.resize(frame, (DETECT_WIDTH, round(h * DETECT_WIDTH / w)),
                                                           interpolation=cv2.INTER_AREA)
        result = self._detector.process(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        if not result.detections:
            return None
        boxes = [d.location_data.relative_bounding_box for d in result.detections]
        box = max(boxes, key=lambda b: b.width * b.height)
        bw, bh = box.width * w, box.height * h
        return (box.xmin * w + bw / 2, box.ymin * h + bh / 2, WINDOW_PER_BOX * max(bw, bh))

    def reset(self) -> None:
        """Forget the face, in the face mesh too: the next frame runs the long-range detector."""
        self._window = None
        self._mesh.reset()

    def close(self) -> None:
        """Release both MediaPipe graphs."""
        self._mesh.close()
        self._detector.close()


# A NormalizedLandmark as protobuf serializes it: x, y, z each a tag byte
# and a little-endian float, inside a length-delimited entry (tag, length).
_WIRE = np.dtype([("tag", "u1"), ("len", "u1"), ("tx", "u1"), ("x", "<f4"), ("ty", "u1"), ("y", "<f4"),
                  ("tz", "u1"), ("z", "<f4")])


def _normalized_xy(landmarks: Any) -> np.ndarray:
    """x and y of every landmark of a NormalizedLandmarkList, as float32 (n, 2).

    Read from the serialized message in one numpy call: ten times faster than
    468 attribute reads. Anything but the expected layout takes the slow path.
    """
    wire = landmarks.SerializeToString()
    if len(wire) % _WIRE.itemsize == 0:
        rows = np.frombuffer(wire, _WIRE)
        if ((rows["tag"] == 0x0A) & (rows["len"] == 15) & (rows["tx"] == 0x0D) & (rows["ty"] == 0x15)
                & (rows["tz"] == 0x1D)).all():
            return np.stack([rows["x"], rows["y"]], axis=1)
    return np.array([(m.x, m.y) for m in landmarks.landmark], dtype=np.float32)


def _window_around(points: np.ndarray) -> tuple[float, float, float]:
    """The tracking window for the next frame: centred on the landmarks, ``WINDOW_PER_LANDMARKS`` their size."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1]), WINDOW_PER_LANDMARKS * float(max(hi - lo))
