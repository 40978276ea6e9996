"""Store stock through a real agent: manual adjustments, the low-stock alert, the last unit sold twice."""

from __future__ import annotations

import threading
import uuid

import pytest

from support.flows import GLASSES, LIPSTICK, NUDE, TOTE, feed, linked_agent, sale, uplink


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with linked_agent(tmp_path_factory.mktemp("stock"), stock={"low_threshold": 2}) as (agent, hub):
        yield agent, hub


def stock_of(agent, code: str) -> int:
    with agent.client("associate") as c:
        return c.get(f"/v1/products/{code}").json()["stock_store"]


def test_a_delta_and_a_count_change_the_store_count_and_reach_the_hub(store):
    agent, hub = store
    with agent.client("associate") as c:
        before = stock_of(agent, TOTE)
        added = c.post("/v1/stock/adjustments", json={"code": TOTE, "delta": 10, "reason": "received"})
        counted = c.post("/v1/stock/adjustments", json={"code": "TOTE-CANVAS", "counted": 7, "reason": "count",
                                                        "note": "shelf B2"})
    assert added.status_code == 201, added.text
    assert (added.json()["before"], added.json()["qty"], added.json()["delta"]) == (before, before + 10, 10)
    got = counted.json()
    assert (got["sku"], got["qty"], got["delta"], got["counted"]) == ("TOTE-CANVAS", 7, 7 - before - 10, 7)
    assert stock_of(agent, TOTE) == 7
    event = uplink(hub, "retail.stock.adjusted", lambda d: d["adjustment_id"] == got["id"])
    assert event["data"] == {"adjustment_id": got["id"], "sku": "TOTE-CANVAS", "delta": got["delta"], "qty": 7,
                             "reason": "count", "client": "associate-1", "store": "store-test", "counted": 7,
                             "note": "shelf B2"}


def test_an_adjustment_with_a_key_is_idempotent(store):
    agent, hub = store
    body = {"client_adjustment_id": str(uuid.uuid4()), "code": NUDE, "delta": -1, "reason": "damaged"}
    with agent.client("admin") as c:
        before = stock_of(agent, NUDE)
        first = c.post("/v1/stock/adjustments", json=body)
        again = c.post("/v1/stock/adjustments", json=body)
        other = c.post("/v1/stock/adjustments", json={**body, "delta": -2})
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert stock_of(agent, NUDE) == before - 1


@pytest.mark.parametrize("body, fragment", [
    ({"code": TOTE, "reason": "count"}, "either delta"),
    ({"code": TOTE, "delta": 1, "counted": 3, "reason": "count"}, "not both"),
    ({"code": TOTE, "delta": 0, "reason": "count"}, "delta 0"),
    ({"code": TOTE, "delta": 1.5, "reason": "count"}, "delta"),
    ({"code": TOTE, "counted": -1, "reason": "count"}, "counted"),
    ({"code": TOTE, "delta": 1, "reason": "because"}, "reason"),
    ({"code": TOTE, "delta": 10**12, "reason": "count"}, "delta"),
])
def test_bad_adjustments_are_422(store, body, fragment):
    agent, hub = store
    with agent.client("associate") as c:
        r = c.post("/v1/stock/adjustments", json=body)
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text


def test_an_unknown_code_is_404(store):
    agent, hub = store
    with agent.client("associate") as c:
        r = c.post("/v1/stock/adjustments", json={"code": "NOPE", "delta": 1, "reason": "found"})
    assert r.status_code == 404


def test_concurrent_checkouts_of_the_last_unit_both_sell_and_associates_are_told(store):
    """A customer holding the item is never refused: the count goes below zero and the alert says so."""
    agent, hub = store
    with agent.client("associate") as c:
        c.post("/v1/stock/adjustments", json={"code": GLASSES, "counted": 1, "reason": "count"}).raise_for_status()
    codes: list[int] = []

    def checkout():
        with agent.client("kiosk") as k:
            codes.append(k.post("/v1/sales", json=sale((GLASSES, 1))).status_code)

    with feed(agent, "associate") as pad:
        threads = [threading.Thread(target=checkout) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        negative = pad.expect("stock.low", lambda d: d["sku"] == "GLS-ROUND-BLK")
    assert codes == [201, 201]
    assert stock_of(agent, GLASSES) == -1
    # 1 was already below the threshold (2): the alert is for the count going below zero.
    assert (negative["qty"], negative["negative"], negative["threshold"]) == (-1, True, 2)


def test_a_sale_of_ten_thousand_lines_is_priced_and_stored(store):
    agent, hub = store
    with agent.client("kiosk", timeout=60) as c:
        before = stock_of(agent, LIPSTICK)
        r = c.post("/v1/sales", json=sale(*[(LIPSTICK, 1)] * 10_000))
        too_long = c.post("/v1/sales", json=sale(*[(LIPSTICK, 1)] * 10_001))
    assert r.status_code == 201, r.text[:300]
    assert len(r.json()["lines"]) == 10_000 and r.json()["total"] == "1590000.00"
    assert stock_of(agent, LIPSTICK) == before - 10_000
    assert too_long.status_code == 422 and "lines" in too_long.json()["detail"]



def test_a_sale_announces_its_counts_in_one_event_and_other_changes_one_each():
    from edge_agent.bus import EventBus
    from edge_agent.stock import STOCK_CHANGED, STOCK_LOW, STOCK_SOLD, StockChange, publish_low

    def published(changes: list, announce: bool) -> list[tuple[str, dict]]:
        bus = EventBus()
        sub = bus.subscribe()
        publish_low(bus, changes, 3, announce=announce)
        out = []
        while not sub.queue.empty():
            event = sub.queue.get_nowait()
            out.append((event.type, event.data))
        return out

    changes = [StockChange("LIP-NUDE-02", "Nude", 5, 3), None, StockChange("TOTE-CANVAS", "Tote", 40, 39),
               StockChange("LIP-NUDE-02", "Nude", 3, 2)]
    sale = published(changes, announce=False)  # one event for the sale, then the crossing
    assert [t for t, _ in sale] == [STOCK_SOLD, STOCK_LOW]
    assert sale[0][1] == {"skus": ["LIP-NUDE-02", "TOTE-CANVAS"]}
    other = published(changes, announce=True)
    assert [(t, d.get("sku"), d.get("qty")) for t, d in other[:3]] == [
        (STOCK_CHANGED, "LIP-NUDE-02", 3), (STOCK_CHANGED, "TOTE-CANVAS", 39), (STOCK_CHANGED, "LIP-NUDE-02", 2)]
    assert published([None], announce=False) == []  # a sale of nothing the catalog has
