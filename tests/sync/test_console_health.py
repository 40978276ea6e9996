"""Faults show where people look, and clear: ``GET /v1/health``, the hub console's API, the agent's ``/console``.

A real agent process with a printer emulator and an emulated access point
with three labels, a real Mosquitto, the real hub (``edge-hub run --http``)
with the shipped rule ids on short timers. Each fault must show on the
agent's health and at the hub console within 60 s, and clear after it is
gone. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.shelf_label.ap_emulator import ApEmulator, Fault
from support.agent import config_dict, free_port
from support.flows import poll
from support.hubclient import HubClient
from support.hubprocess import HubProcess
from support.printer import EmulatorThread, printer_device

STORE = "store-test"
TOKEN = "health-console-token"
MACS = ("0000021D4E83C401", "0000021D4E83C402", "0000021D4E83C403")
SKUS = ("LIP-RED-01", "LIP-NUDE-02", "TOTE-CANVAS")
WITHIN = 60.0  # what a store's staff and the soak expect: a fault shows within a minute
# The shipped rules' ids and kinds (sync/console/rules.yaml), on short timers.
RULES = """
evaluate_every_s: 0.5
stale_after_s: 120
rules:
  - {id: device-offline, kind: device_state, states: [offline], for_s: 1}
  - {id: device-error, kind: device_state, states: [error], for_s: 1}
  - {id: printer-paper-out, kind: device_alert, codes: [paper_out], severity: critical}
  - {id: store-critical, kind: device_alert, codes: ["*"], severities: [critical], severity: critical}
  - {id: labels-non-compliant, kind: labels_non_compliant, min_count: 1, for_s: 0}
  - {id: print-queue, kind: print_queue, max_failed: 0, max_waiting: 10, for_s: 1}
"""


@pytest.fixture
def hub_process(tmp_path: Path, mosquitto) -> Iterator[HubProcess]:
    """The real hub with its console on a free port (``hub_process.console_url``)."""
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "tokens").write_text(f"li.wei:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    port = free_port()
    hub = HubProcess(mosquitto.url, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log")
    hub.args += ["--http", f"127.0.0.1:{port}", "--console-tokens", str(tmp_path / "tokens"),
                 "--alert-rules", str(tmp_path / "rules.yaml")]
    hub.start()
    hub.console_url = f"http://127.0.0.1:{port}"
    yield hub
    hub.close()


@pytest.fixture
def hub_console(hub_process: HubProcess) -> Iterator[httpx.Client]:
    """An API client of the hub's console with a staff token."""
    with httpx.Client(base_url=hub_process.console_url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=10) as api:
        yield api


@pytest.fixture
def ap() -> Iterator[ApEmulator]:
    emulator = ApEmulator(auto_checkin=True)
    for mac in MACS:
        emulator.add_tag(mac, 0x01, last_seen=int(time.time()))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def printer() -> Iterator[EmulatorThread]:
    with EmulatorThread() as p:
        yield p


@pytest.fixture
def store(make_agent, mosquitto, ap, printer, hub_console):
    """The agent, linked to the hub, with every label compliant and the store ok on both sides."""
    labels = {"id": "labels-1", "kind": "shelf_label.oepl", "url": ap.url, "poll_interval": 0.2, "timeout": 1,
              "upload_timeout": 1, "retries": 1, "compliance_grace": 2,
              "labels": [{"mac": m, "sku": s} for m, s in zip(MACS, SKUS)]}
    agent = make_agent(config=config_dict(free_port(), devices=[printer_device(printer.port), labels],
                                          hub_url=mosquitto.url))
    agent.import_catalog()
    agent.start()
    poll(lambda: health(agent), lambda h: h["status"] == "ok" and h["hub"] == "online"
         and h["labels"]["labels"] == 3 and h["labels"]["non_compliant"] == 0, WITHIN, "the store ok")
    poll(lambda: summary(hub_console), lambda s: s is not None and s["status"] == "ok"
         and s["labels"]["labels"] == 3 and s["printing"] is not None, WITHIN, "the hub sees the store ok")
    return agent


def health(agent) -> dict[str, Any]:
    with agent.client() as c:
        return c.get("/v1/health").json()


def summary(api: httpx.Client) -> dict[str, Any] | None:
    """The store's line in the hub's fleet view (the tiles and the fleet row read it)."""
    return next((s for s in api.get("/api/fleet").json()["stores"] if s["store"] == STORE), None)


