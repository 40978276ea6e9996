"""The hub console's fleet operations over HTTP: staff halt, resume and roll back a rollout (``POST
/api/rollouts/{id}/...``, each kept in ``rollout_actions`` with the staff member's name), a store's detail
carries the hub's desired devices.yaml version and the store's word on it, the fleet has every store's (and says
since when a store's config drifted).

``edge-hub run --http`` as a process on SQLite with a real Mosquitto; the rollout is planned on the same
database before the hub starts (the stores' status and health as the hub keeps them), httpx is the page.
Nothing answers the update messages: the rollout stays on its first wave unless staff act.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from support.agent import free_port
from support.hubprocess import HubProcess
from sync.console.facts import StoreFacts
from sync.hub.console.fleet import Fleet, desired_configs
from sync.hub.db import open_db
from sync.hub.fleet import desired, rollout
from sync.hub.observe import Changes
from sync.topics import ConfigResult, ConfigVersion

TOKEN, OTHER = "ops-token-alice", "ops-token-bob"
STORES = ["store-01", "store-02", "store-03"]
OLD, NEW = "0.1.0", "0.2.0"
BASE = "http://127.0.0.1:8090/releases/"
SHA = {v: hashlib.sha256(f"manifest {v}".encode()).hexdigest() for v in (OLD, NEW)}


def _health(config: dict | None = None) -> str:
    h = {"status": "ok", "reasons": [], "devices": []}
    return json.dumps({**h, "config": config} if config else h)


@pytest.fixture
def hub(mosquitto, tmp_path: Path) -> Iterator[tuple[httpx.Client, str, str]]:
    """(API client signed in as alice, a rollout's id, the database URL)."""
    db_url = f"sqlite:///{tmp_path}/hub.db"
    db = open_db(db_url)
    now = datetime.now(timezone.utc).isoformat()
    with db.transaction() as tx:
        for s in STORES:
            tx.set_status(s, "online", OLD, now)
            tx.set_health(s, _health({"version": 1, "drift": s == "store-03", "state": "applied"}))
    rid = rollout.start(db, NEW, f"{BASE}{NEW}/", SHA[NEW], waves="1,100%", soak_s=3600, by="dana",
                        previous={OLD: SHA[OLD]})
    for text in ("store: {id: store-02}\n", "store: {id: store-02}\ndevices: [\n"):
        desired.store_version(db, "store-02", text, "dana")
    with db.transaction() as tx:
        desired.record_result(tx, "store-02", ConfigResult(
            version=2, ok=False, state="refused", errors=["devices.yaml (hub version 2):2: unclosed list"],
            in_force=ConfigVersion(version=1, sha256=SHA[OLD]), at=datetime.now(timezone.utc)))
    db.close()
    (tmp_path / "tokens").write_text(f"alice:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n"
                                     f"bob:{hashlib.sha256(OTHER.encode()).hexdigest()}\n")
    port = free_port()
    proc = HubProcess(mosquitto.url, db_url, tmp_path / "hub.log")
    proc.args += ["--http", f"127.0.0.1:{port}", "--console-tokens", str(tmp_path / "tokens")]
    proc.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            yield api, rid, db_url
    finally:
        proc.close()


def _actions(db_url: str, rid: str) -> list[tuple[str, str]]:
    db = open_db(db_url)
    try:
        return [(a, b) for a, b in db.query("SELECT action, by_whom FROM rollout_actions WHERE rollout = ? "
                                            "ORDER BY at", (rid,))]
    finally:
        db.close()


def test_staff_halt_resume_and_roll_back_a_rollout_under_their_own_name(hub) -> None:
    api, rid, db_url = hub
    assert api.get("/api/rollouts").json()["rollouts"][0]["state"] == "running"

    halted = api.post(f"/api/rollouts/{rid}/halt")
    assert halted.status_code == 200, halted.text
    r = halted.json()["rollout"]
    assert (r["id"], r["state"], r["reason"]) == (rid, "halted", "halted by alice")
    assert r["actions"][-1]["action"] == "halt" and r["actions"][-1]["by"] == "alice"
    again = api.post(f"/api/rollouts/{rid}/halt")
    assert again.status_code == 409 and "not running" in again.json()["detail"]

    resumed = api.post(f"/api/rollouts/{rid}/resume", headers={"Authorization": f"Bearer {OTHER}"})
    assert resumed.status_code == 200 and resumed.json()["rollout"]["state"] == "running"

    back = api.post(f"/api/rollouts/{rid}/rollback")
    assert back.status_code == 200
    r = back.json()["rollout"]
    assert r["state"] == "halted" and r["rolled_back_at"] and r["reason"] == "rolled back by alice"
    canary = r["waves"][0]["stores"][0]
    assert canary["asked"] == OLD  # the canary is asked for the release it ran before
    assert api.post(f"/api/rollouts/{rid}/resume").status_code == 409  # a rollout rolled back is over

    # What GET shows and what the table keeps: every action with who did it.
    listed = api.get("/api/rollouts", params={"id": rid}).json()["rollouts"][0]["actions"]
    assert [(a["action"], a["by"]) for a in listed] == _actions(db_url, rid) == [
        ("start", "dana"), ("halt", "alice"), ("resume", "bob"), ("rollback", "alice")]


def test_rollout_actions_need_a_staff_token_and_a_known_rollout(hub) -> None:
    api, rid, db_url = hub
    base = str(api.base_url)
    for verb in ("halt", "resume", "rollback"):
        assert httpx.post(f"{base}/api/rollouts/{rid}/{verb}").status_code == 401
        assert httpx.post(f"{base}/api/rollouts/{rid}/{verb}",
                          headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        assert api.post(f"/api/rollouts/r-nothing/{verb}").status_code == 404
    assert api.post(f"/api/rollouts/{'x' * 65}/halt").status_code == 422
    assert api.get(f"/api/rollouts/{rid}/halt").status_code in (404, 405)  # an action is never a GET
    assert _actions(db_url, rid) == [("start", "dana")]
    assert api.get("/api/rollouts").json()["rollouts"][0]["state"] == "running"


def test_a_stores_detail_has_the_hubs_desired_config_and_the_fleet_its_drift(hub) -> None:
    api, _, _ = hub
    d = api.get("/api/stores/store-02").json()
    assert d["config"] == {"version": 1, "drift": False, "state": "applied", "drift_since": None}
    assert d["desired"] == {"desired": 2, "answered": 2, "state": "refused",
                            "errors": ["devices.yaml (hub version 2):2: unclosed list"], "reason": None,
                            "rolled_back": []}
    assert api.get("/api/stores/store-01").json()["desired"] is None  # no version pushed for it
    fleet = {s["store"]: s for s in api.get("/api/fleet").json()["stores"]}
    assert fleet["store-03"]["config"]["drift"] is True
    assert fleet["store-03"]["config"]["drift_since"]  # a restarted hub: the stored snapshot's time at the latest
    assert fleet["store-01"]["config"]["drift_since"] is None
    # The hub's side of each store's devices.yaml, which no snapshot carries: with the fleet, and alone.
    configs = {"store-02": {"desired": 2, "answered": 2, "state": "refused"}}
    assert api.get("/api/fleet").json()["configs"] == configs
    assert api.get("/api/configs").json()["configs"] == configs
    assert httpx.get(f"{api.base_url}/api/configs").status_code == 401


def test_the_fleet_remembers_when_drift_was_first_seen_and_forgets_it_once_undone() -> None:
    fleet = Fleet()
    drifted = {"config": {"version": 3, "drift": True, "state": "applied"}}
    fleet.apply(Changes(health={"s-1": drifted}))
    first = fleet.summary("s-1")["config"]["drift_since"]
    assert first is not None
    fleet.apply(Changes(health={"s-1": {**drifted, "outbox_depth": 1}}))
    assert fleet.summary("s-1")["config"]["drift_since"] == first  # still the first time it was seen
    fleet.apply(Changes(health={"s-1": {"config": {"version": 3, "drift": False, "state": "applied"}}}))
    assert fleet.summary("s-1")["config"] == {"version": 3, "drift": False, "state": "applied", "drift_since": None}
    fleet.apply(Changes(health={"s-1": drifted}))
    assert fleet.summary("s-1")["config"]["drift_since"] is not None
    assert isinstance(fleet.get("s-1"), StoreFacts)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_hubs_side_of_each_config_on_both_databases(request, backend: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    db = open_db(url)
    try:
        for store, n in (("s-1", 3), ("s-2", 1)):
            for i in range(n):
                desired.store_version(db, store, f"store: {{id: {store}}}\n# {i}\n", "dana")
        at = datetime.now(timezone.utc)
        with db.transaction() as tx:
            for version, state in ((1, "applied"), (2, "rolled_back")):
                desired.record_result(tx, "s-1", ConfigResult(version=version, ok=state == "applied", state=state,
                                                              in_force=ConfigVersion(version=1, sha256=SHA[OLD]),
                                                              at=at))
            # A word from a store the hub pushed nothing to (its own file, version 0) is not the hub's side.
            desired.record_result(tx, "s-9", ConfigResult(version=0, ok=True, state="applied",
                                                          in_force=ConfigVersion(version=0, sha256=SHA[OLD]), at=at))
        assert desired_configs(db) == {"s-1": {"desired": 3, "answered": 2, "state": "rolled_back"},
                                       "s-2": {"desired": 1, "answered": None, "state": None}}
    finally:
        db.close()
