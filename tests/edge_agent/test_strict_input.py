"""Strict input at the store's edge, against real agent processes over real HTTP.

Integers are integers, a JSON key twice is refused, member ids match the
chain's pattern (from the API and from a member QR on a real, emulated
scanner), card numbers are refused, a password over plain MQTT is an
``edge-agent check`` error, the API docs are served only where enabled, and
a data dir short of space makes the store ``degraded``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from support.agent import TOKENS, AgentProcess, config_dict, free_port
from support.flows import LIPSTICK, TOTE, feed, poll, ret, sale

from drivers.scanner.emulator import SerialScannerEmulator


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An agent with the defaults (no API docs, the default member id pattern) and a kiosk's scanner."""
    work = tmp_path_factory.mktemp("strict")
    scanner = SerialScannerEmulator(work / "dev" / "kiosk-scanner").plug()
    config = config_dict(free_port(), [{"id": "scanner-kiosk", "kind": "scanner.serial", "port": str(scanner.path),
                                        "baudrate": 115200, "station": "kiosk-1"}])
    del config["api"]["docs"]  # the default: off
    agent = AgentProcess(work, config)
    try:
        agent.import_catalog()
        agent.start()
        with agent.client("associate") as c:
            poll(lambda: c.get("/v1/devices").json(), lambda ds: all(d["state"] == "online" for d in ds),
                 what="the scanner online")
        yield agent, scanner
    finally:
        agent.close()
        scanner.close()


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """An agent of a chain with its own member ids, the docs on, and a free-space floor no disk reaches."""
    config = config_dict(free_port())
    config["loyalty"] = {"member_id_pattern": r"^CARD-[0-9]{6}$"}
    config["health"] = {"min_free_mb": 90_000_000}  # 90 TB
    agent = AgentProcess(tmp_path_factory.mktemp("chain"), config)
    try:
        agent.import_catalog()
        agent.start()
        yield agent
    finally:
        agent.close()


def raw_post(agent: AgentProcess, path: str, text: str, role: str | None = "associate") -> httpx.Response:
    """POST ``text`` as the JSON body, byte for byte (httpx's ``json=`` could not repeat a key)."""
    with agent.client(role) as c:
        return c.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def stored(agent: AgentProcess, client_sale_id: str) -> bool:
    """Whether a sale with this key is on disk: a valid sale with the key is then a replay."""
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json={**sale((TOTE, 1)), "client_sale_id": client_sale_id})
    assert r.status_code == 201, r.text
    return r.headers.get("Idempotent-Replayed") == "true"


# Integers are integers ------------------------------------------------------------------------------

SALE_LINE = "/v1/sales"


@pytest.mark.parametrize("qty", [True, "2", 2.0, "1e0", None], ids=repr)
def test_a_sale_line_qty_that_is_not_a_json_integer_is_422(store, qty):
    agent, _ = store
    body = sale((TOTE, 1))
    body["lines"][0]["qty"] = qty
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=body)
    assert r.status_code == 422, r.text
    assert "lines.0.qty: Input should be a valid integer" in r.json()["detail"]
    assert not stored(agent, body["client_sale_id"])


@pytest.mark.parametrize(("path", "role", "body", "where"), [
    ("/v1/sales", "associate", sale((TOTE, 1), member_id="M-0042", points_redeemed="10"), "points_redeemed"),
    ("/v1/returns", "associate", ret((TOTE, True), sale="0" * 40), "lines.0.qty"),
    ("/v1/orders", "associate", {"client_order_id": str(uuid.uuid4()), "lines": [{"code": TOTE, "qty": "1"}]},
     "lines.0.qty"),
    ("/v1/stock/adjustments", "associate", {"code": TOTE, "delta": "5", "reason": "received"}, "delta"),
    ("/v1/stock/adjustments", "associate", {"code": TOTE, "counted": True, "reason": "count"}, "counted"),
    ("/v1/sessions/kiosk-1/basket", "kiosk", {"code": TOTE, "qty": True}, "qty"),
], ids=["sale-points", "return-qty", "order-qty", "stock-delta", "stock-counted", "basket-qty"])
def test_every_request_model_takes_only_json_integers(store, path, role, body, where):
    agent, _ = store
    with agent.client(role) as c:
        before = c.get(f"/v1/products/{TOTE}").json()
        r = c.post(path, json=body)
        after = c.get(f"/v1/products/{TOTE}").json()
    assert r.status_code == 422, r.text
    assert f"{where}: Input should be a valid integer" in r.json()["detail"]
    assert after == before  # nothing moved


def test_json_integers_still_work(store):
    agent, _ = store
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=sale((TOTE, 2)))
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["qty"] == 2


