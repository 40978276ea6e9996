"""Try-on sessions: when they start and end, what they count, what they never hold."""

from __future__ import annotations

import pytest

from drivers.mirror.session import Basket, BasketLine, SessionTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker(clock) -> SessionTracker:
    return SessionTracker("mirror-1", "mirror-1", gap=10.0, clock=clock)


def test_a_session_counts_seconds_on_a_present_face_per_sku(tracker, clock):
    tracker.face(True)
    clock.now += 2
    tracker.look({"LIP-RED-01": "lipstick"}, compare=False)
    clock.now += 5
    tracker.look({"LIP-RED-01": "lipstick", "GLS-ROUND-BLK": "glasses"}, compare=True)
    clock.now += 3
    tracker.face(False)  # stepped aside: nothing counts while no face is there
    clock.now += 4
    tracker.face(True)
    clock.now += 1
    tracker.added(BasketLine("LIP-RED-01", 1, "store", tracker.session_id))
    data = tracker.end("done")
    assert data is not None
    tried = {t["sku"]: t["seconds"] for t in data["tried"]}
    assert tried == {"LIP-RED-01": 9.0, "GLS-ROUND-BLK": 4.0}
    assert data["face_seconds"] == 11.0 and data["seconds"] == 15.0
    assert data["basket"] == [{"sku": "LIP-RED-01", "qty": 1, "channel": "store"}]
    assert data["compared"] is True and data["ended_by"] == "done"
    # SKUs, seconds and counts: nothing of a face.
    assert set(data) == {"session_id", "device", "station", "started_at", "ended_at", "seconds", "face_seconds",
                         "ended_by", "compared", "tried", "basket"}


def test_walking_away_for_the_gap_ends_the_session(tracker, clock):
    tracker.face(True)
    tracker.look({"BLUSH-PEACH": "blush"}, compare=False)
    clock.now += 3
    assert tracker.face(False) is None
    clock.now += 9.9
    assert tracker.tick() is None
    clock.now += 0.1
    data = tracker.tick()
    assert data is not None and data["ended_by"] == "walked_away" and data["tried"][0]["seconds"] == 3.0
    assert tracker.session is None


def test_someone_walking_past_is_not_a_session_to_report(tracker, clock):
    tracker.face(True)
    clock.now += 2
    tracker.face(False)
    clock.now += 10
    assert tracker.tick() is None
    assert tracker.session is None


def test_picking_a_product_before_the_face_is_seen_starts_the_session(tracker):
    tracker.look({"LIP-NUDE-02": "lipstick"}, compare=False)
    assert tracker.session_id is not None
    assert tracker.summary()["tried"] == {"LIP-NUDE-02": 0.0}


def test_the_basket_merges_lines_and_has_a_limit():
    basket = Basket(max_lines=2)
    basket.add(BasketLine("A", 1, "store", None))
    basket.add(BasketLine("A", 2, "store", "s1"))
    basket.add(BasketLine("A", 1, "online", "s1"))
    assert basket.qty("A", "store") == 3 and basket.qty("A", "online") == 1
    with pytest.raises(ValueError, match="at most 2"):
        basket.add(BasketLine("B", 1, "store", "s1"))
    basket.clear()
    assert basket.as_dict() == {"lines": []}