def open_alerts(api: httpx.Client, rule: str) -> list[dict[str, Any]]:
    """The hub's live alerts of ``rule`` for the store whose cause is still there."""
    return [a for a in api.get("/api/alerts", params={"store": STORE}).json()
            if a["rule"] == rule and a["active"] and a["cleared_at"] is None]


def cleared(api: httpx.Client, rule: str, subject: str) -> bool:
    """The hub's alert of ``rule`` for ``subject`` says its cause is gone (or it resolved itself)."""
    alerts = [a for a in api.get("/api/alerts", params={"store": STORE, "resolved": True}).json()
              if a["rule"] == rule and a["subject"] == subject]
    return bool(alerts) and all(a["cleared_at"] or a["state"] == "resolved" for a in alerts)


def codes(h: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(r["code"], r["subject"]) for r in h["reasons"]}


def catalog_event(sku: str, price: str, version: int) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "hub", "type": "retail.catalog.updated",
            "data": {"sku": sku, "name": f"Product {sku}", "barcodes": [], "price": price, "currency": "CNY",
                     "version": version}}


def test_paper_out_shows_on_both_sides_and_clears(store, printer, hub_console):
    api = hub_console
    printer.call(lambda emu: emu.set_state(paper_end=True))
    h = poll(lambda: health(store), lambda h: ("printer_attention", "backroom") in codes(h), WITHIN, "paper out")
    assert h["status"] == "degraded" and ("device_error", "backroom") in codes(h)
    assert "paper" in next(r["message"] for r in h["reasons"] if r["code"] == "printer_attention")
    [alert] = poll(lambda: open_alerts(api, "printer-paper-out"), bool, WITHIN, "the hub's paper-out alert")
    assert (alert["subject"], alert["severity"]) == ("backroom", "critical")
    # Both reasons, not just "degraded": the 1 s debounce may send a snapshot between the device's
    # error and the printer's alert, with device_error alone.
    s = poll(lambda: summary(api), lambda s: s["status"] == "degraded"
             and {"printer_attention", "device_error"} <= {r["code"] for r in s["reasons"]}, WITHIN,
             "the store degraded at the hub, the printer named")
    assert [p["id"] for p in s["problems"]] == ["backroom"]
    detail = api.get(f"/api/stores/{STORE}").json()
    assert any(d["device"] == "backroom" and d["code"] == "paper_out" and d["state"] == "raised"
               for d in detail["device_alerts"])
    # Prometheus sees the same at both ends.
    with store.client("console") as c:
        assert 'edge_health_reasons{code="printer_attention"} 1.0' in c.get("/metrics").text
    assert f'edge_hub_store_degraded{{store="{STORE}"}} 1.0' in api.get("/metrics").text

    printer.call(lambda emu: emu.set_state(paper_end=False))
    poll(lambda: health(store), lambda h: h["status"] == "ok" and h["reasons"] == [], WITHIN, "paper back")
    poll(lambda: summary(api), lambda s: s["status"] == "ok" and s["problems"] == [], WITHIN, "the hub sees it ok")
    poll(lambda: cleared(api, "printer-paper-out", "backroom"), bool, WITHIN, "the paper-out alert cleared")


def test_every_wrong_label_shows_on_both_consoles_and_clears(store, ap, mosquitto, hub_console):
    api = hub_console
    ap.fault = Fault.ERROR_500
    downlink = HubClient(mosquitto.port, STORE)
    try:
        downlink.send("catalog", [catalog_event(sku, "99.00", 50) for sku in SKUS])
    finally:
        downlink.close()
    h = poll(lambda: health(store), lambda h: h["labels"]["past_grace"] == 3, WITHIN, "three labels wrong")
    assert h["status"] == "degraded" and ("labels_non_compliant", "labels") in codes(h)
    assert ("device_error", "labels-1") in codes(h) or ("device_offline", "labels-1") in codes(h)
    s = poll(lambda: summary(api), lambda s: (s["labels"] or {}).get("past_grace") == 3, WITHIN, "the hub's tile")
    assert s["status"] == "degraded" and s["labels"]["labels"] == 3
    [alert] = poll(lambda: open_alerts(api, "labels-non-compliant"), bool, WITHIN, "the hub's labels alert")
    assert alert["title"] == "3 shelf labels not compliant"
    # One device alert per label, on the hub's store page and on the agent's own console alike.
    hub_rows = poll(lambda: [d for d in api.get(f"/api/stores/{STORE}").json()["device_alerts"]
                             if d["code"] == "label_price_mismatch" and d["state"] == "raised"],
                    lambda rows: len(rows) == 3, WITHIN, "three label alerts at the hub")
    assert {d["device"] for d in hub_rows} == {f"labels-1/{m}" for m in MACS}
    with store.client("console") as c:
        mine = c.get(f"/console/api/stores/{STORE}").json()
    assert {(d["device"], d["subject"]) for d in mine["device_alerts"] if d["code"] == "label_price_mismatch"} \
        == {("labels-1", m) for m in MACS}
    assert "labels-non-compliant" in {a["rule"] for a in mine["alerts"]}

    ap.fault = Fault.NONE
    poll(lambda: health(store), lambda h: h["status"] == "ok" and h["labels"]["past_grace"] == 0, WITHIN,
         "labels right again")
    poll(lambda: summary(api), lambda s: s["status"] == "ok" and s["labels"]["past_grace"] == 0, WITHIN,
         "the hub's tile back to ok")
    poll(lambda: cleared(api, "labels-non-compliant", "labels"), bool, WITHIN, "the labels alert cleared")
    poll(lambda: [d for d in api.get(f"/api/stores/{STORE}").json()["device_alerts"]
                  if d["code"] == "label_price_mismatch" and d["state"] == "raised"], lambda rows: rows == [],
         WITHIN, "every label alert cleared at the hub")
    with store.client("console") as c:
        assert not [d for d in c.get(f"/console/api/stores/{STORE}").json()["device_alerts"]
                    if d["code"] == "label_price_mismatch"]