# Duplicate keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "text", "key"), [
    ("/v1/sales", '{{"client_sale_id": "{id}", "lines": [{{"code": "TOTE01", "qty": 1, "qty": 5}}], '
                  '"payment": {{"method": "cash"}}}}', "qty"),
    ("/v1/sales", '{{"client_sale_id": "{id}", "lines": [{{"code": "TOTE01", "qty": 1}}], '
                  '"payment": {{"method": "cash"}}, "client_sale_id": "{id}"}}', "client_sale_id"),
    ("/v1/stock/adjustments", '{{"code": "TOTE01", "delta": 1, "reason": "found", "delta": 500}}', "delta"),
    ("/v1/labels/bind", '{{"label": "A", "label": "B", "code": "TOTE01"}}', "label"),
], ids=["sale-line", "sale-top", "stock", "labels"])
def test_a_key_twice_is_422_naming_it_and_nothing_is_done(store, path, text, key):
    agent, _ = store
    sale_id = str(uuid.uuid4())
    with agent.client("associate") as c:
        before = c.get(f"/v1/products/{TOTE}").json()
    r = raw_post(agent, path, text.format(id=sale_id))
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f'the JSON body has the key "{key}" more than once; send each key once'
    with agent.client("associate") as c:
        assert c.get(f"/v1/products/{TOTE}").json() == before
    assert not stored(agent, sale_id)


def test_a_repeated_key_is_named_safely_and_the_body_parsed_once(store):
    agent, _ = store
    key = "\\u0007<b>" + "k" * 500  # a control character, as JSON writes it
    r = raw_post(agent, "/v1/stock/adjustments", json.dumps({"x": 1})[:-1] + f', "{key}": 1, "{key}": 2}}')
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "\u0007" not in detail and "\\u0007<b>" in detail and len(detail) < 200
    # The same keys in two different objects are not duplicates.
    r = raw_post(agent, "/v1/sales", json.dumps(sale((TOTE, 1), (LIPSTICK, 1))))
    assert r.status_code == 201, r.text


# Member ids ---------------------------------------------------------------------------------------

BAD_MEMBERS = ["13800138000", "+86 138 0013 8000", "<img src=x onerror=alert(1)>", "M-0042\n", "M-00\x0742",
               "m-0042", "M-"]


@pytest.mark.parametrize("member", BAD_MEMBERS, ids=repr)
def test_a_member_id_off_the_chains_pattern_is_422_everywhere_it_enters(store, member):
    agent, _ = store
    with agent.client("associate") as c:
        sold = c.post("/v1/sales", json=sale((TOTE, 1), member_id=member))
        ordered = c.post("/v1/orders", json={"client_order_id": str(uuid.uuid4()), "lines": [{"code": TOTE}],
                                             "member_id": member})
        looked_up = c.get(f"/v1/members/{member}") if member.isprintable() and "/" not in member else sold
    for r in (sold, ordered, looked_up):
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "not a member id of this chain (loyalty.member_id_pattern ^M-[A-Z0-9]{1,20}$)" in detail
        if len(member) > 3:
            assert member.strip() not in detail  # what was sent (maybe a phone number) is not echoed


def test_the_demos_member_ids_are_valid(store):
    agent, _ = store
    with agent.client("associate") as c:
        assert c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-0042")).status_code == 201
        assert c.get("/v1/members/M-0042").json()["known"] is False


def test_a_chain_sets_its_own_pattern(chain):
    with chain.client("associate") as c:
        assert c.post("/v1/sales", json=sale((TOTE, 1), member_id="CARD-123456")).status_code == 201
        r = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-0042"))
    assert r.status_code == 422
    assert "loyalty.member_id_pattern ^CARD-[0-9]{6}$" in r.json()["detail"]


def test_a_member_qr_off_the_pattern_attaches_nobody(store):
    agent, scanner = store
    with feed(agent, "associate") as pad, agent.client("kiosk") as kiosk:
        kiosk.delete("/v1/sessions/kiosk-1")
        scanner.scan("RM1:13800138000")  # a phone number: the scanner's RM1 form takes digits
        bad = pad.expect("scan", lambda d: d["device"] == "scanner-kiosk")
        assert bad["ok"] is False and bad["raw"] is None and "not a member id of this chain" in bad["reason"]
        assert "13800138000" not in json.dumps(bad)
        assert kiosk.get("/v1/sessions/kiosk-1").json()["member_id"] is None
        scanner.scan("RM1:M-0042")
        attached = pad.expect("member.attached", lambda d: d["station"] == "kiosk-1")
        assert attached["member_id"] == "M-0042"
        assert not [e for e in pad.seen if e["type"] == "member.arrived" and e["data"]["member_id"] != "M-0042"]
        assert kiosk.get("/v1/sessions/kiosk-1").json()["member_id"] == "M-0042"
        kiosk.delete("/v1/sessions/kiosk-1")


# Card numbers -------------------------------------------------------------------------------------

CARDS = ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "card 5500 0000 0000 0004",
         "6212345678901232"]  # Visa, Mastercard, a UnionPay-style 16 digits, each Luhn-valid


@pytest.mark.parametrize("reference", CARDS)
def test_a_card_number_as_payment_reference_is_422(store, reference):
    agent, _ = store
    body = sale((TOTE, 1))
    body["payment"] = {"method": "card", "reference": reference}
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "payment.reference" in detail and "looks like a card number" in detail and "last four" in detail
    assert reference not in r.text
    assert not stored(agent, body["client_sale_id"])


