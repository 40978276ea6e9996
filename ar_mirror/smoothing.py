"""Landmark smoothing: the head's motion and the face's own, each through its own One Euro filter.

A plain low-pass filter on each landmark either lets sensor noise through
(the lipstick's edge shimmers) or lags behind a moving head (the glasses
slide off the eyes). So each frame first fits the similarity transform
(shift, turn, scale) that best carries the last smoothed landmarks onto the
new ones: the head's motion, measured on all 468 points at once. Then two
One Euro filters (Casiez, Roussel and Vogel, CHI 2012) follow, each smoothing
hard while its part is still and lightly as soon as it moves: one for that
motion (its speed, averaged over every landmark, is almost free of noise,
so it may open up quickly), one per landmark for what the motion does not
explain (an expression, a turn away from the camera, the noise). Speeds are
in face widths per second, so the same settings hold near and far.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    """The smoothing factor of a first-order low-pass at ``cutoff`` Hz for a step of ``dt`` s."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def follow(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``old`` moved by the similarity transform that fits ``old`` to ``new`` best (least squares)."""
    mo, mn = old.mean(axis=0), new.mean(axis=0)
    o, n = old - mo, new - mn
    norm = float((o * o).sum())
    if norm < 1e-9:
        return old + (mn - mo)  # one point, or all in one place: a shift is all there is
    a = float((o * n).sum()) / norm
    b = float((o[:, 0] * n[:, 1] - o[:, 1] * n[:, 0]).sum()) / norm
    return np.stack([a * o[:, 0] - b * o[:, 1], b * o[:, 0] + a * o[:, 1]], axis=1) + mn


class OneEuro:
    """Smooths an (N, 2) array of landmarks over time; ``reset()`` when the face is lost."""

    def __init__(self, min_cutoff: float = 0.5, beta: float = 40.0, shape_beta: float = 10.0,
                 d_cutoff: float = 1.0):
        self.min_cutoff = min_cutoff  # Hz, for a still head and a still expression
        self.beta = beta  # extra Hz per face width per second the head moves
        self.shape_beta = shape_beta  # extra Hz per face width per second a landmark moves on the face
        self.d_cutoff = d_cutoff  # Hz, for the speed estimates themselves
        self._x: np.ndarray | None = None
        self._head_speed = 0.0
        self._shape_speed: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, points: np.ndarray, t: float, scale: float) -> np.ndarray:
        """The smoothed points at time ``t`` (s); ``scale`` is the face's width in pixels."""
        x = points.astype(np.float32)
        if self._x is None or self._shape_speed is None or t <= self._t:
            self._x, self._shape_speed, self._head_speed, self._t = x, np.zeros(len(x), np.float32), 0.0, t
            return x
        dt, per_width = t - self._t, 1.0 / max(scale, 1.0)
        moved = follow(self._x, x).astype(np.float32)
        head, shape = moved - self._x, x - moved
        a_d = _alpha(dt, self.d_cutoff)
        speed = float(np.linalg.norm(head, axis=1).mean()) / dt * per_width
        self._head_speed += a_d * (speed - self._head_speed)
        self._shape_speed = self._shape_speed + a_d * (np.linalg.norm(shape, axis=1) / dt * per_width
                                                       - self._shape_speed)
        a_head = _alpha(dt, self.min_cutoff + self.beta * self._head_speed)
        a_shape = _alpha(dt, self.min_cutoff + self.shape_beta * self._shape_speed)[:, None]
        self._x = self._x + a_head * head + a_shape * shape
        self._t = t
        return self._x.copy()

    def reset(self) -> None:
        """Forget the past: the next points pass unfiltered."""
        self._x = self._shape_speed = None
