"""Pickup orders placed in the store (``POST /v1/orders``) through a real agent linked to a real broker:
the order row, its pick ticket and its ``retail.order.placed`` event in one write, exactly once, and the
hub's later ``retail.order.created`` for the same order changing nothing."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import uuid


from drivers.scanner.protocol import CodeKind, parse
from edge_agent.store import keys, outbox
from support.flows import GLASSES, LIPSTICK, TOTE, feed, hub_event, sync_point, uplink




def body(*lines: dict, **extra) -> dict:
    return {"client_order_id": str(uuid.uuid4()), "lines": list(lines), **extra}


def db_rows(agent, sql: str, args: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, args).fetchall()


def stored_code(agent, order_id: str, code: str) -> str:
    """The pickup code as the store keeps it: its keyed hash (store/keys.py), never the code."""
    return keys.code_hash((agent.data_dir / keys.KEY_FILE).read_bytes(), order_id, code)


def placed_events(agent, order_id: str) -> list[outbox.OutboxEvent]:
    with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as conn:
        return [e for e in outbox.pending(conn) if e.type == "retail.order.placed" and e.data["order_id"] == order_id]


def test_an_associate_places_an_order_for_a_member_and_the_row_ticket_and_event_are_there(pickup_store, printer):
    agent, hub = pickup_store
    with feed(agent, "associate") as pad, agent.client("associate") as staff:
        r = staff.post("/v1/orders", json=body({"code": LIPSTICK, "qty": 2}, {"sku": "TOTE-CANVAS"},
                                                {"code": "TOTE01"}, member_id="M-1001"))
        assert r.status_code == 201, r.text
        order = r.json()
        created = pad.expect("order.created", lambda d: d["order_id"] == order["order_id"])
    assert re.fullmatch(r"[0-9]{6}", order["pickup_code"])
    scanned = parse(order["pickup_qr"])  # the chain's pickup QR, as a scanner reads it
    assert scanned.kind is CodeKind.PICKUP
    assert scanned.fields == {"order_id": order["order_id"], "pickup_code": order["pickup_code"]}
    assert [(ln["sku"], ln["qty"], ln["unit_price"], ln["amount"]) for ln in order["lines"]] == [
        ("LIP-RED-01", 2, "159.00", "318.00"), ("TOTE-CANVAS", 2, "49.90", "99.80")]
    assert order["total"] == "417.80" and order["currency"] == "CNY" and order["items"] == 4
    assert order["origin"] == "associate" and order["status"] == "new" and order["store_name"] == "Test Store"
    # Associates see it as they see the hub's orders, without the customer's code.
    assert created["origin"] == "associate" and created["status"] == "new" and "pickup_code" not in created
    assert created["print_job"] and r.headers["print-job"] == created["print_job"]
    with agent.client("associate") as pad:
        listed = next(o for o in pad.get("/v1/orders").json() if o["order_id"] == order["order_id"])
    assert listed["origin"] == "associate" and listed["items"] == 4 and "pickup_code" not in listed
    # The row and the event, in the store's own database.
    [(code, member, lines, origin, status)] = db_rows(
        agent, "SELECT pickup_code, member_id, lines, origin, status FROM orders WHERE order_id = ?",
        (order["order_id"],))
    assert (code, member, origin, status) == (stored_code(agent, order["order_id"], order["pickup_code"]), "M-1001",
                                              "associate", "new")
    assert order["pickup_code"] not in code
    assert json.loads(lines) == [{"sku": "LIP-RED-01", "qty": 2, "unit_price": "159.00"},
                                 {"sku": "TOTE-CANVAS", "qty": 2, "unit_price": "49.90"}]
    [event] = placed_events(agent, order["order_id"])
    expected = {
        "order_id": order["order_id"], "client_order_id": order["client_order_id"],
        "pickup_code": order["pickup_code"], "member_id": "M-1001",
        "lines": [{"sku": "LIP-RED-01", "qty": 2, "unit_price": "159.00"},
                  {"sku": "TOTE-CANVAS", "qty": 2, "unit_price": "49.90"}],
        "total": "417.80", "currency": "CNY", "origin": "associate", "store": "store-test", "station": "associate-1",
        "device": None, "placed_at": order["placed_at"],
    }
    assert event.data == expected and event.priority == outbox.Priority.BUSINESS
    sent = uplink(hub, "retail.order.placed", lambda d: d["order_id"] == order["order_id"])
    assert sent["data"] == expected and sent["seq"] == event.seq == order["seq"]
    printer.wait_for(lambda emu: any(order["order_id"] in d.text for d in emu.receipts()))
    ticket = next(d for d in printer.receipts() if order["order_id"] in d.text)
    assert "PICK TICKET" in ticket.text and order["order_id"] in ticket.text
    assert order["pickup_code"] not in ticket.text  # the customer's proof at collection stays hers


def test_a_kiosk_orders_only_for_the_member_attached_to_it(pickup_store):
    agent, _ = pickup_store
    with agent.client("kiosk") as kiosk:
        r = kiosk.post("/v1/orders", json=body({"sku": "TOTE-CANVAS"}, member_id="M-1001"))
        assert r.status_code == 422 and "not attached to this kiosk's session" in r.json()["detail"]
        r = kiosk.post("/v1/orders", json=body({"sku": "TOTE-CANVAS"}))
        assert r.status_code == 201 and r.json()["origin"] == "kiosk" and r.json()["member_id"] is None


def test_the_same_id_twice_is_one_order_and_one_event_and_another_body_is_409(pickup_store):
    agent, hub = pickup_store
    first_body = body({"code": TOTE, "qty": 1})
    with agent.client("associate") as pad:
        first = pad.post("/v1/orders", json=first_body)
        again = pad.post("/v1/orders", json=first_body)
        other = pad.post("/v1/orders", json={**first_body, "lines": [{"code": TOTE, "qty": 2}]})
        later = pad.post("/v1/orders", json=body({"code": TOTE}))
    assert first.status_code == again.status_code == 201 and later.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.json() == first.json() and first.json()["origin"] == "associate"
    assert other.status_code == 409 and "already used for a different order" in other.json()["detail"]
    order_id = first.json()["order_id"]
    assert db_rows(agent, "SELECT count(*) FROM orders WHERE order_id = ?", (order_id,)) == [(1,)]
    assert len(placed_events(agent, order_id)) == 1
    # The hub has every event up to the later order's: the first order's went exactly once.
    uplink(hub, "retail.order.placed", lambda d: d["order_id"] == later.json()["order_id"])
    sent = [e for m in hub.seen if m.topic.endswith("/events") for e in json.loads(m.payload)
            if e["type"] == "retail.order.placed" and e["data"]["order_id"] == order_id]
    assert len({e["id"] for e in sent}) == 1


def test_more_than_online_stock_is_409_and_an_order_takes_online_stock(pickup_store):
    agent, _ = pickup_store
    with agent.client("kiosk") as kiosk:
        online = kiosk.get(f"/v1/products/{GLASSES}").json()["stock_online"]
        over = kiosk.post("/v1/orders", json=body({"code": GLASSES, "qty": online - 1}, {"sku": "GLS-ROUND-BLK"},
                                                  {"sku": "GLS-ROUND-BLK"}))
        assert over.status_code == 409
        assert f"only {online} of GLS-ROUND-BLK online, the order asks for {online + 1}" in over.json()["detail"]
        assert kiosk.post("/v1/orders", json=body({"code": GLASSES, "qty": 3})).status_code == 201
        assert kiosk.get(f"/v1/products/{GLASSES}").json()["stock_online"] == online - 3
        unknown = kiosk.post("/v1/orders", json=body({"code": "0000000000000"}))
        assert unknown.status_code == 422 and "lines[0]: no product" in unknown.json()["detail"]
        assert kiosk.post("/v1/orders", json={"client_order_id": "not-a-uuid", "lines": [{"code": TOTE}]}
                          ).status_code == 422
        assert kiosk.post("/v1/orders", json=body()).status_code == 422  # no lines
    with agent.client("mirror") as mirror, agent.client("console") as console:
        assert mirror.post("/v1/orders", json=body({"code": TOTE})).status_code == 403
        assert console.post("/v1/orders", json=body({"code": TOTE})).status_code == 403


def test_the_hubs_created_for_a_placed_order_changes_nothing(pickup_store):
    agent, hub = pickup_store
    with agent.client("kiosk") as kiosk:
        order = kiosk.post("/v1/orders", json=body({"code": LIPSTICK})).json()
    oid = order["order_id"]
    with agent.client("associate") as pad:
        assert pad.post(f"/v1/orders/{oid}/status", json={"status": "picking"}).status_code == 200
        # The hub has taken the order in and sends it to the store as it sends every pickup order.
        hub.send("orders", [hub_event("retail.order.created", {
            "order_id": oid, "pickup_code": "000000", "member_id": None,
            "lines": [{"sku": "LIP-RED-01", "qty": 1}]})])
        sync_point(hub, "created-after-placed")
        now = pad.get(f"/v1/orders/{oid}").json()
        assert now["status"] == "picking" and now["origin"] == "kiosk"
        assert db_rows(agent, "SELECT count(*), min(pickup_code) FROM orders WHERE order_id = ?", (oid,)) == [
            (1, stored_code(agent, oid, order["pickup_code"]))]
        assert pad.post(f"/v1/orders/{oid}/status", json={"status": "ready"}).status_code == 200
        in_store = pad.get(f"/v1/products/{LIPSTICK}").json()["stock_store"]
        done = pad.post(f"/v1/orders/{oid}/status", json={"status": "collected", "pickup_code": order["pickup_qr"]})
        assert done.status_code == 200, done.text
        # It came out of online stock and from the warehouse: the shelves keep what they had.
        assert pad.get(f"/v1/products/{LIPSTICK}").json()["stock_store"] == in_store
        jobs = pad.get("/v1/print/jobs", params={"device": "backroom"}).json()
    assert [j["ref"] for j in jobs].count(oid) == 1  # one pick ticket: the hub's copy queued none
