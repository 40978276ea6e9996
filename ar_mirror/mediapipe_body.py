"""The ``BodyTracker`` on MediaPipe 0.10.21's pose and selfie segmentation (their models ship in the wheel).

Pose runs with ``model_complexity=1`` only: 0.10.21 bundles that model, and
fetches the lite (0) and heavy (2) ones from the internet at run time,
which a store PC cannot do. Both models see a reduced picture: the pose's
own landmark model takes 256x256 and its detector 224x224, so handing it a
1280x720 frame only adds MediaPipe's own copy and resize (20 ms a frame on
this 2-core machine against 10.5 ms from a 320-wide copy made with
OpenCV, which costs 0.3 ms). The person mask comes from the landscape
segmentation model (256x144), 1.5 ms, asked for only while a garment is
drawn. MediaPipe's own landmark smoothing (``smooth_landmarks``) steadies
the joints; nothing here writes a file or keeps a frame.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ar_mirror.body import POSE_33, Body, Skeleton
from ar_mirror.mediapipe_tracker import solutions

# Width of the copy of the frame the pose model is given (its inputs are 256 and 224 square).
POSE_WIDTH = 320
# The landscape selfie-segmentation model's input.
MASK_SIZE = (256, 144)


def _body_solutions() -> tuple[Any, Any]:
    """MediaPipe's pose and selfie_segmentation modules, imported as the face tracker imports its own."""
    pose, selfie_segmentation = solutions("pose", "selfie_segmentation")
    return pose, selfie_segmentation


class MediapipeBodyTracker:
    """One person: MediaPipe pose (complexity 1) on a ``POSE_WIDTH`` copy, the person mask on request."""

    skeleton: Skeleton = POSE_33

    def __init__(self, min_confidence: float = 0.5, width: int = POSE_WIDTH):
        pose, selfie = _body_solutions()
        self.width = width
        self._pose = pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                               enable_segmentation=False, min_detection_confidence=min_confidence,
                               min_tracking_confidence=min_confidence)
        self._segmenter = selfie.SelfieSegmentation(model_selection=1)

    def track(self, frame: np.ndarray, mask: bool = False) -> Body | None:
        """The person's 33 joints in ``frame``'s pixels (and the mask at 256x144 if ``mask``), or None."""
        h, w = frame.shape[:2]
        small_h = max(round(h * self.width / w), 1)
        small = cv2.resize(frame, (self.width, small_h), interpolation=cv2.INTER_AREA) if w > self.width else frame
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        result = self._pose.process(rgb)
        if result.pose_landmarks is None:
            return None
        marks = result.pose_landmarks.landmark
        norm = np.array([(m.x, m.y, m.visibility) for m in marks], np.float32)
        # Normalized coordinates run from the picture's left edge to its right one; pixel i is centred on i.
        points = norm[:, :2] * np.float32([w, h]) - 0.5
        person = None
        if mask:
            tiny = cv2.resize(rgb, MASK_SIZE, interpolation=cv2.INTER_AREA)
            person = self._segmenter.process(tiny).segmentation_mask
        return Body(points, norm[:, 2].copy(), self.skeleton, person)

    def segment(self, frame: np.ndarray) -> np.ndarray:
        """The person mask alone, at 256x144."""
        tiny = cv2.resize(frame, MASK_SIZE, interpolation=cv2.INTER_AREA)
        return self._segmenter.process(cv2.cvtColor(tiny, cv2.COLOR_BGR2RGB)).segmentation_mask

    def reset(self) -> None:
        """Forget the person: the pose detector looks at the next frame whole."""
        self._pose.reset()

    def close(self) -> None:
        """Release both MediaPipe graphs."""
        self._pose.close()
        self._segmenter.close()
