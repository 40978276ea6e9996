"""Landmark smoothing: a still face held steady, a moving head followed without lag."""

from __future__ import annotations

import math

import pytest

np = pytest.importorskip("numpy")

from ar_mirror.smoothing import OneEuro, follow  # noqa: E402

FACE = 200.0  # px: speeds are in face widths per second
rng = np.random.default_rng(3)
CLOUD = rng.uniform(-100, 100, (60, 2)).astype(np.float32) + 320  # landmarks, more or less


def turned(points: np.ndarray, shift: tuple[float, float], angle: float, scale: float) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    centre = points.mean(axis=0)
    p = points - centre
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + centre + shift


def test_follow_finds_a_similarity_transform_exactly():
    moved = turned(CLOUD, (12.0, -7.0), 0.2, 1.1)
    assert np.allclose(follow(CLOUD, moved), moved, atol=1e-3)
    assert np.allclose(follow(CLOUD[:1], CLOUD[:1] + 5), CLOUD[:1] + 5)


def test_the_first_points_pass_unchanged_and_a_reset_forgets():
    f = OneEuro()
    assert np.array_equal(f(CLOUD, 0.0, FACE), CLOUD)
    f(CLOUD + 50, 1 / 30, FACE)
    f.reset()
    assert np.array_equal(f(CLOUD, 2 / 30, FACE), CLOUD)


def test_noise_on_a_still_face_is_mostly_removed():
    f = OneEuro()
    raw = np.array([CLOUD + rng.normal(0, 1, CLOUD.shape) for _ in range(120)])
    out = np.array([f(points, i / 30, FACE) for i, points in enumerate(raw)])

    def jitter(frames: np.ndarray) -> float:
        return float(np.linalg.norm(frames[30:].std(axis=0), axis=1).mean())

    assert jitter(out) < 0.5 * jitter(raw)


def test_a_moving_turning_head_is_followed_with_little_lag():
    f = OneEuro()
    worst = 0.0
    for i in range(90):
        t = i / 30
        # Up to 120 px/s on a 200 px face, turning and leaning in: a quick move in front of a mirror.
        truth = turned(CLOUD, (120 * math.sin(t), 40 * t), 0.3 * math.sin(2 * t), 1 + 0.2 * math.sin(t))
        worst = max(worst, float(np.abs(f(truth, t, FACE) - truth).max()))
    assert worst < 0.02 * FACE


def test_an_expression_is_followed_within_a_few_frames():
    f = OneEuro()
    for i in range(10):
        f(CLOUD, i / 30, FACE)
    opened = CLOUD.copy()
    opened[:5, 1] += 20  # a mouth opening: five landmarks move, the rest do not
    for i in range(10, 25):
        out = f(opened, i / 30, FACE)
    assert np.abs(out - opened).max() < 2.0


def test_time_that_does_not_advance_restarts_the_filter():
    f = OneEuro()
    f(CLOUD, 1.0, FACE)
    assert np.array_equal(f(CLOUD + 9, 1.0, FACE), CLOUD + 9)
