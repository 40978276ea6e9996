"""The hub console offers each device the actions its store's snapshot lists, in a real headless Chromium.

A real Mosquitto and ``edge-hub run --http``; a store played by a plain paho
client publishes a health snapshot whose devices carry ``actions`` as the
agent's supervisor sends them (each driver declares its own, drivers/base.py),
and answers the commands it is sent. The console has no table of actions by
kind: the mirror's ``end_session`` and the pole display's ``clear_display``
are buttons because the snapshot says so, a device whose snapshot lists no
actions gets ``reopen`` only, and a click goes out on ``hub/{store}/cmd``.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, expect

from sync.localbroker import LocalMosquitto
from sync.topics import CommandResult, StoreTopics

from support.agent import free_port
from support.hubprocess import HubProcess

from browser.console_env import ROOT

pytestmark = pytest.mark.slow

TOKEN = "actions-browser-token"
STORE = "store-act"


class SnapshotStore:
    """A store as its agent speaks to the hub: status, one health snapshot, answers to commands."""

    def __init__(self, port: int, store: str):
        self.topics = StoreTopics(store)
        self.commands: queue.Queue[dict] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{store}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(self.topics.downlink["cmd"], 1)
        assert subscribed.wait(30)

    def _on_message(self, client, userdata, msg) -> None:
        cmd = json.loads(msg.payload)
        self.commands.put(cmd)
        res = CommandResult(id=cmd["id"], ok=True, result={"done": cmd["action"], "device": cmd["device"]})
        client.publish(self.topics.cmd_res, res.wire(), qos=1)

    def publish(self, topic: str, body: Any, retain: bool = False) -> None:
        self.client.publish(topic, json.dumps(body).encode(), qos=1, retain=retain).wait_for_publish(30)

    def hello(self) -> None:
        now = datetime.now(timezone.utc).isoformat()

        def device(id_: str, kind: str, actions: list[str] | None) -> dict:
            d = {"id": id_, "kind": kind, "state": "online", "since": now, "last_error": None, "counters": {}}
            return d if actions is None else {**d, "actions": actions}

        self.publish(self.topics.status, {"state": "online", "version": "0.1.0", "since": now}, retain=True)
        self.publish(self.topics.health, {
            "time": now, "version": "0.1.0", "status": "ok", "reasons": [], "outbox_depth": 0,
            "oldest_unacked_age_s": 0, "clock_offset_s": 0.1,
            "devices": [device("mirror-1", "mirror.camera", ["reopen", "end_session"]),
                        device("pole-1", "display.pole", ["reopen", "clear_display"]),
                        device("printer-1", "printer.escpos", None)]}, retain=True)  # from an older agent

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class ActionsEnv:
    hub_url: str
    store: SnapshotStore
    shots: Path


@pytest.fixture(scope="module")
def actions_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionsEnv]:
    tmp = tmp_path_factory.mktemp("actions")
    broker = LocalMosquitto(tmp / "mosquitto").start()
    made: list = []
    try:
        (tmp / "tokens").write_text(f"store-it:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
        http = free_port()
        hub = HubProcess(broker.url, f"sqlite:///{tmp}/hub.db", tmp / "hub.log")
        hub.args += ["--http", f"127.0.0.1:{http}", "--console-tokens", str(tmp / "tokens")]
        made.append(hub.start())
        store = SnapshotStore(broker.port, STORE)
        made.append(store)
        shots = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else tmp / "shots"
        shots.mkdir(parents=True, exist_ok=True)
        yield ActionsEnv(f"http://127.0.0.1:{http}/", store, shots)
    finally:
        for part in reversed(made):
            part.close()
        broker.stop()


def test_the_console_offers_what_the_snapshot_says_and_sends_it(page: Page, actions_env: ActionsEnv):
    env = actions_env
    env.store.hello()
    page.goto(f"{env.hub_url}#/store/{STORE}")
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)

    def buttons(device: str):
        return page.locator(f'#devices tr[data-device="{device}"] button[data-act="command"]')

    expect(buttons("mirror-1")).to_have_text(["Reopen", "End session"], timeout=30_000)
    expect(buttons("pole-1")).to_have_text(["Reopen", "Clear display"])
    # No actions in its snapshot: what every device has, not what the console might guess from its kind.
    expect(buttons("printer-1")).to_have_text(["Reopen"])

    page.click('#devices tr[data-device="mirror-1"] button[data-action="end_session"]')
    done = page.locator('.command[data-state="ok"]', has_text="End session")
    expect(done).to_contain_text('"done": "end_session"', timeout=30_000)
    cmd = env.store.commands.get(timeout=30)
    assert (cmd["device"], cmd["action"]) == ("mirror-1", "end_session")
    page.wait_for_timeout(300)  # let the last frame paint: a screenshot, not a synchronisation
    page.screenshot(path=str(env.shots / "console-actions.png"), full_page=True)
