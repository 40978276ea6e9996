"""Fleet operations in the hub console, in headless Chromium against a real hub (``edge-hub run --http``), a real
Mosquitto and simulated stores: each store's release and devices.yaml version with its drift in the fleet (the
filter finds them), the store's "Configuration and release", and #/rollouts with a rollout's progress per wave
and its actions; staff halt it and roll it back from the page, and the API then lists both actions under the
staff member's name.

Six stores answer update messages as agents do (support/simstore.py). A first rollout, of a release that makes
its canary degraded, halts and rolls back by itself; the second is started with ``edge-hub rollout start`` and a
soak of an hour, so it stays on its canary, one store updated of six. Three more stores report their
devices.yaml: one drifted at the store (and the hub's newest version refused), one rolled back, one with the
hub's newest version not answered yet (pending). Every wait in the page is Playwright's
expect(); the hub's side is polled with a deadline. With ``EDGE_DOCS_SCREENSHOTS=1`` the pictures go to docs/
(console-fleet-ops.png, console-store-ops.png, console-rollouts.png); otherwise to the test's temp dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from browser.console_env import HUB_TOKEN, ROOT
from support.agent import free_port
from support.hubprocess import HubProcess
from support.simstore import SimStores
from support.storepcs import wait_for
from sync.hub import cli as hub_cli
from sync.hub.broker import make_client, parse_broker_url
from sync.hub.db import open_db
from sync.hub.fleet import desired
from sync.localbroker import LocalMosquitto
from sync.topics import ConfigResult, ConfigVersion, StoreTopics

pytestmark = pytest.mark.slow

STAFF = "store-it"
OLD, BAD, NEW = "0.1.0", "0.1.9", "0.2.0"
SHA_OLD, SHA_BAD, SHA_NEW = (hashlib.sha256(f"manifest {v}".encode()).hexdigest() for v in (OLD, BAD, NEW))
BASE = "http://127.0.0.1:8090/releases/"
SIMS = [f"store-{i:03d}" for i in range(101, 107)]
CANARY = "store-103"
DRIFTED, ROLLED_BACK, PENDING = "store-200", "store-201", "store-202"
REFUSED = "devices.yaml (hub version 2):7: devices[1].address: expected HOST:PORT"


@dataclass
class Ops:
    url: str
    db_url: str
    api: httpx.Client
    rollout: str
    bad: str
    sims: SimStores
    shots: Path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def publish_store(broker_url: str, store: str, config: dict, reasons: list[dict], answer: ConfigResult | None) -> None:
    """A store as its agent reports it: retained status and health (with its ``config``), and its word on a
    version of its devices.yaml."""
    t = StoreTopics(store)
    client = make_client(parse_broker_url(broker_url), f"ops-{store}-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", parse_broker_url(broker_url).port)
    client.loop_start()
    try:
        dev = {"id": "printer-1", "kind": "printer.escpos", "state": "online", "since": _now(), "last_error": None,
               "counters": {}, "actions": ["reopen"]}
        health = {"store": store, "version": OLD, "time": _now(), "devices": [dev], "status": "ok",
                  "reasons": reasons, "outbox_depth": 0, "config": config}
        msgs = [(t.status, {"state": "online", "version": OLD, "since": _now()}, True), (t.health, health, True)]
        if answer is not None:
            msgs.append((t.config_res, json.loads(answer.wire()), False))
        for topic, body, retain in msgs:
            client.publish(topic, json.dumps(body).encode(), qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    tmp = tmp_path_factory.mktemp("fleet-ops")
    broker = LocalMosquitto(tmp / "mosquitto").start()
    db_url = f"sqlite:///{tmp}/hub.db"
    made: list = []
    try:
        (tmp / "tokens").write_text(f"{STAFF}:{hashlib.sha256(HUB_TOKEN.encode()).hexdigest()}\n")
        http = free_port()
        hub = HubProcess(broker.url, db_url, tmp / "hub.log")
        hub.args += ["--http", f"127.0.0.1:{http}", "--console-tokens", str(tmp / "tokens")]
        made.append(hub.start())
        sims = SimStores(broker.url, SIMS, OLD, bad_versions=(BAD,)).start()
        made.append(sims)
        db = open_db(db_url)
        try:
            # The hub keeps two versions of the drifted store's devices.yaml; the store refused the second.
            for text in ("store: {id: store-200}\n", "store: {id: store-200}\ndevices: []\n"):
                desired.store_version(db, DRIFTED, text, "dana")
            drift_reason = {"code": "config_drift", "subject": "config",
                            "message": "the config file was changed here after hub version 1 was applied"}
            publish_store(broker.url, DRIFTED, {"version": 1, "sha256": SHA_OLD, "drift": True, "state": "applied"},
                          [drift_reason], ConfigResult(version=2, ok=False, state="refused", errors=[REFUSED],
                                                       in_force=ConfigVersion(version=1, sha256=SHA_OLD),
                                                       at=datetime.now(timezone.utc)))
            publish_store(broker.url, ROLLED_BACK, {"version": 3, "sha256": SHA_OLD, "drift": False,
                                                    "state": "rolled_back"}, [], None)
            for text in ("store: {id: store-202}\n", "store: {id: store-202}\ndevices: []\n"):
                desired.store_version(db, PENDING, text, "dana")
            publish_store(broker.url, PENDING, {"version": 1, "sha256": SHA_OLD, "drift": False, "state": "applied"},
                          [], None)
            wait_for("the hub knows every store and the refusal", lambda: len(db.query(
                "SELECT store FROM stores WHERE status_version = ? AND health IS NOT NULL", (OLD,))) == 9
                and db.query("SELECT state FROM config_results WHERE store = ?", (DRIFTED,)) == [("refused",)], 30)
        finally:
            db.close()
        def start(version: str, sha: str, soak_s: str) -> None:
            assert hub_cli.main(["rollout", "start", version, "--base-url", f"{BASE}{version}/", "--manifest-sha256",
                                 sha, "--previous-manifest", f"{OLD}={SHA_OLD}", "--stores", ",".join(SIMS),
                                 "--canary", CANARY, "--waves", "1,50%,100%", "--soak-s", soak_s, "--by", "dana",
                                 "--db", db_url, "--broker", broker.url]) == 0
        folder = ROOT / "docs" if os.environ.get("EDGE_DOCS_SCREENSHOTS") == "1" else tmp
        with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=10,
                          headers={"Authorization": f"Bearer {HUB_TOKEN}"}) as api:
            def newest() -> dict:
                return api.get("/api/rollouts").json()["rollouts"][0]
            start(BAD, SHA_BAD, "0")
            bad = wait_for("the bad release rolled back by itself", lambda: (r := newest())["rolled_back_at"]
                           and sims.running[CANARY] == OLD and r, 60)
            wait_for("the canary is healthy again", lambda: api.get(f"/api/stores/{CANARY}").json()
                     ["summary"]["status"] == "ok", 30)
            start(NEW, SHA_NEW, "3600")
            first = wait_for("the canary is updated", lambda: (r := newest())["version"] == NEW
                             and r["waves"][0]["healthy"] == 1 and r, 60)
            yield Ops(f"http://127.0.0.1:{http}/", db_url, api, first["id"], bad["id"], sims, folder)
    finally:
        for part in reversed(made):
            part.close() if hasattr(part, "close") else part.stop()
        broker.stop()


def sign_in(page: Page, url: str) -> None:
    page.goto(url)
    page.fill("#token", HUB_TOKEN)
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).to_have_text(STAFF)


def test_the_fleet_shows_release_config_and_drift_and_the_filter_finds_them(ops: Ops, page: Page) -> None:
    sign_in(page, ops.url)
    drifted = page.locator(f'#fleet tr[data-store="{DRIFTED}"]')
    expect(drifted.locator("td.config")).to_have_text("v1 drift v2 refused")
    expect(drifted.locator("td.release")).to_have_text(OLD)
    expect(page.locator(f'#fleet tr[data-store="{ROLLED_BACK}"] td.config')).to_have_text("v3 rolled back")
    expect(page.locator(f'#fleet tr[data-store="{PENDING}"] td.config')).to_have_text("v1 v2 pending")
    expect(page.locator(f'#fleet tr[data-store="{CANARY}"] td.release')).to_have_text(NEW)
    expect(page.locator("#release-total")).to_contain_text(f"{OLD} 8 · {NEW} 1")
    expect(page.locator("#config-total")).to_have_text("config: drift 1 not applied as sent 2 pending 1")
    page.screenshot(path=str(ops.shots / "console-fleet-ops.png"), full_page=True)

    visible = page.locator("#fleet tbody tr:visible")
    for words, stores in (("drift", [DRIFTED]), (NEW, [CANARY]), ("rolled back", [ROLLED_BACK]),
                          ("refused", [DRIFTED]), ("pending", [PENDING]), ("v1", [DRIFTED, PENDING]),
                          ("config", [DRIFTED, ROLLED_BACK, PENDING])):
        page.fill("#filter", words)
        expect(visible).to_have_count(len(stores))
        assert sorted(visible.evaluate_all("rows => rows.map(r => r.dataset.store)")) == stores, words
    page.fill("#filter", "")
    page.check("#problems")  # a drift or a config not applied as sent is a problem to look at
    expect(page.locator(f'#fleet tr[data-store="{DRIFTED}"]')).to_be_visible()
    expect(page.locator(f'#fleet tr[data-store="{ROLLED_BACK}"]')).to_be_visible()
    expect(page.locator(f'#fleet tr[data-store="{SIMS[0]}"]')).to_be_hidden()
    expect(page.locator(f'#fleet tr[data-store="{PENDING}"]')).to_be_hidden()  # on its way: not a problem

    # A version pushed comes in no snapshot: the page reads the hub's side again by itself.
    page.uncheck("#problems")
    db = open_db(ops.db_url)
    try:
        desired.store_version(db, PENDING, "store: {id: store-202}\ndevices: [] # 3\n", "dana")
    finally:
        db.close()
    expect(page.locator(f'#fleet tr[data-store="{PENDING}"] td.config')).to_have_text("v1 v3 pending")


def test_a_store_shows_its_config_in_force_the_hubs_newest_and_its_release(ops: Ops, page: Page) -> None:
    sign_in(page, ops.url)
    page.goto(f"{ops.url}#/store/{DRIFTED}")
    block = page.locator("#ops")
    expect(block.locator("#cfg-in-force")).to_have_text("version 1")
    expect(block.locator("#cfg-drift")).to_contain_text("the file was edited at the store, seen for")
    expect(block.locator("#cfg-desired")).to_have_text("hub's newest: version 2 not in force")
    expect(block.locator("#cfg-answer")).to_have_text("version 2: refused")
    expect(block).to_contain_text(REFUSED)
    expect(block.locator("#release-running")).to_have_text(OLD)
    expect(block).to_contain_text("in no rollout yet")
    page.screenshot(path=str(ops.shots / "console-store-ops.png"), full_page=True)

    page.goto(f"{ops.url}#/store/{CANARY}")
    expect(page.locator("#release-running")).to_have_text(NEW)
    expect(page.locator("#release-update")).to_contain_text(f"rollout {ops.rollout} asked for {NEW}: healthy")


def test_staff_follow_a_rollout_then_halt_and_roll_it_back_under_their_name(ops: Ops, page: Page) -> None:
    sign_in(page, ops.url)
    page.click('a[data-nav="rollouts"]')
    card = page.locator(f'.rollout[data-id="{ops.rollout}"]')
    expect(card).to_have_attribute("data-state", "running")
    expect(card.locator(".ro-count")).to_have_text("1 of 6 stores updated")
    expect(card.locator('.wave[data-wave="1"] .wave-count')).to_have_text("1/1 updated")
    expect(card.locator('.wave[data-wave="2"] .wave-count')).to_have_text("0/2 updated")
    expect(card.locator(f'.ro-stores tr[data-store="{CANARY}"]')).to_contain_text("healthy")
    expect(card.locator('.ro-actions tr[data-action="start"] td.by')).to_have_text("dana")
    # The rollout before it, below: halted and rolled back by the hub itself, and why; its store lines folded.
    older = page.locator(".rollout").nth(1)
    expect(older).to_have_attribute("data-id", ops.bad)
    expect(older).to_have_attribute("data-state", "rolled back")
    expect(older.locator(".ro-reason")).to_contain_text(f"halted by itself: {CANARY} degraded: device_offline heartbeat-1")
    expect(older.locator('.ro-actions tr[data-action="rollback"] td.by')).to_have_text("edge-hub (automatic)")
    expect(older.locator(f'.ro-stores tr[data-store="{CANARY}"]')).to_be_hidden()

    card.locator('button[data-ro-act="halt"]').click()
    expect(card.locator(".confirm")).to_contain_text("No store is asked anything more")
    card.locator('button[data-ro-act="cancel"]').click()
    expect(card.locator(".confirm")).to_have_count(0)
    assert ops.api.get("/api/rollouts", params={"id": ops.rollout}).json()["rollouts"][0]["state"] == "running"

    card.locator('button[data-ro-act="halt"]').click()
    card.locator('button[data-ro-act="confirm"]').click()
    expect(card).to_have_attribute("data-state", "halted")
    expect(card.locator(".ro-reason")).to_have_text(f"halted by {STAFF}")
    expect(card.locator('.ro-actions tr[data-action="halt"] td.by')).to_have_text(STAFF)
    expect(card.locator('button[data-ro-act="resume"]')).to_be_visible()
    r = ops.api.get("/api/rollouts", params={"id": ops.rollout}).json()["rollouts"][0]
    assert (r["state"], r["actions"][-1]["action"], r["actions"][-1]["by"]) == ("halted", "halt", STAFF)
    page.screenshot(path=str(ops.shots / "console-rollouts.png"), full_page=True)

    card.locator('button[data-ro-act="rollback"]').click()
    expect(card.locator(".confirm")).to_contain_text("asked for the release it ran before")
    card.locator('button[data-ro-act="confirm"]').click()
    expect(card).to_have_attribute("data-state", "rolled back")
    expect(card.locator('.ro-actions tr[data-action="rollback"] td.by')).to_have_text(STAFF)
    expect(card.locator('button[data-ro-act]')).to_have_count(0)  # a rollout rolled back is over
    r = ops.api.get("/api/rollouts", params={"id": ops.rollout}).json()["rollouts"][0]
    assert [(a["action"], a["by"]) for a in r["actions"]] == [("start", "dana"), ("halt", STAFF), ("rollback", STAFF)]
    # The hub sends the canary back to the release it ran before, and the page follows it there.
    wait_for("the canary runs its previous release again", lambda: ops.sims.running[CANARY] == OLD, 30)
    expect(card.locator(f'.ro-stores tr[data-store="{CANARY}"] td').nth(4)).to_have_text(OLD)
