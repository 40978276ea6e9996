"""The hub's conflict alert on its console, in a real headless Chromium.

A real Mosquitto and ``edge-hub run --http`` with the shipped alert rules; a
store played by a plain paho client publishes its status, a health snapshot
and then two events at the same (stream, seq) with different ids, as two
copies of one store database would. The hub keeps the second event aside
(``conflicts``) and records a ``stream_conflict``; the console shows the
issue on the fleet row, raises the critical ``stream-conflict`` alert, lists
the event kept aside on the store page, and lets staff resolve the alert
once they have looked, without raising it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page, expect

from sync.localbroker import LocalMosquitto
from sync.topics import StoreTopics

from support.agent import free_port
from support.hubprocess import HubProcess

from browser.console_env import ROOT

pytestmark = pytest.mark.slow

TOKEN = "identity-browser-token"
STORE = "store-twin"
STREAM = "6b1f2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


@dataclass
class IdentityEnv:
    hub_url: str
    store: "PlainStore"
    shots: Path


class PlainStore:
    """A store as its agent speaks to the hub, with no agent: status, health, event batches."""

    def __init__(self, port: int, store: str):
        self.topics = StoreTopics(store)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{store}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, body: Any, retain: bool = False) -> None:
        self.client.publish(topic, json.dumps(body).encode(), qos=1, retain=retain).wait_for_publish(30)

    def hello(self) -> None:
        now = datetime.now(timezone.utc).isoformat()
        self.publish(self.topics.status, {"state": "online", "version": "0.1.0", "since": now, "stream": STREAM},
                     retain=True)
        self.publish(self.topics.health, {
            "time": now, "version": "0.1.0", "status": "ok", "reasons": [], "outbox_depth": 0,
            "oldest_unacked_age_s": 0, "clock_offset_s": 0.1,
            "devices": [{"id": "printer-1", "kind": "printer.escpos", "state": "online", "since": now,
                         "last_error": None, "counters": {}}]}, retain=True)

    def events(self, *seq_ids: tuple[int, str]) -> None:
        """One batch of sales at these (seq, id) of STREAM."""
        self.publish(self.topics.events, [
            {"specversion": "1.0", "id": id_, "source": self.topics.source, "type": "retail.sale.completed",
             "time": datetime.now(timezone.utc).isoformat(), "seq": seq, "stream": STREAM,
             "data": {"total": "1.00"}} for seq, id_ in seq_ids])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def identity_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityEnv]:
    tmp = tmp_path_factory.mktemp("identity")
    broker = LocalMosquitto(tmp / "mosquitto").start()
    made: list = []
    try:
        (tmp / "tokens").write_text(f"store-it:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
        http = free_port()
        hub = HubProcess(broker.url, f"sqlite:///{tmp}/hub.db", tmp / "hub.log")
        # The shipped rules (sync/console/rules.yaml): what a chain runs.
        hub.args += ["--http", f"127.0.0.1:{http}", "--console-tokens", str(tmp / "tokens")]
        made.append(hub.start())
        store = PlainStore(broker.port, STORE)
        made.append(store)
        shots = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else tmp / "shots"
        shots.mkdir(parents=True, exist_ok=True)
        yield IdentityEnv(f"http://127.0.0.1:{http}/", store, shots)
    finally:
        for part in reversed(made):
            part.close()
        broker.stop()


def api(env: IdentityEnv, path: str) -> Any:
    r = httpx.get(env.hub_url + "api/" + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def poll(read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{what} not within {timeout} s; last: {value}"
        time.sleep(0.2)  # poll interval of an HTTP read, not a synchronisation


def evaluations(env: IdentityEnv) -> int:
    r = httpx.get(env.hub_url + "metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    line = next(ln for ln in r.text.splitlines() if ln.startswith("edge_hub_alert_evaluations_total "))
    return int(float(line.split()[1]))


def sign_in(page: Page, url: str) -> None:
    page.goto(url)
    page.fill("#token", TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)


def shot(page: Page, env: IdentityEnv, name: str) -> None:
    page.wait_for_timeout(300)  # let the last frame paint: a screenshot, not a synchronisation
    page.screenshot(path=str(env.shots / f"{name}.png"), full_page=True)


def test_two_events_at_one_position_raise_the_conflict_alert_on_the_console(page: Page, identity_env: IdentityEnv):
    env = identity_env
    env.store.hello()
    sign_in(page, env.hub_url)
    row = page.locator(f'#fleet tr[data-store="{STORE}"]')
    expect(row).to_contain_text("1/1", timeout=30_000)
    expect(row.locator(".identity")).to_have_count(0)

    env.store.events((1, "sale-0001"), (2, "sale-0002"))
    poll(lambda: api(env, f"stores/{STORE}")["identity"], lambda i: i["streams"] == 1, 30, "the events stored")
    sent = time.monotonic()
    env.store.events((2, "sale-0002-from-the-other-copy"))  # the same position, another event

    # Live, without a reload: the row names the problem, the alert sits on top of the fleet.
    expect(row.locator(".identity")).to_have_text("stream conflict: event kept aside", timeout=60_000)
    alert = page.locator('#fleet-alerts tr.alert[data-rule="stream-conflict"]')
    expect(alert).to_be_visible(timeout=60_000)
    print(f"conflicting event published -> alert on the page: {time.monotonic() - sent:.1f} s")
    expect(alert.locator(".sev")).to_have_text("critical")
    expect(alert).to_contain_text("stream conflict: event kept aside")
    expect(alert).to_contain_text("sale-0002-from-the-other-copy")
    expect(page.locator("#identity-total")).to_contain_text("1 store with identity issues")
    shot(page, env, "identity-fleet")

    page.goto(f"{env.hub_url}#/store/{STORE}")
    ident = page.locator("#identity")
    expect(ident.locator("#identity-summary")).to_contain_text("1 open issue")
    expect(ident.locator("#identity-summary")).to_contain_text("1 event kept aside as a conflict")
    issue = ident.locator('.identity-issue[data-code="stream_conflict"]')
    expect(issue).to_contain_text(f"seq 2 of stream {STREAM}")
    expect(issue).to_contain_text(f'"edge-hub identity {STORE}"')  # what staff should do next
    kept = ident.locator("#conflicts tbody tr")
    expect(kept).to_have_count(1)
    expect(kept).to_contain_text("sale-0002-from-the-other-copy")
    expect(kept).to_contain_text("sale-0002")
    store_alert = page.locator('#store-alerts tr.alert[data-rule="stream-conflict"]')
    expect(store_alert).to_be_visible()
    shot(page, env, "identity-store")

    # Staff looked: they resolve it, the hub closes the issue (the conflicting event stays kept aside), and it
    # stays resolved.
    store_alert.locator('button[data-act="resolve"]').click()
    expect(page.locator('#store-alerts tr.alert.resolved[data-rule="stream-conflict"]')).to_have_count(1)
    passes = evaluations(env)
    poll(lambda: evaluations(env), lambda n: n >= passes + 2, 60, "two more evaluation passes")
    live = [a for a in api(env, f"alerts?store={STORE}") if a["rule"] == "stream-conflict"]
    assert live == []
    assert api(env, "fleet")["stores"][0]["identity"]["open"] == 0  # closed at the hub too
    page.reload()
    expect(ident.locator("#identity-summary")).to_contain_text("1 event kept aside as a conflict")
    expect(kept).to_have_count(1)
