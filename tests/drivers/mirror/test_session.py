"""Try-on sessions: when they start and end, what they count, what they never hold."""

from __future__ import annotations

import pytest

from drivers.mirror.session import Basket, BasketLine, Ordered, SessionTracker


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
    assert data["compared"] is True and data["ended_by"] == "done" and data["orders"] == []
    # SKUs, seconds and counts: nothing of a face.
    assert set(data) == {"session_id", "device", "station", "started_at", "ended_at", "seconds", "face_seconds",
                         "ended_by", "compared", "tried", "basket", "orders"}


def test_a_session_records_what_went_to_the_kiosk_and_what_was_ordered_online(tracker, clock):
    tracker.face(True)
    tracker.look({"LIP-RED-01": "lipstick"}, compare=False)
    clock.now += 4
    tracker.added(BasketLine("LIP-RED-01", 2, "store", tracker.session_id, kiosk="kiosk-1"))
    tracker.ordered(Ordered("0190-ab", (("GLS-ROUND-BLK", 1), ("LIP-RED-01", 1))))
    data = tracker.end("done")
    assert data is not None
    assert data["basket"] == [{"sku": "LIP-RED-01", "qty": 2, "channel": "store", "kiosk": "kiosk-1"}]
    assert data["orders"] == [{"order_id": "0190-ab", "lines": [{"sku": "GLS-ROUND-BLK", "qty": 1},
                                                                 {"sku": "LIP-RED-01", "qty": 1}]}]
    assert "price" not in str(data) and "total" not in str(data)  # interest and what was bought, not money


def test_an_order_alone_is_a_session_to_report(tracker):
    tracker.ordered(Ordered("0190-cd", (("BLUSH-PEACH", 1),)))
    data = tracker.end("done")
    assert data is not None and data["tried"] == [] and data["orders"][0]["order_id"] == "0190-cd"


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


def test_a_session_begun_by_a_tap_before_any_face_gets_its_whole_gap(tracker, clock):
    clock.now += 60  # the mirror stood idle, nobody in front of it
    tracker.look({"LIP-RED-01": "lipstick"}, compare=False)  # a tap on the screen starts a session
    assert tracker.tick() is None
    clock.now += 9
    assert tracker.tick() is None
    clock.now += 1
    data = tracker.tick()
    assert data is not None and data["ended_by"] == "walked_away"


def test_a_garment_counts_only_while_the_mirror_draws_it_in_body_view(tracker, clock):
    tracker.face(True, body_view=False)  # close up
    tracker.look({"TEE-CREW-NAVY": "top", "LIP-RED-01": "lipstick"}, compare=False)
    clock.now += 4
    tracker.face(True, body_view=True)  # stepped back: the T-shirt is drawn from now on
    clock.now += 6
    tracker.face(True, body_view=False)
    clock.now += 2
    data = tracker.end("done")
    assert {t["sku"]: t["seconds"] for t in data["tried"]} == {"TEE-CREW-NAVY": 6.0, "LIP-RED-01": 12.0}
    assert [t["kind"] for t in data["tried"]] == ["top", "lipstick"]
