"""Shelf labels end to end: a real agent process, a real broker with the hub's catalog topic,
an emulated access point over HTTP, the label API as associates and consoles use it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from drivers.shelf_label.ap_emulator import ApEmulator, Fault
from drivers.shelf_label.models import get_model
from drivers.shelf_label.render import LabelContent, content_hash, render
from edge_agent.catalog import Product
from support.agent import config_dict, free_port
from support.flows import poll
from support.hubclient import HubClient

STORE = "store-test"
A, B = "0000021D4E83B401", "0000021D4E83B402"
TAGS = (A, B)  # the tags on the access point (conftest.ap), due to check in at once
NEXT_CHECKIN_S = None  # the emulator's default next check-in (0)
MODEL = get_model("m2-2.9-bwr")


@pytest.fixture
def store(make_agent, mosquitto, ap):
    """An agent with the demo catalog, one access point and no label bound yet, linked to the broker."""
    device = {"id": "labels-1", "kind": "shelf_label.oepl", "url": ap.url, "poll_interval": 0.2, "timeout": 1,
              "upload_timeout": 1, "retries": 1, "compliance_grace": 2}
    hub = HubClient(mosquitto.port, STORE)
    agent = make_agent(config=config_dict(free_port(), devices=[device], hub_url=mosquitto.url))
    agent.import_catalog()
    agent.start()
    hub.expect("status", lambda s: s["state"] == "online")
    yield agent, hub
    hub.close()


def uploads(ap: ApEmulator, mac: str) -> int:
    with ap.lock:
        return sum(u.mac == mac for u in ap.uploads)


def catalog_event(sku: str, price: str, version: int, **extra) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "hub", "type": "retail.catalog.updated",
            "data": {"sku": sku, "barcodes": ["6901234567892"], "name": "丝绒哑光口红 Velvet Matte Lipstick #01 Ruby",
                     "price": price, "currency": "CNY", "rating": 4.7, "reviews": 1280, "stock_online": 530,
                     "version": version, **extra}}


def expected_picture(product: dict):
    content = LabelContent.from_product(Product.model_validate(product), at=datetime.now(timezone.utc),
                                        tz=ZoneInfo("Asia/Shanghai"))
    return content, render(content, MODEL)


def test_bind_reprice_fail_and_recover_through_the_agent(store, ap):
    agent, hub = store
    with agent.client("associate") as pad, agent.client("console") as console, agent.client("kiosk") as kiosk:
        # An associate scans the label, then the product.
        r = pad.post("/v1/labels/bind", json={"label": "00:00:02:1d:4e:83:b4:01", "code": "6901234567892"})
        assert r.status_code == 201, r.text
        assert (r.json()["mac"], r.json()["sku"], r.json()["source"]) == (A, "LIP-RED-01", "api")
        assert pad.post("/v1/labels/bind", json={"label": B, "code": "TOTE01"}).status_code == 201
        label = poll(lambda: console.get(f"/v1/labels/{A}").json(), lambda v: v["compliant"])
        product = kiosk.get("/v1/products/LIP-RED-01").json()
        content, picture = expected_picture(product)
        assert label["price"] == label["checkout_price"] == "159.00"  # the promotion runs
        assert label["content_hash"] == content_hash(content, MODEL)
        assert ap.shown(A).convert("RGB").tobytes() == picture.convert("RGB").tobytes()
        assert label["battery_mv"] == 2950 and label["confirmed_at"] and label["pushed_at"]
        poll(lambda: console.get(f"/v1/labels/{B}").json(), lambda v: v["compliant"])
        tote = uploads(ap, B)

        # The hub changes one price: only that label is pushed again.
        hub.send("catalog", [catalog_event("LIP-RED-01", "199.00", 2)])
        label = poll(lambda: console.get(f"/v1/labels/{A}").json(),
                      lambda v: v["price"] == "199.00" and v["compliant"])
        assert label["checkout_price"] == "199.00"
        assert ap.shown(A).convert("RGB").tobytes() == \
            expected_picture(kiosk.get("/v1/products/LIP-RED-01").json())[1].convert("RGB").tobytes()
        assert uploads(ap, B) == tote

        # The access point fails: the label is still on record with 199.00 and reported, once.
        ap.fault = Fault.ERROR_500
        hub.send("catalog", [catalog_event("LIP-RED-01", "179.00", 3)])
        [entry] = poll(lambda: console.get("/v1/labels/compliance").json(), lambda v: len(v) == 1)
        assert (entry["mac"], entry["sku"], entry["shown_price"], entry["checkout_price"]) == \
            (A, "LIP-RED-01", "199.00", "179.00")
        health = poll(lambda: agent.client().get("/v1/health").json(),
                       lambda h: h["labels"]["non_compliant"] == 1 and h["status"] == "degraded")
        assert health["labels"]["oldest_non_compliant_since"] == entry["since"]
        def mismatch(e: dict, state: str) -> bool:
            return (e["type"] == "retail.device.alert" and e["data"].get("code") == "label_price_mismatch"
                    and e["data"]["state"] == state and e["data"].get("checkout_price") == "179.00")

        alert = hub.expect("events", lambda batch: any(mismatch(e, "raised") for e in batch))
        data = next(e["data"] for e in alert if mismatch(e, "raised"))
        assert (data["mac"], data["sku"], data["shown_price"], data["device"]) == \
            (A, "LIP-RED-01", "199.00", "labels-1")
        devices = poll(lambda: console.get("/v1/devices").json(), lambda d: d[0]["state"] in ("error", "offline"))
        assert "500" in devices[0]["last_error"]

        ap.fault = Fault.NONE
        poll(lambda: console.get("/v1/labels/compliance").json(), lambda v: v == [], timeout=40)
        assert console.get(f"/v1/labels/{A}").json()["price"] == "179.00"
        cleared = hub.expect("events", lambda batch: any(mismatch(e, "cleared") for e in batch), timeout=20)
        assert next(e["data"] for e in cleared if mismatch(e, "cleared"))["since"] == data["since"]
        health = poll(lambda: agent.client().get("/v1/health").json(), lambda h: h["labels"]["non_compliant"] == 0)
        assert health["labels"]["labels"] == 2
        counters = console.get("/v1/devices").json()[0]["counters"]
        assert counters["labels"] == 2 and counters["labels_non_compliant"] == 0

        # Unbound: it shows "not in use" and stays listed.
        r = pad.delete(f"/v1/labels/{B}")
        assert r.status_code == 200 and r.json()["sku"] is None
        poll(lambda: console.get(f"/v1/labels/{B}").json(), lambda v: v["compliant"] and v["price"] is None
              and v["content_hash"] == v["desired_hash"])
        assert [lb["mac"] for lb in console.get("/v1/labels").json()] == [A, B]


def test_label_api_refuses_what_it_cannot_do(store, ap):
    agent, _ = store
    with agent.client("associate") as pad:
        assert pad.post("/v1/labels/bind", json={"label": "xyz", "code": "TOTE01"}).status_code == 422
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "NOPE"})
        assert r.status_code == 404 and "NOPE" in r.json()["detail"]
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "model": "m9"})
        assert r.status_code == 422 and "known models" in r.json()["detail"]
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "device": "nope"})
        assert r.status_code == 422 and "labels-1" in r.json()["detail"]
        assert pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "extra": 1}).status_code == 422
        assert pad.delete(f"/v1/labels/{B}").status_code == 404
        assert pad.get("/v1/labels/0000000000000099").status_code == 404
    for role, allowed in (("kiosk", False), ("mirror", False), ("console", False), ("admin", True)):
        with agent.client(role) as c:
            status = c.post("/v1/labels/bind", json={"label": A, "code": "TOTE01"}).status_code
            assert (status in (200, 201)) is allowed, (role, status)
            assert (c.get("/v1/labels/compliance").status_code == 200) is (role in ("console", "admin"))
    with agent.client() as anonymous:
        assert anonymous.get("/v1/labels").status_code == 401
