"""Pickup orders through a real agent: from the hub's downlink to the pick ticket, the feed and back to the hub."""

from __future__ import annotations


from support.flows import feed, hub_event, order, sync_point, uplink




def send_order(hub, name: str, **kw) -> dict:
    data = order(**kw)
    hub.send("orders", [hub_event("retail.order.created", data)])
    sync_point(hub, name)
    return data


def move(agent, order_id: str, status: str, code: str | None = None):
    with agent.client("associate") as c:
        body = {"status": status} if code is None else {"status": status, "pickup_code": code}
        return c.post(f"/v1/orders/{order_id}/status", json=body)


def test_a_new_order_prints_its_pick_ticket_and_reaches_associates(pickup_store, printer):
    agent, hub = pickup_store
    with feed(agent, "associate") as pad, feed(agent, "console") as console:
        send_order(hub, "new", order_id="WEB-100", code="123456", ready_by="2030-01-01T12:00:00+00:00")
        created = pad.expect("order.created", lambda d: d["order_id"] == "WEB-100")
        seen_by_console = console.expect("order.created", lambda d: d["order_id"] == "WEB-100")
    assert created["status"] == "new" and created["print_job"]
    assert created["lines"] == [{"sku": "LIP-NUDE-02", "qty": 2, "name": created["lines"][0]["name"],
                                 "stock_store": 12},
                                {"sku": "TOTE-CANVAS", "qty": 1, "name": created["lines"][1]["name"],
                                 "stock_store": 40}]
    assert "pickup_code" not in created  # the customer's secret is not shown on screens
    assert seen_by_console["member_id"] == "****"  # M-1001 is too short to show its last four
    printer.wait_for(lambda emu: any("WEB-100" in d.text for d in emu.receipts()))
    ticket = next(d for d in printer.receipts() if "WEB-100" in d.text)
    assert "PICK TICKET" in ticket.text and "LIP-NUDE-02" in ticket.text
    assert "123456" not in ticket.text  # the pickup code is the customer's proof, not the back room's
    # The same order again (the hub resends) is neither stored nor printed twice.
    send_order(hub, "again", order_id="WEB-100", code="123456")
    with agent.client("associate") as c:
        jobs = c.get("/v1/print/jobs", params={"device": "backroom"}).json()
    assert [j["ref"] for j in jobs].count("WEB-100") == 1


def test_orders_are_listed_with_names_and_store_stock(pickup_store):
    agent, hub = pickup_store
    send_order(hub, "list", order_id="WEB-101")
    with agent.client("associate") as c:
        listed = c.get("/v1/orders").json()
        one = c.get("/v1/orders/WEB-101").json()
        missing = c.get("/v1/orders/NOPE")
    mine = next(o for o in listed if o["order_id"] == "WEB-101")
    assert mine == one and mine["status"] == "new" and mine["items"] == 3
    assert {ln["sku"]: ln["stock_store"] for ln in mine["lines"]} == {"LIP-NUDE-02": 12, "TOTE-CANVAS": 40}
    assert missing.status_code == 404


def test_an_order_goes_new_picking_ready_collected_and_each_step_reaches_the_hub(pickup_store):
    agent, hub = pickup_store
    send_order(hub, "steps", order_id="WEB-102", code="654321")
    with feed(agent, "associate") as pad:
        for status in ("picking", "ready"):
            r = move(agent, "WEB-102", status)
            assert r.status_code == 200 and r.json()["status"] == status and r.json()["changed"]
            assert pad.expect("order.status", lambda d: d["order_id"] == "WEB-102")["status"] == status
        again = move(agent, "WEB-102", "ready")
        done = move(agent, "WEB-102", "collected", "RP1:WEB-102:654321")  # the pickup QR as scanned
        assert pad.expect("order.status", lambda d: d["status"] == "collected")["previous"] == "ready"
    assert again.status_code == 200 and again.json()["changed"] is False
    assert done.status_code == 200, done.text
    assert [ln["stock_store"] for ln in done.json()["lines"]] == [10, 39]  # the goods left the store
    steps = [uplink(hub, "retail.order.status", lambda d, s=s: d["order_id"] == "WEB-102" and d["status"] == s)
             for s in ("picking", "ready", "collected")]
    assert [e["data"]["previous"] for e in steps] == ["new", "picking", "ready"]
    assert steps[0]["seq"] < steps[1]["seq"] < steps[2]["seq"]
    pickup = uplink(hub, "retail.stock.adjusted", lambda d: d.get("order_id") == "WEB-102")
    assert pickup["data"]["reason"] == "pickup" and pickup["data"]["delta"] < 0


def test_other_transitions_are_409_with_what_is_allowed(pickup_store):
    agent, hub = pickup_store
    send_order(hub, "skip", order_id="WEB-103")
    skip = move(agent, "WEB-103", "ready")
    move(agent, "WEB-103", "picking").raise_for_status()
    skip_ready = move(agent, "WEB-103", "collected", "482913")  # the right code, but the order is not ready
    back = move(agent, "WEB-103", "new")
    bad = move(agent, "WEB-103", "lost")
    unknown = move(agent, "NOPE", "picking")
    assert skip.status_code == 409 and "is new: it cannot go to ready; it can only go to picking" in skip.json()["detail"]
    assert skip_ready.status_code == 409 and "it can only go to ready" in skip_ready.json()["detail"]
    assert back.status_code == 422  # "new" is never asked for
    assert bad.status_code == 422 and unknown.status_code == 404


def test_collected_needs_the_right_pickup_code_and_wrong_codes_are_counted_then_locked(pickup_store):
    agent, hub = pickup_store
    send_order(hub, "code", order_id="WEB-104", code="777777")
    move(agent, "WEB-104", "picking").raise_for_status()
    move(agent, "WEB-104", "ready").raise_for_status()
    missing = move(agent, "WEB-104", "collected")
    assert missing.status_code == 422 and "pickup_code" in missing.json()["detail"]
    wrong = [move(agent, "WEB-104", "collected", "000000") for _ in range(5)]
    assert [w.status_code for w in wrong] == [403] * 5
    assert "wrong attempt 1 of 5" in wrong[0].json()["detail"]
    assert "takes no code until" in wrong[4].json()["detail"]
    other_order_qr = move(agent, "WEB-104", "collected", "RP1:WEB-999:777777")
    assert other_order_qr.status_code == 429 and int(other_order_qr.headers["retry-after"]) > 0
    locked = move(agent, "WEB-104", "collected", "777777")  # even the right code waits for the lock
    assert locked.status_code == 429
    with agent.client("associate") as c:
        assert c.get("/v1/orders/WEB-104").json()["status"] == "ready"
