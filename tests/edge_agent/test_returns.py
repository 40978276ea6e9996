"""Returns through a real agent linked to a real broker, with a receipt printer emulator at kiosk-1."""

from __future__ import annotations

import threading
import uuid

import pytest

from drivers.printer import layout
from support.flows import (GLASSES, LIPSTICK, NUDE, TOTE, card, feed, hub_event, linked_agent, order, poll, ret,
                           sale, sync_point, uplink)
from support.printer import printer_device



@pytest.fixture(scope="module")
def store(tmp_path_factory, printer):
    # kiosk-1's printer is also the service desk's: the slips of clients without a printer print there.
    devices = [printer_device(printer.port, id="printer-1", station="kiosk-1", return_slips=True)]
    with linked_agent(tmp_path_factory.mktemp("returns"), devices, stock={"low_threshold": 3}) as (agent, hub):
        yield agent, hub


def stock_of(agent, code: str) -> int:
    with agent.client("associate") as c:
        return c.get(f"/v1/products/{code}").json()["stock_store"]


def test_a_store_sale_is_returned_by_its_receipt_barcode_and_refunded_from_its_own_prices(store, printer):
    agent, hub = store
    with agent.client("kiosk") as c:
        s = c.post("/v1/sales", json=sale((LIPSTICK, 2), (TOTE, 1), member_id="M-1001")).json()
        before = stock_of(agent, LIPSTICK)
        scanned = f"{uuid.UUID(s['id']).int:0{layout.UUID_DIGITS}d}"  # what the receipt's CODE128 carries
        r = c.post("/v1/returns", json=ret((LIPSTICK, 1), sale=scanned, reason="wrong shade"))
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["sale_id"] == s["id"] and got["state"] == "accepted"
    assert got["lines"] == [{"sku": "LIP-RED-01", "qty": 1, "unit_price": "159.00", "name": s["lines"][0]["name"],
                             "amount": "159.00"}]
    assert got["total"] == "159.00" and got["refund"] == {"method": "card", "reference": None}
    assert got["points_reversed"] == 158 and got["points_restored"] == 0  # 367 * 159/367.90, rounded down
    assert stock_of(agent, LIPSTICK) == before + 1
    event = uplink(hub, "retail.return.accepted", lambda d: d["return_id"] == got["id"])
    assert event["data"]["total"] == "159.00" and event["data"]["lines"][0]["qty"] == 1
    adjusted = uplink(hub, "retail.stock.adjusted", lambda d: d.get("return_id") == got["id"])
    assert adjusted["seq"] > event["seq"]
    assert adjusted["data"] == {**adjusted["data"], "sku": "LIP-RED-01", "delta": 1, "qty": before + 1,
                                "reason": "return"}
    # The slip printed at kiosk-1, naming the return, the sale and the refund.
    assert r.headers["print-job"]
    printer.wait_for(lambda emu: any(got["id"] in d.text for d in emu.receipts()))
    slip = next(d for d in printer.receipts() if got["id"] in d.text)
    assert "RETURN / REFUND" in slip.text and s["id"] in slip.text and "159.00" in slip.text


def test_an_associates_return_prints_its_slip_on_the_return_slips_printer(store, printer):
    """An associate's PAD has no printer: the slip goes to the printer with return_slips: true."""
    agent, hub = store
    with agent.client("kiosk") as c:
        s = c.post("/v1/sales", json=sale((TOTE, 2))).json()
    with agent.client("associate") as c:
        r = c.post("/v1/returns", json=ret((TOTE, 1), sale=s["id"], reason="too small"))
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["client"] != "kiosk-1" and r.headers["print-job"]
    printer.wait_for(lambda emu: any(got["id"] in d.text for d in emu.receipts()))
    (slip,) = [d for d in printer.receipts() if got["id"] in d.text]
    assert "RETURN / REFUND" in slip.lines and s["id"] in slip.text and "Reason: too small" in slip.lines
    assert any(ln.startswith("REFUND") and ln.endswith("CNY 49.90") for ln in slip.lines)
    with agent.client("associate") as c:
        job = poll(lambda: c.get(f"/v1/print/jobs/{r.headers['print-job']}").json(),
                   lambda j: j["state"] == "done", what="slip printed")
    assert (job["device"], job["kind"], job["ref"]) == ("printer-1", "return_slip", got["id"])


