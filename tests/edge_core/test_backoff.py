"""The one retry delay (edge_core/backoff.py), as the supervisor and the label pusher use it."""

from __future__ import annotations

from edge_core.backoff import Backoff


def test_backoff_grows_and_is_capped_without_jitter():
    b = Backoff(initial=0.5, cap=10, jitter=0)
    assert [b.delay(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert b.delay(10_000) == 10
    assert b.delay(-1) == 0.5


def test_backoff_jitter_stays_in_bounds_and_under_the_cap():
    b = Backoff(initial=1, cap=8, jitter=0.25)
    for attempt in range(8):
        base = min(8, 2 ** attempt)
        for _ in range(200):
            d = b.delay(attempt)
            assert base * 0.75 <= d <= min(8, base * 1.25)
    assert len({b.delay(1) for _ in range(50)}) > 1  # jitter actually spreads retries


def test_at_the_cap_jitter_only_shortens():
    b = Backoff(initial=1, cap=4, jitter=0.2)
    delays = [b.delay(10) for _ in range(500)]
    assert all(3.2 <= d <= 4 for d in delays)
    assert min(delays) < 3.9  # spread below the cap, not pinned to it

