"""The agent's hub link over a real Mosquitto: drain, acks, presence, outages, downlink."""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from support.agent import config_dict, free_port
from support.hubclient import HubClient

STORE = "store-test"


def sale(code: str = "TOTE01") -> dict:
    return {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": code, "qty": 1}], "payment": {"method": "cash"}}


@pytest.fixture
def linked(make_agent, mosquitto):
    """An agent with the demo catalog linked to the test's broker, and a hub client watching it."""
    hub = HubClient(mosquitto.port, STORE)
    agent = make_agent(config=config_dict(free_port(), hub_url=mosquitto.url))
    agent.import_catalog()
    agent.start()
    yield agent, hub
    hub.close()


def wait_health(agent, pred, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    with agent.client() as c:
        while True:
            h = c.get("/v1/health").json()
            if pred(h):
                return h
            assert time.monotonic() < deadline, h
            time.sleep(0.05)


def test_sales_reach_the_hub_as_cloudevents_and_leave_on_ack(linked):
    agent, hub = linked
    assert hub.expect("status", lambda s: s["state"] == "online")["version"]
    with agent.client("kiosk") as c:
        sales = [c.post("/v1/sales", json=sale()).json() for _ in range(5)]
    events = hub.events_until(sales[-1]["seq"])
    assert [e["seq"] for e in events] == [s["seq"] for s in sales] == [1, 2, 3, 4, 5]
    e = events[0]
    assert e["specversion"] == "1.0" and e["source"] == f"edge/{STORE}"
    assert e["type"] == "retail.sale.completed" and e["datacontenttype"] == "application/json"
    assert e["data"]["client_sale_id"] == sales[0]["client_sale_id"]
    assert {"sku", "qty", "unit_price"} <= set(e["data"]["lines"][0])
    assert wait_health(agent, lambda h: h["hub"] == "online")["outbox_depth"] == 5
    hub.ack(5)
    wait_health(agent, lambda h: h["outbox_depth"] == 0)


def test_broker_outage_blocks_nothing_and_loses_nothing(linked, mosquitto):
    agent, hub = linked
    hub.expect("status", lambda s: s["state"] == "online")
    hub.close()
    mosquitto.stop()
    with agent.client("kiosk") as c:
        wait_health(agent, lambda h: h["hub"] == "offline")
        started = time.monotonic()
        seqs = [c.post("/v1/sales", json=sale()).json()["seq"] for _ in range(20)]
        assert time.monotonic() - started < 5  # checkouts do not wait for the hub
    mosquitto.start()
    hub = HubClient(mosquitto.port, STORE)
    try:
        events = hub.events_until(seqs[-1], timeout=60)
        got = sorted({e["seq"] for e in events})
        assert got == list(range(1, 21))
        hub.ack(20)
        wait_health(agent, lambda h: h["outbox_depth"] == 0)
    finally:
        hub.close()


def test_unacknowledged_events_are_resent_with_the_same_ids_after_reconnect(linked, mosquitto):
    agent, hub = linked
    with agent.client("kiosk") as c:
        seqs = [c.post("/v1/sales", json=sale()).json()["seq"] for _ in range(3)]
    first = {e["seq"]: e["id"] for e in hub.events_until(seqs[-1])}
    hub.ack(1)
    wait_health(agent, lambda h: h["outbox_depth"] == 2)
    mosquitto.stop()  # the link drops with 2 and 3 unacknowledged
    wait_health(agent, lambda h: h["hub"] == "offline")
    mosquitto.start()
    hub2 = HubClient(mosquitto.port, STORE)
    try:
        again = {e["seq"]: e["id"] for e in hub2.events_until(3, timeout=60)}
    finally:
        hub2.close()
    assert min(again) == 2  # 1 was acknowledged: not resent
    assert again[2] == first[2] and again[3] == first[3]


def test_an_ack_for_a_seq_never_sent_is_ignored(linked):
    agent, hub = linked
    with agent.client("kiosk") as c:
        c.post("/v1/sales", json=sale())
    hub.events_until(1)
    hub.ack(999)
    hub.send("cmd", {"id": "probe", "device": "agent", "action": "status"})  # ordered after the ack
    status = hub.expect("cmd/res", lambda r: r["id"] == "probe")["result"]
    assert status["outbox_depth"] == 1 and status["acked_seq"] == 0
    assert "ack for seq 999 ignored" in agent.log()
    # The outbox cannot drain while the hub says such things: the store says so, with the reason.
    with agent.client("admin") as c:
        health = c.get("/v1/health").json()
    assert health["status"] == "degraded"
    assert [r["code"] for r in health["reasons"]] == ["hub_ack_invalid"]
    # An ack for a stream this database never had is another database's: ignored, and no trouble.
    hub.ack(1, stream="0e5c7e0e-0000-4000-8000-000000000000")
    hub.ack(1)
    hub.expect("health", lambda h: h["outbox_depth"] == 0)


def test_presence_online_then_offline_on_sigterm_and_will_on_sigkill(linked, make_agent, mosquitto):
    agent, hub = linked
    hub.expect("status", lambda s: s["state"] == "online")
    assert agent.stop(signal.SIGTERM) == 0
    hub.expect("status", lambda s: s["state"] == "offline")
    agent.start()
    hub.expect("status", lambda s: s["state"] == "online")
    agent.kill()
    # No clean goodbye: the broker publishes the Will once the keepalive lapses
    # or, here, at once because the TCP connection closed.
    hub.expect("status", lambda s: s["state"] == "offline", timeout=60)


def test_health_snapshot_is_retained_with_devices_and_outbox(linked):
    agent, hub = linked
    snap = hub.expect("health", lambda h: any(d["state"] == "online" for d in h["devices"]))
    assert snap["store"] == STORE
    assert {"outbox_depth", "oldest_unacked_age_s", "disk_free_bytes", "version", "devices"} <= set(snap)
    assert snap["devices"][0]["id"] == "heartbeat-1"
    # The store's own verdict, the same as GET /v1/health's (no printer, no label device here).
    assert (snap["status"], snap["reasons"], snap["labels"], snap["printing"]) == ("ok", [], None, None)


def test_an_alert_sends_a_snapshot_at_once_and_health_names_what_is_wrong(linked):
    agent, hub = linked
    hub.expect("health", lambda h: h["status"] == "ok")
    # A bad downlink payload raises an alert: the snapshot follows it, not the next minute's.
    hub.send("stock", b"{not json")
    # The snapshot that lists it (not any snapshot: a periodic one from before the alert would do).
    snap = hub.expect("health", lambda h: any(a["code"] == "bad_downlink" for a in h["open_alerts"]), timeout=30)
    assert snap["status"] == "ok"  # a bad payload is news, not a fault of the store
    with agent.client("console") as c:
        [alert] = [a for a in c.get(f"/console/api/stores/{STORE}").json()["device_alerts"]
                   if a["code"] == "bad_downlink"]
    assert (alert["device"], alert["state"]) == ("hub-link", "raised")


def test_the_hubs_ack_time_gives_the_store_its_clock_offset(linked):
    agent, hub = linked
    hub.expect("status", lambda s: s["state"] == "online")
    hub.send("cmd", {"id": "before", "device": "agent", "action": "status"})
    assert hub.expect("cmd/res", lambda r: r["id"] == "before")["result"]["clock_offset_s"] is None
    with agent.client("kiosk") as c:
        seq = c.post("/v1/sales", json=sale()).json()["seq"]
    hub.events_until(seq)
    ahead = datetime.now(timezone.utc) + timedelta(seconds=120)  # a hub whose clock is 2 min ahead
    hub.send("ack", {"seq": seq, "stream": hub.stream, "time": ahead.isoformat()})
    wait_health(agent, lambda h: h["outbox_depth"] == 0)
    hub.send("cmd", {"id": "after", "device": "agent", "action": "status"})
    offset = hub.expect("cmd/res", lambda r: r["id"] == "after")["result"]["clock_offset_s"]
    assert 115 < offset <= 120


def test_commands_are_allowlisted_and_always_answered(linked):
    agent, hub = linked
    hub.expect("status", lambda s: s["state"] == "online")
    hub.send("cmd", {"id": "c1", "device": "heartbeat-1", "action": "reopen"})
    assert hub.expect("cmd/res", lambda r: r["id"] == "c1") == {"id": "c1", "ok": True,
                                                                "result": {"device": "heartbeat-1", "reopening": True}}
    hub.send("cmd", {"id": "c2", "device": "heartbeat-1", "action": "format_disk"})
    r = hub.expect("cmd/res", lambda r: r["id"] == "c2")
    assert r["ok"] is False and "not allowed" in r["error"] and "reopen" in r["error"]
    hub.send("cmd", {"id": "c3", "device": "nope", "action": "reopen"})
    assert "no device 'nope'" in hub.expect("cmd/res", lambda r: r["id"] == "c3")["error"]
    hub.send("cmd", b"{garbage")
    assert hub.expect("cmd/res", lambda r: r["id"] == "")["ok"] is False
    hub.send("cmd", {"id": "c4", "device": "agent", "action": "set_log_level", "args": {"level": "loud"}})
    assert "args.level" in hub.expect("cmd/res", lambda r: r["id"] == "c4")["error"]
    hub.send("cmd", {"id": "c5", "device": "agent", "action": "set_log_level", "args": {"level": "debug"}})
    assert hub.expect("cmd/res", lambda r: r["id"] == "c5")["ok"] is True


def test_resend_from_a_seq_sends_the_same_events_again(linked):
    agent, hub = linked
    with agent.client("kiosk") as c:
        for _ in range(4):
            c.post("/v1/sales", json=sale())
    first = {e["seq"]: e["id"] for e in hub.events_until(4)}
    hub.ack(1)
    hub.send("cmd", {"id": "r1", "device": "agent", "action": "resend_from", "args": {"seq": 1}})
    assert "acknowledged" in hub.expect("cmd/res", lambda r: r["id"] == "r1")["error"]
    hub.send("cmd", {"id": "r2", "device": "agent", "action": "resend_from", "args": {"seq": 3}})
    assert hub.expect("cmd/res", lambda r: r["id"] == "r2")["ok"] is True
    again = {e["seq"]: e["id"] for e in hub.events_until(4)}
    assert min(again) <= 3 and again[3] == first[3] and again[4] == first[4]


def _catalog_event(sku: str, price: str, version: int, **extra) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "hub", "type": "retail.catalog.updated",
            "data": {"sku": sku, "barcodes": [f"BC-{sku}"], "name": f"Item {sku}", "price": price,
                     "currency": "CNY", "version": version, **extra}}


def test_catalog_updates_apply_and_stale_versions_are_ignored(linked):
    agent, hub = linked
    hub.expect("status", lambda s: s["state"] == "online")
    hub.send("catalog", [_catalog_event("NEW-1", "10.00", 5)])
    hub.send("catalog", _catalog_event("NEW-1", "8.00", 4), store="all")  # older: ignored
    hub.send("catalog", [_catalog_event("NEW-1", "12.00", 6)], store="all")  # chain-wide, newer
    hub.send("cmd", {"id": "sync", "device": "agent", "action": "status"})  # handled after the above
    hub.expect("cmd/res", lambda r: r["id"] == "sync")
    with agent.client("kiosk") as c:
        p = c.get("/v1/products/BC-NEW-1").json()
    assert p["price"] == "12.00" and p["version"] == 6


def test_bad_downlink_payloads_raise_an_alert_and_keep_the_agent_up(linked):
    agent, hub = linked
    hub.expect("status", lambda s: s["state"] == "online")
    hub.send("catalog", b"\xff\xfe not json")
    hub.send("stock", [{"specversion": "1.0", "id": "x", "source": "hub", "type": "retail.stock.set",
                        "data": {"sku": "TOTE01", "qty": -5}}])
    alerts = []
    hub.expect("events", lambda batch: alerts.extend(e for e in batch if e["type"] == "retail.device.alert")
               or len(alerts) >= 2)
    assert alerts[0]["data"]["code"] == "bad_downlink" and "not JSON" in alerts[0]["data"]["message"]
    # News with nothing to clear it: the store lists it as open for a while only (edge_agent/health.py).
    assert all(a["data"]["one_shot"] is True for a in alerts)
    assert "qty" in alerts[1]["data"]["message"]
    with agent.client() as c:
        assert c.get("/v1/health").status_code == 200


# A resend of 130 events through a busy broker: generous, since the machine may be shared (it returns at once
# when done).
LOADED = 120.0


def test_outbox_budget_drops_telemetry_first_and_never_sales(make_agent, mosquitto):
    hub = HubClient(mosquitto.port, STORE)
    config = config_dict(free_port(), hub_url=mosquitto.url)
    config["hub"]["outbox_budget_mb"] = 0.02  # 20 KiB
    agent = make_agent(config=config)
    agent.import_catalog()
    agent.start()
    try:
        hub.expect("status", lambda s: s["state"] == "online")
        with agent.client("kiosk") as c:
            sales = [c.post("/v1/sales", json=sale()).json()["seq"] for _ in range(10)]
        for i in range(150):  # each bad payload becomes a ~300-byte telemetry alert; the hub never acks
            hub.send("stock", f"not json {i} ".encode() + b"x" * 300)
        hub.expect("health", lambda h: h["telemetry_dropped"] > 0, timeout=LOADED)
        for _ in range(120):  # business events alone now pass the budget: kept, and said so
            c = agent.client("kiosk")
            sales.append(c.post("/v1/sales", json=sale()).json()["seq"])
            c.close()
        hub.expect("health", lambda h: h["over_budget"], timeout=LOADED)
        hub.send("cmd", {"id": "s", "device": "agent", "action": "resend_from", "args": {"seq": 1}})
        events: dict[int, dict] = {}

        def complete(batch: list[dict]) -> bool:
            events.update((e["seq"], e) for e in batch)
            return (set(sales) <= set(events)
                    and any(e["type"] == "retail.telemetry.dropped" for e in events.values())
                    and any(e["data"].get("code") == "outbox_over_budget" for e in events.values()))

        hub.expect("events", complete, timeout=LOADED)
        assert all(events[s]["type"] == "retail.sale.completed" for s in sales)  # no sale was dropped
        assert all(e["data"]["dropped_type"] == "retail.device.alert"
                   for e in events.values() if e["type"] == "retail.telemetry.dropped")
        # The hub acknowledges: the outbox empties and the critical alert is cleared, not left up.
        hub.ack(max(events))
        hub.expect("events", lambda batch: any(e["data"].get("code") == "outbox_over_budget"
                                               and e["data"].get("state") == "cleared" for e in batch), timeout=LOADED)
        hub.expect("health", lambda h: not h["over_budget"]
                   and all(a["code"] != "outbox_over_budget" for a in h["open_alerts"]), timeout=LOADED)
    finally:
        hub.close()


def test_an_unreachable_hub_is_explained_in_health(make_agent):
    agent = make_agent().start()  # config_dict points the hub at a port nothing listens on
    h = wait_health(agent, lambda h: h["hub_error"] is not None)
    assert h["hub"] == "offline" and "cannot connect to mqtt://127.0.0.1:" in h["hub_error"]
    assert agent.log().count("hub: cannot connect") == 1  # logged once, not per retry


def test_an_unreadable_ca_file_keeps_the_agent_selling_offline(make_agent, tmp_path):
    config = config_dict(free_port(), hub_url=f"mqtts://127.0.0.1:{free_port()}")
    config["hub"]["ca_file"] = str(tmp_path / "missing-ca.pem")
    agent = make_agent(config=config)
    agent.import_catalog()
    agent.start()
    h = wait_health(agent, lambda h: h["hub_error"] is not None)
    assert "cannot set up TLS" in h["hub_error"] and h["hub"] == "offline"
    with agent.client("kiosk") as c:
        assert c.post("/v1/sales", json=sale()).status_code == 201
    assert agent.stop() == 0


def test_the_health_loop_waits_while_the_hub_is_away():
    """Offline, the snapshot loop sleeps between checks instead of spinning (it took a core)."""
    import asyncio

    from edge_agent.bus import EventBus
    from sync.link import HubLink, LinkSettings
    from sync.outbox_port import HubSettings

    class Counting(HubLink):
        looks = 0

        @property
        def connected(self) -> bool:
            Counting.looks += 1
            return False

        @connected.setter
        def connected(self, value: bool) -> None:
            pass

    hub = HubSettings(store_id=STORE, url="mqtt://127.0.0.1:1", outbox_budget_bytes=2**20)
    link = Counting(hub, outbox=None, bus=EventBus(), version="t", data_dir=None,
                    settings=LinkSettings(health_check_s=0.2))

    async def run_for_a_second() -> None:
        task = asyncio.create_task(link._health_loop())
        await asyncio.sleep(1.0)  # the span observed, not a synchronisation
        task.cancel()

    asyncio.run(run_for_a_second())
    # Two looks per pass, a pass per 0.2 s: about ten. A spinning loop makes thousands.
    assert Counting.looks < 100, Counting.looks


def test_a_health_pass_that_fails_does_not_stop_the_snapshots():
    """An assessment that raises is logged, and the next pass sends the snapshot it owed."""
    import asyncio
    from types import SimpleNamespace

    from edge_agent.bus import EventBus
    from sync.link import HubLink, LinkSettings
    from sync.outbox_port import HubSettings

    published: list[dict] = []
    calls = {"assess": 0}

    async def assess() -> dict:
        calls["assess"] += 1
        if calls["assess"] == 1:
            raise RuntimeError("an injected failure in the assessment")
        return {"status": "ok"}

    class Connected(HubLink):
        async def health_snapshot(self, assessment=None) -> dict:
            return dict(assessment or {})  # the store's figures are not what this test is about

    hub = HubSettings(store_id=STORE, url="mqtt://127.0.0.1:1", outbox_budget_bytes=2**20)
    link = Connected(hub, outbox=None, bus=EventBus(), version="t", data_dir=None,
                     settings=LinkSettings(health_check_s=0.05), assess=assess)
    link.connected = True
    link._client = SimpleNamespace(publish=lambda topic, payload, **kw: published.append(
        {"topic": topic, **json.loads(payload)}))

    async def scenario() -> None:
        task = asyncio.create_task(link._health_loop())
        deadline = time.monotonic() + 30
        while not published:
            assert not task.done(), f"the health loop ended: {task.exception()!r}"
            assert time.monotonic() < deadline, "no snapshot after a failed pass"
            await asyncio.sleep(0.01)  # polling interval of a condition
        task.cancel()

    asyncio.run(scenario())
    assert published[0] == {"topic": f"edge/{STORE}/health", "status": "ok"} and calls["assess"] >= 2