def test_returning_everything_in_steps_refunds_exactly_what_was_paid(store):
    agent, hub = store
    hub.send("members", [hub_event("retail.member.card", card("M-STEPS", points=1000))])
    sync_point(hub, "steps")
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((NUDE, 3), member_id="M-STEPS", points_redeemed=1000)).json()
        assert (s["total"], s["points_earned"]) == ("557.00", 557)  # 567.00 - 10.00 of points
        parts = [c.post("/v1/returns", json=ret((NUDE, 1), sale=s["id"])).json() for _ in range(3)]
        fourth = c.post("/v1/returns", json=ret((NUDE, 1), sale=s["id"]))
        member = c.get("/v1/members/M-STEPS").json()
    assert [p["total"] for p in parts] == ["185.67", "185.66", "185.67"]
    assert sum(float(p["total"]) for p in parts) == pytest.approx(557.00)
    assert sum(p["points_reversed"] for p in parts) == 557 and sum(p["points_restored"] for p in parts) == 1000
    assert fourth.status_code == 422 and "had 3 and 3 were returned already, so at most 0 can be" in fourth.json()["detail"]
    # The points given back are available again; the earned ones taken back were never on the card (the sale came
    # after it), so a sale returned whole leaves her where she was.
    assert member["points"] == 1000


def test_a_return_is_idempotent_and_a_reused_key_with_another_body_is_409(store):
    agent, hub = store
    with agent.client("kiosk") as c:
        s = c.post("/v1/sales", json=sale((TOTE, 2))).json()
        body = ret((TOTE, 1), sale=s["id"])
        first = c.post("/v1/returns", json=body)
        again = c.post("/v1/returns", json=body)
        other = c.post("/v1/returns", json={**body, "lines": [{"code": TOTE, "qty": 2}]})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "print-job" not in again.headers
    assert other.status_code == 409


def test_lines_not_sold_or_over_the_quantity_or_of_an_unknown_sale_are_refused(store):
    agent, hub = store
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((TOTE, 1))).json()
        not_sold = c.post("/v1/returns", json=ret((LIPSTICK, 1), sale=s["id"]))
        too_many = c.post("/v1/returns", json=ret((TOTE, 1), ("TOTE-CANVAS", 1), sale=s["id"]))
        unknown_sale = c.post("/v1/returns", json=ret((TOTE, 1), sale=str(uuid.uuid4())))
        garbage = c.post("/v1/returns", json=ret((TOTE, 1), sale="not a receipt"))
        both = c.post("/v1/returns", json=ret((TOTE, 1), sale=s["id"], order_id="WEB-9"))
        neither = c.post("/v1/returns", json=ret((TOTE, 1)))
        negative = c.post("/v1/returns", json=ret((TOTE, -1), sale=s["id"]))
        price = c.post("/v1/returns", json={**ret((TOTE, 1), sale=s["id"]), "total": "999.00"})
        c.post("/v1/returns", json=ret((TOTE, 1), sale=s["id"])).raise_for_status()
        once_more = c.post("/v1/returns", json=ret((TOTE, 1), sale=s["id"]))
    assert not_sold.status_code == 422 and "is not part of it" in not_sold.json()["detail"]
    assert too_many.status_code == 422 and "at most 1 can be" in too_many.json()["detail"]
    assert unknown_sale.status_code == 404
    assert garbage.status_code == 422 and "neither a sale id nor a receipt barcode" in garbage.json()["detail"]
    assert both.status_code == neither.status_code == 422
    assert negative.status_code == 422 and "lines.0.qty" in negative.json()["detail"]
    assert price.status_code == 422 and "total" in price.json()["detail"]  # the refund is never the client's
    assert once_more.status_code == 422
    assert f"sale {s['id']} had 1 and 1 was returned already, so at most 0 can be" in once_more.json()["detail"]


