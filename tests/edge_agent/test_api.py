"""The local API against a real agent process over real HTTP."""

from __future__ import annotations

import uuid

import pytest

ROLES = ["kiosk", "associate", "mirror", "console", "admin"]


def sale_body(**overrides) -> dict:
    body = {
        "client_sale_id": str(uuid.uuid4()),
        "lines": [{"code": "6901234567892", "qty": 2}, {"code": "TOTE01", "qty": 1}],
        "payment": {"method": "card", "reference": "TERM-42"},
    }
    body.update(overrides)
    return body


def test_health_needs_no_token(running_agent):
    with running_agent.client() as c:
        r = c.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["store"] == "store-test"
    assert body["status"] in ("ok", "degraded")
    assert body["hub"] in ("online", "offline")
    assert isinstance(body["outbox_depth"], int)
    # Degraded always says why: a short code, what it is about, words.
    assert (body["status"] == "degraded") == bool(body["reasons"])
    assert all(set(r) == {"code", "subject", "message"} and r["message"] for r in body["reasons"])


@pytest.mark.parametrize("path", ["/v1/devices", "/v1/products/TOTE01", "/metrics"])
def test_missing_or_unknown_token_is_401(running_agent, path):
    with running_agent.client() as c:
        assert c.get(path).status_code == 401
        r = c.get(path, headers={"Authorization": "Bearer not-a-known-token"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


# Who may call what (CONTRACT section 3); True = allowed.
MATRIX = {
    ("GET", "/v1/devices"): {"associate", "console", "admin"},
    ("GET", "/v1/products/TOTE01"): set(ROLES),
    ("GET", "/metrics"): {"console", "admin"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("call", sorted(MATRIX))
def test_role_matrix(running_agent, role, call):
    method, path = call
    with running_agent.client(role) as c:
        r = c.request(method, path)
    expected = 200 if role in MATRIX[call] else 403
    assert r.status_code == expected, r.text


@pytest.mark.parametrize("role", ["mirror", "console", "admin"])
def test_sales_forbidden_for_other_roles(running_agent, role):
    with running_agent.client(role) as c:
        assert c.post("/v1/sales", json=sale_body()).status_code == 403


def test_devices_lists_state_and_counters(running_agent):
    with running_agent.client("associate") as c:
        devices = c.get("/v1/devices").json()
    assert [d["id"] for d in devices] == ["heartbeat-1"]
    d = devices[0]
    assert d["kind"] == "sensor.heartbeat"
    assert d["state"] in ("starting", "online")
    assert set(d) == {"id", "kind", "state", "since", "last_error", "counters", "actions"}
    assert d["actions"] == ["reopen"]  # what its driver declares: a heartbeat has no action of its own


def test_product_by_barcode_and_sku(running_agent):
    with running_agent.client("kiosk") as c:
        by_code = c.get("/v1/products/6901234567892").json()
        by_sku = c.get("/v1/products/LIP-RED-01").json()
        missing = c.get("/v1/products/0000000000000")
    assert by_code == by_sku
    assert by_code["price"] == "189.00" and by_code["promo"]["price"] == "159.00"
    assert by_code["name"].startswith("丝绒哑光口红")
    assert missing.status_code == 404


def test_sale_is_priced_by_the_agent_and_idempotent(running_agent):
    body = sale_body(member_id="M-1001")
    with running_agent.client("kiosk") as c:
        first = c.post("/v1/sales", json=body)
        again = c.post("/v1/sales", json=body)
    assert first.status_code == 201, first.text
    sale = first.json()
    assert [ln["unit_price"] for ln in sale["lines"]] == ["159.00", "49.90"]  # promo price applies
    assert sale["total"] == "367.90" and sale["currency"] == "CNY"
    assert sale["points_earned"] == 367
    assert sale["seq"] >= 1
    assert again.status_code == 201
    assert again.json() == sale
    assert again.headers["idempotent-replayed"] == "true"


def test_same_key_different_body_is_409(running_agent):
    body = sale_body()
    with running_agent.client("kiosk") as c:
        assert c.post("/v1/sales", json=body).status_code == 201
        body["lines"][0]["qty"] = 3
        r = c.post("/v1/sales", json=body)
    assert r.status_code == 409
    assert body["client_sale_id"] in r.json()["detail"]


@pytest.mark.parametrize(
    "lines, fragment",
    [
        ([{"code": "6901234567892", "qty": 1.5}], "lines.0.qty"),
        ([{"code": "6901234567892", "qty": -1}], "lines.0.qty"),
        ([{"code": "6901234567892", "qty": 0}], "lines.0.qty"),
        ([], "lines"),
        ([{"code": "", "qty": 1}], "lines.0.code"),
        ([{"code": "X", "qty": 1, "price": "0.01"}], "lines.0.price"),
    ],
)
def test_bad_sale_bodies_are_422_with_a_readable_message(running_agent, lines, fragment):
    with running_agent.client("kiosk") as c:
        r = c.post("/v1/sales", json=sale_body(lines=lines))
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


def test_unknown_code_is_422_and_stores_nothing(running_agent):
    with running_agent.client("kiosk") as c:
        depth_before = c.get("/v1/health").json()["outbox_depth"]
        r = c.post("/v1/sales", json=sale_body(lines=[{"code": "TOTE01", "qty": 1}, {"code": "NOPE", "qty": 1}]))
        depth_after = c.get("/v1/health").json()["outbox_depth"]
    assert r.status_code == 422
    assert "unknown code 'NOPE'" in r.json()["detail"]
    assert depth_after == depth_before


def test_not_json_is_422(running_agent):
    with running_agent.client("kiosk") as c:
        r = c.post("/v1/sales", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_metrics_are_prometheus_text(running_agent):
    with running_agent.client("console") as c:
        r = c.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "edge_outbox_depth " in text
    assert 'edge_device_state{device="heartbeat-1",kind="sensor.heartbeat",state="online"}' in text


def test_openapi_docs_are_served(running_agent):
    with running_agent.client() as c:
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
    assert "/v1/sales" in spec["paths"] and "/v1/health" in spec["paths"]
