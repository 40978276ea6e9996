"""Where frames come from: a V4L2 camera (by index or path), a video file, or the synthetic face.

A source spec is ``synthetic``, ``synthetic-still`` (the face does not move),
``synthetic-body`` (the same photo stepped back: head, shoulders and torso,
for garments),
a camera index (``0``), a device path (``/dev/v4l/by-id/...``, stable
across replugging, or ``/dev/video0``), or the path of a video file, which
loops. Every source hands out BGR frames of about its configured size.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ar_mirror.synthetic import SyntheticCamera

# Reads that may fail in a row before the camera counts as gone (a USB
# camera drops the odd frame; an unplugged one fails every read).
MAX_FAILED_READS = 10


class CameraMissing(Exception):
    """The camera or file is not there (unplugged, wrong path)."""


class CameraFailed(Exception):
    """The camera is there but gives no frames."""


class FrameSource(Protocol):
    """Anything that hands out frames."""

    size: tuple[int, int]
    name: str

    def read(self) -> np.ndarray:
        """The next BGR frame; blocks until there is one; CameraMissing or CameraFailed when there is none."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


class OpenCvSource:
    """A V4L2 camera or a video file through OpenCV's VideoCapture."""

    def __init__(self, spec: str, size: tuple[int, int], fps: float):
        self.name = spec
        self.is_file = not (spec.isdigit() or spec.startswith("/dev/"))
        target: int | str = int(spec) if spec.isdigit() else spec
        if isinstance(target, str) and not os.path.exists(target):
            raise CameraMissing(f"{spec}: no such {'file' if self.is_file else 'camera'}")
        if self.is_file:
            self._cap = cv2.VideoCapture(target)
        else:
            self._cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
            # USB cameras send 720p at 30 fps only as MJPEG (raw YUYV tops out
            # near 10 fps over USB 2); one buffer keeps the picture current.
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            self._cap.set(cv2.CAP_PROP_FPS, fps)
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not self._cap.isOpened():
            raise CameraMissing(f"{spec}: cannot be opened")
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        file_fps = self._cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0
        self._period = 1 / (file_fps if 1 <= file_fps <= 120 else fps)
        self._next = time.monotonic()

    def read(self) -> np.ndarray:
        """The next frame; a file starts over at its end and plays at its own rate."""
        for _ in range(MAX_FAILED_READS):
            ok, frame = self._cap.read()
            if ok:
                if self.is_file:
                    self._pace()
                return frame
            if self.is_file:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        if not self.is_file and not os.path.exists(self.name) and not self.name.isdigit():
            raise CameraMissing(f"{self.name}: unplugged")
        raise CameraFailed(f"{self.name}: {MAX_FAILED_READS} reads in a row gave no frame")

    def _pace(self) -> None:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self._period, time.monotonic() - self._period)

    def close(self) -> None:
        """Release the camera or file."""
        self._cap.release()


def open_source(spec: str, size: tuple[int, int], fps: float) -> FrameSource:
    """The source a spec names; CameraMissing when it is not there."""
    if spec in ("synthetic", "synthetic-still", "synthetic-body"):
        try:
            return SyntheticCamera(size, fps, still_face=spec == "synthetic-still", body=spec == "synthetic-body")
        except FileNotFoundError as err:
            raise CameraMissing(str(err)) from err
    if not spec.isdigit() and not spec.startswith("/dev/") and not Path(spec).is_file():
        raise CameraMissing(f"{spec}: no such camera or video file")
    return OpenCvSource(spec, size, fps)
