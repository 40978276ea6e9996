"""Fixtures of the mirror's tests: the real face photo, frames made from it, one tracker per module.

The tests need the ``mirror`` extra (mediapipe, OpenCV) and scikit-image for
the photo; each test module skips when they are not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def photo() -> Any:
    """skimage.data.astronaut() (public domain) as a BGR numpy array, the way OpenCV holds frames."""
    import numpy as np
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="module")
def module_tracker() -> Iterator:
    """One MediaPipe tracker per test module: its graphs take a while to build."""
    from ar_mirror.mediapipe_tracker import MediapipeTracker

    tracker = MediapipeTracker()
    yield tracker
    tracker.close()


@pytest.fixture
def tracker(module_tracker):
    """The module's tracker, with no face followed yet."""
    module_tracker.reset()
    return module_tracker