def test_concurrent_returns_of_the_same_line_do_not_both_pass(store):
    agent, hub = store
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((GLASSES, 1))).json()
    codes: list[int] = []

    def give_back():
        with agent.client("kiosk") as c:
            codes.append(c.post("/v1/returns", json=ret((GLASSES, 1), sale=s["id"])).status_code)

    threads = [threading.Thread(target=give_back) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [201] + [422] * 7


def test_an_online_order_collected_here_is_returned_against_what_the_hub_sent(store):
    agent, hub = store
    hub.send("orders", [hub_event("retail.order.created", order("WEB-RET", code="111111"))])
    sync_point(hub, "order")
    with agent.client("associate") as c:
        early = c.post("/v1/returns", json=ret((NUDE, 1), order_id="WEB-RET"))
        for status in ("picking", "ready"):
            c.post("/v1/orders/WEB-RET/status", json={"status": status}).raise_for_status()
        c.post("/v1/orders/WEB-RET/status", json={"status": "collected", "pickup_code": "111111"}).raise_for_status()
        before = stock_of(agent, NUDE)
        ok = c.post("/v1/returns", json=ret((NUDE, 2), order_id="WEB-RET"))
        over = c.post("/v1/returns", json=ret((NUDE, 1), order_id="WEB-RET"))
    assert early.status_code == 409 and "not collected" in early.json()["detail"]
    assert ok.status_code == 201, ok.text
    got = ok.json()
    assert got["state"] == "accepted" and got["total"] is None and got["refund"]["method"] == "original"
    assert got["lines"][0]["unit_price"] is None and got["member_id"] == "M-1001"
    assert stock_of(agent, NUDE) == before + 2
    assert over.status_code == 422


def test_an_online_order_unknown_here_is_pending_until_the_hubs_verdict(store):
    agent, hub = store
    with agent.client("associate") as c:
        before = stock_of(agent, GLASSES)
        pending = c.post("/v1/returns", json=ret((GLASSES, 1), order_id="WEB-HOME-1")).json()
        rejected = c.post("/v1/returns", json=ret((TOTE, 1), order_id="WEB-HOME-2")).json()
        unknown = c.post("/v1/returns", json=ret(("NOPE", 1), order_id="WEB-HOME-3"))
    assert pending["state"] == "pending" and stock_of(agent, GLASSES) == before  # held until the verdict
    assert unknown.status_code == 422 and "unknown code" in unknown.json()["detail"]
    event = uplink(hub, "retail.return.accepted", lambda d: d["return_id"] == pending["id"])
    assert event["data"]["state"] == "pending" and event["data"]["order_id"] == "WEB-HOME-1"

    with feed(agent, "associate") as pad:
        hub.send("returns", [hub_event("retail.return.verdict", {"return_id": pending["id"], "verdict": "approved"}),
                             hub_event("retail.return.verdict", {"return_id": rejected["id"], "verdict": "rejected",
                                                                 "reason": "outside 30 days"})])
        approved = pad.expect("return.verdict", lambda d: d["return_id"] == pending["id"])
        refused = pad.expect("return.verdict", lambda d: d["return_id"] == rejected["id"])
    assert approved["state"] == "accepted" and refused["state"] == "rejected" and refused["reason"] == "outside 30 days"
    assert stock_of(agent, GLASSES) == before + 1
    uplink(hub, "retail.stock.adjusted", lambda d: d.get("return_id") == pending["id"])
    # The same verdict again changes nothing; one that contradicts it is an alert to the hub.
    hub.send("returns", [hub_event("retail.return.verdict", {"return_id": pending["id"], "verdict": "approved"})])
    hub.send("returns", [hub_event("retail.return.verdict", {"return_id": pending["id"], "verdict": "rejected"})])
    alert = uplink(hub, "retail.device.alert", lambda d: d.get("topic_kind") == "returns")
    assert "a verdict only settles a pending return" in alert["data"]["message"]
    assert stock_of(agent, GLASSES) == before + 1


def test_a_restock_above_the_threshold_after_a_low_alert(store):
    """Selling down to the threshold alerts associates once; a return takes the count back above it."""
    agent, hub = store
    with agent.client("associate") as c, feed(agent, "associate") as pad:
        left = stock_of(agent, GLASSES)
        assert left > 3
        s = c.post("/v1/sales", json=sale((GLASSES, left - 3))).json()
        low = pad.expect("stock.low", lambda d: d["sku"] == "GLS-ROUND-BLK")
        assert low == {"sku": "GLS-ROUND-BLK", "name": low["name"], "qty": 3, "threshold": 3, "negative": False}
        c.post("/v1/returns", json=ret((GLASSES, 1), sale=s["id"])).raise_for_status()
        assert stock_of(agent, GLASSES) == 4
        c.post("/v1/sales", json=sale((GLASSES, 1))).raise_for_status()  # down to 3 again: alerted again
        assert pad.expect("stock.low", lambda d: d["sku"] == "GLS-ROUND-BLK")["qty"] == 3