def test_a_device_offline_shows_on_both_sides_and_clears(store, printer, hub_console):
    api = hub_console
    printer.power_off()
    h = poll(lambda: health(store), lambda h: ("device_offline", "backroom") in codes(h), WITHIN, "printer offline")
    assert h["status"] == "degraded"
    [alert] = poll(lambda: open_alerts(api, "device-offline"), bool, WITHIN, "the hub's device-offline alert")
    assert alert["subject"] == "backroom"
    poll(lambda: summary(api), lambda s: [(p["id"], p["state"]) for p in s["problems"]] == [("backroom", "offline")],
         WITHIN, "the fleet row names the printer")

    printer.start()
    poll(lambda: health(store), lambda h: h["status"] == "ok", WITHIN, "printer back")
    poll(lambda: summary(api), lambda s: s["status"] == "ok" and s["problems"] == [], WITHIN, "the hub sees it ok")
    poll(lambda: cleared(api, "device-offline", "backroom"), bool, WITHIN, "the device-offline alert cleared")


def test_a_hub_that_stops_acknowledging_shows_on_the_agent_and_clears_when_it_is_back(store, hub_process,
                                                                                       hub_console):
    hub_process.stop()
    with store.client("kiosk") as c:
        sale = c.post("/v1/sales", json={"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
                                         "payment": {"method": "cash"}})
    assert sale.status_code == 201, sale.text
    # The broker is up, so the link is: only the acks are missing. Shown past a 30 s grace.
    h = poll(lambda: health(store), lambda h: ("hub_not_acknowledging", "hub") in codes(h), WITHIN + 30,
             "the hub's silence")
    assert (h["status"], h["hub"]) == ("degraded", "online") and h["outbox_depth"] >= 1

    hub_process.start()
    poll(lambda: health(store), lambda h: h["status"] == "ok" and h["outbox_depth"] == 0, WITHIN, "drained")
    poll(lambda: summary(hub_console), lambda s: s["status"] == "ok" and s["outbox_depth"] == 0, WITHIN,
         "the hub sees the store ok and drained")


def test_paper_put_back_while_the_agent_was_down_clears_at_the_hub(store, printer, hub_console):
    api = hub_console
    printer.call(lambda emu: emu.set_state(paper_end=True))
    poll(lambda: open_alerts(api, "printer-paper-out"), bool, WITHIN, "the hub's paper-out alert")
    store.kill()  # no clear will ever be sent for this paper-out
    printer.call(lambda emu: emu.set_state(paper_end=False))
    poll(lambda: summary(api), lambda s: s["presence"] == "offline", WITHIN, "the store offline (its Will)")
    store.start()
    h = poll(lambda: health(store), lambda h: h["hub"] == "online" and h["status"] == "ok", WITHIN, "back and ok")
    assert not any(r["code"] == "printer_attention" for r in h["reasons"])
    # The store's snapshot lists what is open now: the hub clears the alert the lost clear left behind.
    poll(lambda: cleared(api, "printer-paper-out", "backroom"), bool, WITHIN, "the paper-out alert cleared")
    poll(lambda: summary(api), lambda s: s["status"] == "ok" and s["device_alerts"] == 0, WITHIN, "nothing open")