@pytest.mark.parametrize("reference", ["TERM-42", "****1111", "1111", "4111111111111112", "123456789012",
                                       "4200000123456789012345678901"])  # not Luhn, 12 digits, a 28-digit QR id
def test_a_terminal_reference_or_last_four_is_kept(store, reference):
    agent, _ = store
    body = sale((TOTE, 1))
    body["payment"] = {"method": "card", "reference": reference}
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["payment"]["reference"] == reference


def test_a_card_number_as_refund_reference_is_422(store):
    agent, _ = store
    with agent.client("associate") as c:
        sold = c.post("/v1/sales", json=sale((TOTE, 1))).json()
        r = c.post("/v1/returns", json=ret((TOTE, 1), sale=sold["id"],
                                           refund={"method": "card", "reference": "4111 1111 1111 1111"}))
    assert r.status_code == 422, r.text
    assert "refund.reference" in r.json()["detail"] and "last four" in r.json()["detail"]


# API docs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_api_docs_are_off_by_default(store, path):
    agent, _ = store
    for role in (None, "admin"):
        with agent.client(role) as c:
            assert c.get(path).status_code == 404


def test_where_enabled_the_docs_need_no_token_and_hold_no_secret(chain):
    with chain.client() as c:
        assert c.get("/docs").status_code == 200
        assert c.get("/redoc").status_code == 200
        spec = c.get("/openapi.json")
    assert spec.status_code == 200 and "/v1/sales" in spec.json()["paths"]
    text = spec.text
    for token in TOKENS.values():
        assert token not in text
    for client in chain.config["api"]["clients"]:
        assert client["token_sha256"] not in text


# Health -------------------------------------------------------------------------------------------

def test_health_is_degraded_when_the_data_dir_is_short_of_space(chain, store):
    with chain.client() as c:
        h = poll(lambda: c.get("/v1/health").json(), lambda h: any(r["code"] == "disk_low" for r in h["reasons"]),
                 30, "disk_low")
    assert h["status"] == "degraded"
    [reason] = [r for r in h["reasons"] if r["code"] == "disk_low"]
    assert reason["subject"] == "store"
    assert "MB free in" in reason["message"] and "under the 90000000 MB of health.min_free_mb" in reason["message"]
    agent, _ = store  # the default floor (100 MB): this machine's disk has more
    with agent.client() as c:
        assert not [r for r in c.get("/v1/health").json()["reasons"] if r["code"] == "disk_low"]


# Plaintext MQTT passwords -------------------------------------------------------------------------

def check(tmp_path: Path, hub: str) -> subprocess.CompletedProcess[str]:
    """``edge-agent check`` of a devices.yaml with this ``hub:`` section."""
    (tmp_path / "hub.pass").write_text("secret\n")
    path = tmp_path / "devices.yaml"
    path.write_text(f"store:\n  id: store-001\n  name: S\nhub:\n{hub}")
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("EDGE_")})


def test_a_password_over_plain_mqtt_is_a_check_error_at_the_url(tmp_path):
    out = check(tmp_path, f"  url: mqtt://hub.example.com:1883\n  password_file: {tmp_path}/hub.pass\n")
    assert out.returncode == 2, out
    assert (f"{tmp_path}/devices.yaml:5: hub.url: password_file is set but the url is mqtt://, which sends the "
            "password in clear; use mqtts://") in out.stderr
    assert "hub.allow_plaintext_password: true" in out.stderr


def test_a_password_over_plain_mqtt_passes_when_allowed_explicitly(tmp_path):
    out = check(tmp_path, f"  url: mqtt://127.0.0.1:1883\n  password_file: {tmp_path}/hub.pass\n"
                          "  allow_plaintext_password: true\n")
    assert out.returncode == 0, out.stderr


def test_a_password_over_mqtts_needs_no_permission(tmp_path):
    out = check(tmp_path, f"  url: mqtts://hub.example.com:8883\n  password_file: {tmp_path}/hub.pass\n")
    assert out.returncode == 0, out.stderr


def test_a_body_that_is_not_json_says_where(store):
    agent, _ = store
    r = raw_post(agent, "/v1/stock/adjustments", '{"code": "TOTE01",, "delta": 1}')
    assert r.status_code == 422
    assert r.json()["detail"] == "body: not valid JSON at character 18: Expecting property name enclosed in double quotes"


def test_a_member_id_pattern_that_is_no_regex_or_takes_anything_is_a_config_error():
    from edge_agent import config
    from edge_core.errors import ConfigError

    base = "store:\n  id: store-001\n  name: S\nloyalty:\n  member_id_pattern: "
    for pattern, said in (("'M-[0-9'", "not a regular expression"), ("'.*'", "matches an empty member id")):
        with pytest.raises(ConfigError) as err:
            config.parse(base + pattern + "\n", "d.yaml", {})
        assert err.value.problems[0].startswith("d.yaml:5: loyalty.member_id_pattern:"), err.value.problems
        assert said in err.value.problems[0]
