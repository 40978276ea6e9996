"""``edge-hub run --http``: the console's API, live stream, alerts, commands and /metrics, end to end.

A real Mosquitto, the real hub as a subprocess, a store simulated by a plain
paho client (status, health, events, command answers) and httpx as the
page. Every wait polls a condition with a deadline or reads the live stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sync.topics import CommandResult, StoreTopics, decode_json

from support.agent import free_port
from support.hubprocess import HubProcess

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "console-test-token"
RULES = """
evaluate_every_s: 0.5
stale_after_s: 60
rules:
  - {id: device-offline, kind: device_state, states: [offline], for_s: 1}
  - {id: printer-paper-out, kind: device_alert, codes: [paper_out], severity: critical}
  - {id: store-offline, kind: store_offline, for_s: 0, severity: critical, auto_resolve: true}
"""


def iso(seconds_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat()


class Store:
    """A store as the hub sees it; answers commands unless ``mute``, with ``fail`` for an error."""

    def __init__(self, port: int, store: str):
        self.topics = StoreTopics(store)
        self.store = store
        self.mute = False
        self.commands: queue.Queue[tuple[dict, Any]] = queue.Queue()
        self.seq = 0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"store-{store}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(self.topics.downlink["cmd"], 1)
        assert subscribed.wait(5)

    def _on_message(self, client, userdata, msg) -> None:
        cmd = decode_json(msg.payload)
        self.commands.put((cmd, msg.properties))
        if not self.mute:
            ok = cmd["action"] != "print_test_page"
            res = CommandResult(id=cmd["id"], ok=ok, result={"done": cmd["action"]} if ok else None,
                                error=None if ok else "paper out")
            client.publish(self.topics.cmd_res, res.wire(), qos=1)

    def publish(self, topic: str, body: Any, retain: bool = False) -> None:
        self.client.publish(topic, json.dumps(body).encode(), qos=1, retain=retain).wait_for_publish(5)

    def status(self, state: str) -> None:
        self.publish(self.topics.status, {"state": state, "version": "0.1.0", "since": iso()}
                     if state == "online" else {"state": state}, retain=True)

    def health(self, **devices: str) -> None:
        # Kind and actions as the store's drivers declare them (drivers/base.py), by the id's family.
        kinds = {"printer": ("printer.escpos", ["reopen", "print_test_page"]),
                 "mirror": ("mirror.camera", ["reopen", "end_session"])}
        devs = [{"id": d, "kind": kinds.get(d.split("-")[0], ("sensor.heartbeat", ["reopen"]))[0],
                 "actions": kinds.get(d.split("-")[0], ("sensor.heartbeat", ["reopen"]))[1],
                 "state": s, "since": iso(5), "last_error": None if s == "online" else "refused", "counters": {}}
                for d, s in devices.items()]
        self.publish(self.topics.health, {"store": self.store, "version": "0.1.0", "time": iso(), "devices": devs,
                                          "outbox_depth": 0, "oldest_unacked_age_s": 0, "clock_offset_s": 0.2},
                     retain=True)

    def alert(self, code: str, state: str) -> None:
        self.seq += 1
        ev = {"specversion": "1.0", "id": f"{self.store}-{self.seq}", "source": self.topics.source,
              "type": "retail.device.alert", "time": iso(), "seq": self.seq,
              "data": {"device": "printer-1", "code": code, "state": state, "severity": "error", "message": code}}
        self.publish(self.topics.events, [ev])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)  # polling interval of a condition, not a synchronization


@pytest.fixture
def console(request, tmp_path: Path, mosquitto):
    """(hub, api client, store factory) with a console on a free port and fast rules; SQLite unless
    parametrized with "postgres"."""
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "tokens").write_text(f"# staff\nli.wei:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    port = free_port()
    db = request.getfixturevalue("postgres_url") if getattr(request, "param", "sqlite") == "postgres" \
        else f"sqlite:///{tmp_path}/hub.db"
    hub = HubProcess(mosquitto.url, db, tmp_path / "hub.log")
    hub.args += ["--http", f"127.0.0.1:{port}", "--console-tokens", str(tmp_path / "tokens"),
                 "--alert-rules", str(tmp_path / "rules.yaml"), "--command-timeout", "1.5"]
    hub.start()
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    stores: list[Store] = []

    def store(name: str = "store-a") -> Store:
        stores.append(Store(mosquitto.port, name))
        return stores[-1]

    yield hub, api, store
    for s in stores:
        s.close()
    api.close()
    hub.close()


def alerts_of(api: httpx.Client, rule: str, resolved: bool = False) -> list[dict]:
    return [a for a in api.get("/api/alerts", params={"resolved": resolved}).json() if a["rule"] == rule]


def test_the_page_is_public_and_everything_else_needs_a_token(console):
    hub, api, _ = console
    page = httpx.get(f"{api.base_url}/")
    assert page.status_code == 200 and 'data-mode="hub"' in page.text and "console" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert httpx.get(f"{api.base_url}/static/main.js").status_code == 200
    assert httpx.get(f"{api.base_url}/healthz").json()["status"] == "ok"
    for path in ("/api/fleet", "/api/meta", "/metrics", "/api/stream"):
        r = httpx.get(f"{api.base_url}{path}", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
    assert api.get("/api/meta").json()["who"] == "li.wei"


def test_status_and_health_reach_the_fleet_and_the_live_stream(console):
    hub, api, store = console
    a = store()
    a.status("online")
    a.health(**{"heartbeat-1": "online", "printer-1": "online"})
    fleet = wait_for("store in fleet", lambda: [s for s in api.get("/api/fleet").json()["stores"]
                                                if s["store"] == "store-a" and s["devices"]["total"] == 2])
    assert fleet[0]["presence"] == "online" and fleet[0]["clock_offset_s"] == 0.2

    with api.stream("GET", "/api/stream") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        assert next(lines) == "" and next(lines) == "event: hello"
        a.health(**{"heartbeat-1": "offline", "printer-1": "online"})
        update = None
        for line in lines:  # the read timeout (10 s) bounds the wait
            if line.startswith("data:") and "heartbeat-1" in line:
                update = json.loads(line[5:])
                break
    [summary] = update["stores"]
    assert [(p["id"], p["state"]) for p in summary["problems"]] == [("heartbeat-1", "offline")]

    detail = api.get("/api/stores/store-a").json()
    assert [d["id"] for d in detail["devices"]] == ["heartbeat-1", "printer-1"]
    assert detail["devices"][1]["actions"] == ["reopen", "print_test_page"]
    assert [s["state"] for s in detail["timeline"]["devices"]["heartbeat-1"]] == ["online", "offline"]
    assert api.get("/api/stores/nowhere").status_code == 404


@pytest.mark.parametrize("console", ["sqlite", "postgres"], indirect=True)
def test_an_offline_device_raises_an_alert_that_staff_take_and_resolve(console):
    hub, api, store = console
    a = store()
    a.status("online")
    a.health(**{"heartbeat-1": "offline"})
    [alert] = wait_for("device-offline alert", lambda: alerts_of(api, "device-offline"))
    assert (alert["store"], alert["subject"], alert["state"]) == ("store-a", "heartbeat-1", "open")

    took = api.post(f"/api/alerts/{alert['id']}/ack").json()
    assert (took["state"], took["acked_by"]) == ("acknowledged", "li.wei")
    refused = api.post(f"/api/alerts/{alert['id']}/resolve")
    assert refused.status_code == 409 and "still there" in refused.json()["detail"]

    a.health(**{"heartbeat-1": "online"})
    wait_for("cause cleared", lambda: [x for x in alerts_of(api, "device-offline") if x["cleared_at"]])
    done = api.post(f"/api/alerts/{alert['id']}/resolve").json()
    assert (done["state"], done["resolved_by"]) == ("resolved", "li.wei")
    assert alerts_of(api, "device-offline") == []
    assert api.post("/api/alerts/nope/ack").status_code == 404


def test_store_offline_and_paper_out_come_and_go(console):
    hub, api, store = console
    a = store()
    a.status("online")
    a.health(**{"printer-1": "online"})
    a.alert("paper_out", "raised")
    [paper] = wait_for("paper alert", lambda: alerts_of(api, "printer-paper-out"))
    assert (paper["subject"], paper["severity"]) == ("printer-1", "critical")
    a.alert("paper_out", "cleared")
    wait_for("paper cleared", lambda: alerts_of(api, "printer-paper-out")[0]["cleared_at"])

    a.status("offline")
    wait_for("store alert", lambda: alerts_of(api, "store-offline"))
    a.status("online")
    # auto_resolve: it goes by itself.
    wait_for("store alert resolved", lambda: not alerts_of(api, "store-offline")
             and alerts_of(api, "store-offline", resolved=True))


def test_a_command_round_trips_fails_or_times_out(console):
    hub, api, store = console
    a = store()
    a.status("online")
    a.health(**{"heartbeat-1": "online", "printer-1": "online"})
    wait_for("store known", lambda: api.get("/api/stores/store-a").status_code == 200)

    sent = api.post("/api/stores/store-a/commands", json={"device": "heartbeat-1", "action": "reopen"})
    assert sent.status_code == 202 and sent.json()["state"] == "sent"
    cmd, props = a.commands.get(timeout=5)
    assert (cmd["device"], cmd["action"]) == ("heartbeat-1", "reopen")
    assert props.MessageExpiryInterval == 2  # ceil(1.5 s): the broker drops it with the console's patience
    done = wait_for("answer", lambda: (r := api.get(f"/api/commands/{cmd['id']}").json())["state"] != "sent" and r)
    assert (done["state"], done["result"]) == ("ok", {"done": "reopen"})

    failed = api.post("/api/stores/store-a/commands", json={"device": "printer-1", "action": "print_test_page"}).json()
    assert wait_for("error", lambda: api.get(f"/api/commands/{failed['id']}").json()["state"] == "error")

    a.mute = True
    quiet = api.post("/api/stores/store-a/commands", json={"device": "agent", "action": "status"}).json()
    timed_out = wait_for("timeout", lambda: (r := api.get(f"/api/commands/{quiet['id']}").json())["state"]
                         == "timeout" and r, timeout=10)
    assert timed_out["error"] == "no answer within 1.5 s"

    refused = api.post("/api/stores/store-a/commands", json={"device": "heartbeat-1", "action": "print_test_page"})
    assert refused.status_code == 422 and "allowed: reopen" in refused.json()["detail"]
    assert api.post("/api/stores/store-a/commands", json={"device": "ghost", "action": "reopen"}).status_code == 404
    # The mirror's own action, which the console learns from the snapshot, not from a table of its own.
    a.health(**{"heartbeat-1": "online", "mirror-1": "online"})
    wait_for("the mirror's actions", lambda: [d["actions"] for d in api.get("/api/stores/store-a").json()["devices"]
                                              if d["id"] == "mirror-1"] == [["reopen", "end_session"]])
    ended = api.post("/api/stores/store-a/commands", json={"device": "mirror-1", "action": "end_session"})
    assert ended.status_code == 202
    while (cmd := a.commands.get(timeout=5)[0])["id"] != ended.json()["id"]:
        pass  # the earlier commands' copies
    assert (cmd["device"], cmd["action"]) == ("mirror-1", "end_session")
    assert api.post("/api/stores/store-a/commands",
                    json={"device": "agent", "action": "resend_from", "args": {"seq": 0}}).status_code == 422


def test_a_command_sent_from_the_cli_shows_its_action_device_and_time(console, tmp_path, mosquitto):
    hub, api, store = console
    a = store()
    a.status("online")
    a.health(**{"heartbeat-1": "online"})
    wait_for("store known", lambda: api.get("/api/stores/store-a").status_code == 200)
    with api.stream("GET", "/api/stream") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        cli = subprocess.run([sys.executable, "-m", "sync.hub", "cmd", "--broker", mosquitto.url, "--store", "store-a",
                              "--device", "heartbeat-1", "--action", "reopen", "--db", f"sqlite:///{tmp_path}/hub.db"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert cli.returncode == 0, cli.stderr
        answer = json.loads(cli.stdout)
        pushed = None
        for line in lines:  # the read timeout (10 s) bounds the wait
            if line.startswith("data:") and answer["id"] in line:
                pushed = next(c for c in json.loads(line[5:])["commands"] if c["id"] == answer["id"])
                break
    # The page is told the whole command, not only its answer ("? on ? – ago" before).
    assert (pushed["action"], pushed["device"], pushed["state"]) == ("reopen", "heartbeat-1", "ok")
    assert pushed["sent_at"] and pushed["answered_at"]
    [row] = [c for c in api.get("/api/stores/store-a").json()["commands"] if c["id"] == answer["id"]]
    assert (row["action"], row["device"], row["state"]) == ("reopen", "heartbeat-1", "ok")

    # Pointed at a database that is not there, the CLI still sends but makes no empty database.
    nowhere = tmp_path / "nowhere.db"
    cli = subprocess.run([sys.executable, "-m", "sync.hub", "cmd", "--broker", mosquitto.url, "--store", "store-a",
                          "--device", "heartbeat-1", "--action", "reopen", "--db", f"sqlite:///{nowhere}"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert cli.returncode == 0 and f"no hub database at {nowhere}" in cli.stderr
    assert not nowhere.exists()


def test_metrics_describe_every_store(console):
    hub, api, store = console
    a = store()
    a.status("online")
    a.health(**{"heartbeat-1": "offline", "printer-1": "online"})
    def scrape() -> str | None:
        text = api.get("/metrics").text
        return text if 'edge_hub_store_devices{state="offline",store="store-a"}' in text else None  # health came
    text = wait_for("store metrics", scrape)
    assert 'edge_hub_store_online{store="store-a"} 1.0' in text
    assert 'edge_hub_store_devices{state="offline",store="store-a"} 1.0' in text
    assert 'edge_hub_device_state{device="heartbeat-1",kind="sensor.heartbeat",state="offline",store="store-a"} 1.0' \
        in text
    assert "edge_hub_broker_connected 1.0" in text


def test_run_refuses_a_console_without_tokens_or_with_bad_rules(tmp_path, mosquitto, monkeypatch):
    monkeypatch.delenv("EDGE_HUB_CONSOLE_TOKEN", raising=False)
    base = [sys.executable, "-m", "sync.hub", "run", "--broker", mosquitto.url, "--db", f"sqlite:///{tmp_path}/h.db",
            "--http", f"127.0.0.1:{free_port()}"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2 and "needs at least one token" in r.stderr
    (tmp_path / "bad.yaml").write_text("rules: [{id: x, kind: device_state, for_s: soon}]")
    r = subprocess.run([*base, "--alert-rules", str(tmp_path / "bad.yaml")], capture_output=True, text=True,
                       timeout=30, cwd=ROOT, env={**os.environ, "EDGE_HUB_CONSOLE_TOKEN": "t"})
    assert r.returncode == 2 and "bad.yaml: rules.0.device_state.for_s" in r.stderr
