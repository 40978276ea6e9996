"""Staged rollouts end to end: the real hub (HubService on SQLite, once on PostgreSQL), real Mosquitto, twenty
simulated stores (support/simstore.py) answering ``hub/{store}/update`` as agents do; ``edge-hub rollout`` as the
CLI's own ``main``. Waits are on the hub's database or the stores' state, each with a deadline; the engine's
timing rules (soak, the offline grace) are also run with an injected clock, without a broker.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from support.agent import free_port
from support.hubprocess import HubProcess
from support.simstore import SimStores, retained_updates
from support.storepcs import wait_for
from sync.hub import cli as hub_cli
from sync.hub.db import HubDB, open_db
from sync.hub.fleet import rollout, rollout_engine, rollout_status
from sync.hub.service import HubService
from sync.topics import UpdateResult

STORES = [f"store-{i:02d}" for i in range(1, 21)]
OLD, NEW = "0.1.0", "0.2.0"
SHA_OLD = hashlib.sha256(b"manifest 0.1.0").hexdigest()
SHA_NEW = hashlib.sha256(b"manifest 0.2.0").hexdigest()
BASE = "http://127.0.0.1:8090/releases/"


class Rig:
    """The hub in this process on ``db_url``, and the twenty stores."""

    def __init__(self, broker, db_url: str, bad_versions: tuple[str, ...] = ()):
        self.broker, self.db_url = broker, db_url
        self.client_id = f"hub-{uuid.uuid4().hex[:6]}"
        self.hub = self.start_hub()
        self.sims = SimStores(broker.url, STORES, OLD, bad_versions).start()
        self.db = open_db(db_url)
        wait_for("the hub knows every store's version", lambda: len(self.db.query(
            "SELECT store FROM stores WHERE status_version = ? AND health IS NOT NULL", (OLD,))) == len(STORES), 30)

    def start_hub(self) -> HubService:
        hub = HubService(self.broker.url, self.db_url, client_id=self.client_id, rollout_every=0.2)
        hub.start()
        assert hub.wait_ready(20), hub.fatal
        return hub

    def cli(self, capsys, *argv: str) -> tuple[int, str]:
        code = hub_cli.main(["rollout", *argv, "--db", self.db_url])
        out = capsys.readouterr()
        return code, out.out + out.err

    def start(self, capsys, soak_s: float = 1.0) -> str:
        code, out = self.cli(capsys, "start", NEW, "--base-url", f"{BASE}{NEW}/", "--manifest-sha256", SHA_NEW,
                             "--canary", "store-07", "--waves", "1,25%,100%", "--soak-s", str(soak_s),
                             "--previous-manifest", f"{OLD}={SHA_OLD}", "--by", "alice", "--broker", self.broker.url)
        assert code == 0, out
        return out.split()[1]

    def view(self, rid: str) -> rollout_status.RolloutView:
        return rollout_status.views(self.db, rid)[0]

    def close(self) -> None:
        self.sims.stop()
        self.hub.stop()
        self.db.close()


@pytest.fixture
def rig_bad(mosquitto, db_url) -> Iterator[Rig]:
    rig = Rig(mosquitto, db_url, bad_versions=(NEW,))
    yield rig
    rig.close()


@pytest.fixture
def rig(mosquitto, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(mosquitto, f"sqlite:///{tmp_path}/hub.db")
    yield rig
    rig.close()


def test_a_release_that_degrades_the_canary_halts_after_it_rolls_it_back_and_touches_no_other_store(rig_bad, capsys):
    rid = rig_bad.start(capsys, soak_s=30)  # the halt ends the wait; a long soak keeps a slow machine from moving on
    v = wait_for("the rollout halts", lambda: (x := rig_bad.view(rid)).state == rollout_engine.HALTED and x, 60)
    assert "store-07 degraded" in v.reason and "device_offline" in v.reason and v.rolled_back_at
    # The canary got the release, then its previous one, retained, naming the rollout.
    wait_for("the canary runs its previous version", lambda: rig_bad.sims.running["store-07"] == OLD, 30)
    assert [(ver, r) for ver, r, _ in rig_bad.sims.received["store-07"]] == [(NEW, rid), (OLD, rid)]
    retained = retained_updates(rig_bad.broker.url)
    assert list(retained) == ["store-07"]
    assert retained["store-07"] == {"version": OLD, "base_url": f"{BASE}{OLD}/", "manifest_sha256": SHA_OLD,
                                    "rollout": rid, "by": "alice"}
    # The other nineteen never heard of it and run what they ran.
    others = [s for s in STORES if s != "store-07"]
    assert all(rig_bad.sims.received[s] == [] for s in others)
    assert all(rig_bad.sims.running[s] == OLD for s in others)
    assert {r[0] for r in rig_bad.db.query("SELECT status_version FROM stores WHERE store <> 'store-07'")} == {OLD}
    assert v.wave == 0 and [s.store for s in v.stores if s.asked] == ["store-07"]
    assert [(a[1], a[2]) for a in v.actions] == [("alice", "start"), (rollout_engine.ENGINE, "rollback")]
    # The hub keeps the canary's latest word; the status table says it all.
    wait_for("the hub has the canary back on its previous version", lambda: rig_bad.db.query(
        "SELECT version, state, running FROM update_results WHERE store = 'store-07'") == [(OLD, "healthy", OLD)], 30)
    code, out = rig_bad.cli(capsys, "status", rid)
    assert code == 0 and f"rollout {rid}: {NEW}, halted (halted by itself: store-07 degraded" in out
    assert "store-07" in out and "store-08" in out
    # A halted, rolled-back rollout does not resume; a new one may start for the same stores.
    code, out = rig_bad.cli(capsys, "resume", rid, "--by", "bob")
    assert code == 1 and "rolled back" in out


def test_a_good_release_goes_through_every_wave_to_all_twenty_stores(rig, capsys):
    rid = rig.start(capsys)
    v = wait_for("the rollout is done", lambda: (x := rig.view(rid)).state == rollout_engine.DONE and x, 90)
    assert all(rig.sims.running[s] == NEW for s in STORES)
    assert all([ver for ver, _, _ in rig.sims.received[s]] == [NEW] for s in STORES)
    # Waves of 1, 4 (25% of 20 in all) and 15, the canary first; each started after the one before soaked.
    sizes = [0, 0, 0]
    for s in v.stores:
        sizes[s.wave] += 1
    assert sizes == [1, 4, 15] and [s.store for s in v.stores if s.wave == 0] == ["store-07"]
    assert [a[2] for a in v.actions] == ["start", "wave", "wave", "done"]
    starts = {s.wave: s for s in v.stores}
    assert starts[0].healthy_at <= v.actions[1][0] and starts[1].healthy_at <= v.actions[2][0]
    assert set(retained_updates(rig.broker.url)) == set(STORES)
    body = v.as_dict()
    assert [(w["wave"], len(w["stores"]), w["healthy"]) for w in body["waves"]] == [(1, 1, 1), (2, 4, 4), (3, 15, 15)]
    code, out = rig.cli(capsys, "status")
    assert code == 0 and rid in out and "done" in out


def test_a_hub_restarted_mid_rollout_carries_it_on(rig, capsys):
    rig.sims.held.update(s for s in STORES if s != "store-07")  # wave 2 keeps downloading
    rid = rig.start(capsys)
    wait_for("wave 2 asked", lambda: rig.view(rid).wave == 1, 60)
    wait_for("wave 2 got the update", lambda: sum(1 for s in STORES if rig.sims.received[s]) == 5, 30)
    rig.hub.stop()
    rig.sims.release()  # they answer while the hub is away: the broker keeps it for the hub's session
    rig.hub = rig.start_hub()
    v = wait_for("the restarted hub finishes the rollout", lambda: (x := rig.view(rid)).state == rollout_engine.DONE and x, 90)
    assert all(rig.sims.running[s] == NEW for s in STORES)
    assert all(len(rig.sims.received[s]) == 1 for s in STORES)
    assert [a[2] for a in v.actions] == ["start", "wave", "wave", "done"]


# The engine's rules, with an injected clock ------------------------------------------------

def _stores(db: HubDB, names: list[str], now: datetime) -> None:
    with db.transaction() as tx:
        for s in names:
            tx.set_status(s, "online", OLD, now.isoformat())
            tx.set_health(s, json.dumps({"status": "ok", "reasons": []}))


def _say(db: HubDB, store: str, rid: str, state: str, version: str = NEW, running: str = NEW) -> None:
    with db.transaction() as tx:
        rollout_engine.record_result(tx, store, UpdateResult(version=version, rollout=rid, state=state, running=running,
                                                      at=datetime.now(timezone.utc)))


def _collect(db: HubDB) -> dict[str, dict]:
    """The update messages the engine has to send, as a broker that takes them all would get them."""
    out: dict[str, dict] = {}

    def take(topic: str, payload: bytes) -> bool:
        out[topic] = json.loads(payload)
        return True
    rollout_engine.send_pending(db, take)
    return out


def test_soak_and_the_offline_grace_follow_the_clock_and_the_operator_is_recorded(tmp_path):
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    now = datetime.now(timezone.utc)
    _stores(db, ["s-1", "s-2", "s-3"], now)
    with pytest.raises(rollout.RolloutError, match="--previous-manifest"):
        rollout.start(db, NEW, f"{BASE}{NEW}/", SHA_NEW, by="ops")
    rid = rollout.start(db, NEW, f"{BASE}{NEW}/", SHA_NEW, waves="1,100%", soak_s=60, grace_s=30, by="ops",
                        previous={OLD: SHA_OLD})
    with pytest.raises(rollout.RolloutError, match="still running"):
        rollout.start(db, NEW, f"{BASE}{NEW}/", SHA_NEW, previous={OLD: SHA_OLD})
    assert list(_collect(db)) == ["hub/s-1/update"]
    assert rollout_engine.send_pending(db, lambda t, p: True) == 0  # sent once
    _say(db, "s-1", rid, "healthy")
    rollout_engine.tick(db, now)
    assert rollout_status.views(db, rid)[0].wave == 0
    rollout_engine.tick(db, datetime.now(timezone.utc) + timedelta(seconds=30))
    assert rollout_status.views(db, rid)[0].wave == 0  # not soaked yet
    rollout_engine.tick(db, datetime.now(timezone.utc) + timedelta(seconds=61))
    assert rollout_status.views(db, rid)[0].wave == 1
    rollout.halt(db, rid, "carol")
    rollout_engine.tick(db, datetime.now(timezone.utc) + timedelta(seconds=600))
    assert rollout_status.views(db, rid)[0].state == rollout_engine.HALTED
    rollout.resume(db, rid, "carol")
    # s-2 drops off; within the grace nothing happens, after it the rollout halts and rolls back.
    later = datetime.now(timezone.utc)
    with db.transaction() as tx:
        tx.set_status("s-2", "offline", None, later.isoformat())
    rollout_engine.tick(db, later + timedelta(seconds=20))
    assert rollout_status.views(db, rid)[0].state == rollout_engine.RUNNING
    rollout_engine.tick(db, later + timedelta(seconds=31))
    v = rollout_status.views(db, rid)[0]
    assert v.state == rollout_engine.HALTED and "s-2 offline" in v.reason
    assert [(a[1], a[2]) for a in v.actions] == [("ops", "start"), (rollout_engine.ENGINE, "wave"), ("carol", "halt"),
                                                 ("carol", "resume"), (rollout_engine.ENGINE, "rollback")]
    msgs = _collect(db)
    assert {t: m["version"] for t, m in msgs.items()} == {f"hub/{s}/update": OLD for s in ("s-1", "s-2", "s-3")}
    db.close()


def test_a_store_that_says_rolled_back_halts_the_rollout_and_bad_input_is_refused(tmp_path):
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    _stores(db, ["s-1", "s-2"], datetime.now(timezone.utc))
    rid = rollout.start(db, NEW, f"{BASE}{NEW}/", SHA_NEW, soak_s=0, by="ops", previous={OLD: SHA_OLD})
    _say(db, "s-1", rid, "rolled_back", running=OLD)
    for who, which in (("s-1", "r-made-up"), ("s-9", rid)):  # a rollout the store is not in: not kept
        with db.transaction() as tx:
            assert not rollout_engine.record_result(tx, who, UpdateResult(version=NEW, rollout=which, state="healthy",
                                                                   running=NEW, at=datetime.now(timezone.utc)))
    assert db.query("SELECT store, rollout FROM update_results") == [("s-1", rid)]
    rollout_engine.tick(db)
    v = rollout_status.views(db, rid)[0]
    assert v.state == rollout_engine.HALTED and "s-1 reported rolled_back" in v.reason
    assert [s.asked for s in v.stores] == [OLD, None]
    for waves in ("0", "150%", "a", ",".join(["1"] * 30)):
        with pytest.raises(rollout.RolloutError):
            rollout.parse_waves(waves)
    with pytest.raises(rollout.RolloutError, match="valid update message"):
        rollout.start(db, "../x", f"{BASE}x/", SHA_NEW)
    with db.transaction() as tx:
        tx.set_status("s-2", "online", NEW, datetime.now(timezone.utc).isoformat())
    with pytest.raises(rollout.RolloutError, match="runs 0.2.0 already"):
        rollout.start(db, NEW, f"{BASE}{NEW}/", SHA_NEW, stores="s-2")
    with pytest.raises(rollout.RolloutError, match="no version known"):
        rollout.start(db, NEW, f"{BASE}{NEW}/", SHA_NEW, stores="s-1,s-9", previous={OLD: SHA_OLD})
    assert rollout.plan_waves([f"s-{i}" for i in range(10)], "s-5", ["1", "25%", "100%"]) == [
        ["s-5"], ["s-0", "s-1"], ["s-2", "s-3", "s-4", "s-6", "s-7", "s-8", "s-9"]]
    db.close()


def test_edge_hub_run_moves_a_rollout_on_and_its_console_shows_it(mosquitto, tmp_path, capsys):
    """``edge-hub run --http`` as a process: its engine needs no operator, ``GET /api/rollouts`` shows progress."""
    db_url, port, token = f"sqlite:///{tmp_path}/hub.db", free_port(), "rollout-console-token"
    hub = HubProcess(mosquitto.url, db_url, tmp_path / "hub.log", env={"EDGE_HUB_CONSOLE_TOKEN": token})
    hub.args += ["--http", f"127.0.0.1:{port}"]
    hub.start()
    stores = STORES[:3]
    sims = SimStores(mosquitto.url, stores, OLD).start()
    db = open_db(db_url)
    try:
        wait_for("the hub knows the stores", lambda: len(db.query(
            "SELECT store FROM stores WHERE status_version = ? AND health IS NOT NULL", (OLD,))) == 3, 30)
        assert hub_cli.main(["rollout", "start", NEW, "--base-url", f"{BASE}{NEW}/", "--manifest-sha256", SHA_NEW,
                             "--waves", "1,100%", "--soak-s", "0.5", "--previous-manifest", f"{OLD}={SHA_OLD}",
                             "--by", "dana", "--db", db_url, "--broker", mosquitto.url]) == 0
        rid = capsys.readouterr().out.split()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            body = wait_for("the console shows the rollout done", lambda: (
                b := api.get("/api/rollouts").json())["rollouts"][0]["state"] == "done" and b, 60)
            r = body["rollouts"][0]
            assert r["id"] == rid and r["version"] == NEW and r["created_by"] == "dana"
            assert [(w["wave"], w["asked"], w["healthy"]) for w in r["waves"]] == [(1, 1, 1), (2, 2, 2)]
            assert {s["running"] for w in r["waves"] for s in w["stores"]} == {NEW}
            assert [a["action"] for a in r["actions"]] == ["start", "wave", "done"]
            assert api.get("/api/rollouts", params={"id": rid}).json()["rollouts"][0]["id"] == rid
            assert api.get("/api/rollouts", params={"id": "r-nothing"}).status_code == 404
            assert api.get("/api/rollouts", params={"limit": 1000}).status_code == 422
            assert api.get("/api/rollouts", params={"id": "x" * 65}).status_code == 422
            assert httpx.get(f"http://127.0.0.1:{port}/api/rollouts").status_code == 401
            # The store list carries each store's running version.
            fleet = {s["store"]: s for s in api.get("/api/fleet").json()["stores"]}
            assert {fleet[s]["version"] for s in stores} == {NEW}
            detail = api.get(f"/api/stores/{stores[0]}").json()
            assert detail["version"] == NEW
            assert {k: detail["update"][k] for k in ("rollout", "version", "state", "running")} == {
                "rollout": rid, "version": NEW, "state": "healthy", "running": NEW}
    finally:
        db.close()
        sims.stop()
        hub.close()


def test_the_manifests_hashes_come_from_the_hubs_releases_directory(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path}/hub.db"
    db = open_db(db_url)
    _stores(db, ["s-1", "s-2"], datetime.now(timezone.utc))
    releases = tmp_path / "releases"
    manifests = {}
    for v in (OLD, NEW):
        (releases / v).mkdir(parents=True)
        manifests[v] = json.dumps({"version": v, "files": []}).encode()
        (releases / v / "manifest.json").write_bytes(manifests[v])
    argv = ["rollout", "start", NEW, "--base-url", f"{BASE}{NEW}/", "--releases", str(releases), "--db", db_url,
            "--broker", "mqtt://127.0.0.1:9", "--by", "erin"]
    assert hub_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "not sent now" in out  # no broker here: edge-hub run sends it
    rid = out.split()[1]
    rows = db.query("SELECT r.manifest_sha256, rs.previous, rs.previous_base_url, rs.previous_sha256 FROM rollouts r "
                    "JOIN rollout_stores rs ON rs.rollout = r.id WHERE r.id = ? ORDER BY rs.store", (rid,))
    assert rows == [(hashlib.sha256(manifests[NEW]).hexdigest(), OLD, f"{BASE}{OLD}/",
                     hashlib.sha256(manifests[OLD]).hexdigest())] * 2
    assert list(_collect(db)) == ["hub/s-1/update"]
    rollout.rollback(db, rid, "erin")
    # A manifest of another version under a version's name is refused; no manifest at all says what to give.
    (releases / "0.3.0").mkdir()
    (releases / "0.3.0" / "manifest.json").write_bytes(manifests[NEW])
    assert hub_cli.main([*argv[:2], "0.3.0", *argv[3:]]) == 1
    assert "is not the manifest of release 0.3.0" in capsys.readouterr().err
    assert hub_cli.main([*argv[:2], "0.4.0", *argv[3:]]) == 1
    assert "give --manifest-sha256" in capsys.readouterr().err
    db.close()
