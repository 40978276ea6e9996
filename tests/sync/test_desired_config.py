"""Desired configuration end to end: the hub pushes a devices.yaml, the store checks it, applies it live,
refuses it, rolls it back by itself or restarts for it, and the hub sees each outcome.

Everything is real: Mosquitto, the reference hub ``edge-hub run`` on a SQLite
file, ``edge-agent run`` as a process, ``edge-hub config push`` as the CLI's
own ``main``, a printer emulator (support/printer.py) on a loopback port.
Waits are on the hub's database or the agent's API, each with a deadline.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import yaml

from support.agent import AgentProcess, config_dict, free_port
from support.hubprocess import HubProcess
from support.printer import EmulatorThread, printer_device
from support.storepcs import wait_for
from sync.hub import cli as hub_cli
from sync.hub.broker import parse_broker_url
from sync.hub.db import open_db
from sync.hub.fleet import desired
from sync.topics import config_sha256

STORE = "store-cfg"
HEARTBEAT = {"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.5}


def as_yaml(cfg: dict) -> str:
    """A devices.yaml as support/agent.py writes it (so a restart writes the same bytes)."""
    return yaml.safe_dump(cfg, allow_unicode=True)


class Rig:
    """One store's agent (knowing its file through EDGE_CONFIG), the reference hub and their broker."""

    def __init__(self, tmp_path: Path, broker, devices: list[dict] | None = None, hub_args: tuple[str, ...] = (),
                 link: dict | None = None):
        self.tmp = tmp_path
        self.broker = broker
        self.db_url = f"sqlite:///{tmp_path / 'hub.db'}"
        self.hub = HubProcess(broker.url, self.db_url, tmp_path / "hub.log")
        self.hub.args += list(hub_args)
        self.hub.start()
        self.config = config_dict(free_port(), devices if devices is not None else [dict(HEARTBEAT)],
                                  store_id=STORE, hub_url=broker.url)
        # An agent whose session was taken takes it back after 1 s: a version waits 1.5 s after connect.
        self.config["hub"].update({"takeover_backoff": 1, **(link or {})})
        self.workdir = tmp_path / "agent"
        self.workdir.mkdir()
        self.agent = self.new_agent(self.config)
        self.agent.import_catalog()
        self.agent.start()
        wait_for("the hub has the store's first health snapshot", lambda: self.snapshot() is not None, 60)

    def new_agent(self, config: dict) -> AgentProcess:
        return AgentProcess(self.workdir, config, env={"EDGE_CONFIG": str(self.workdir / "devices.yaml")})

    def push(self, cfg: dict | str, by: str = "test") -> None:
        """``edge-hub config push STORE FILE --by BY`` with the CLI's own parser."""
        path = self.tmp / f"push-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(cfg if isinstance(cfg, str) else as_yaml(cfg))
        assert hub_cli.main(["config", "push", STORE, str(path), "--by", by, "--db", self.db_url,
                             "--broker", self.broker.url]) == 0

    def status(self) -> desired.ConfigStatus | None:
        db = open_db(self.db_url)
        try:
            rows = desired.statuses(db, STORE)
        finally:
            db.close()
        return rows[0] if rows else None

    def result(self, version: int, timeout: float = 60.0) -> dict:
        """The store's word on ``version``, once the hub has it."""
        def read() -> dict | None:
            with closing(open_db(self.db_url)) as db:
                a = desired.answer(db, STORE, version)
            return None if a is None else {"state": a.state, "errors": a.errors, "reason": a.reason,
                                           "in_force": a.in_force}
        return wait_for(f"the store's answer on version {version}", read, timeout)

    def snapshot(self) -> dict | None:
        """The store's last health snapshot at the hub."""
        db = open_db(self.db_url)
        try:
            row = db.status_health(STORE)
        finally:
            db.close()
        return json.loads(row["health"]) if row and row["health"] else None

    def devices(self) -> dict[str, dict]:
        with self.agent.client("console") as c:
            return {d["id"]: d for d in c.get("/v1/devices").json()}

    def sale_ids_at_hub(self) -> Counter:
        with sqlite3.connect(self.tmp / "hub.db") as conn:
            rows = conn.execute("SELECT event FROM events WHERE store = ? AND type = 'retail.sale.completed'",
                                (STORE,)).fetchall()
        return Counter(json.loads(e)["data"]["client_sale_id"] for (e,) in rows)

    def close(self) -> None:
        self.agent.close()
        self.hub.close()


@pytest.fixture
def rig(tmp_path: Path, mosquitto) -> Iterator[Rig]:
    r = Rig(tmp_path, mosquitto)
    yield r
    r.close()


class Kiosk:
    """A kiosk selling in a loop from a thread until stopped; every sale must get its 201."""

    def __init__(self, agent: AgentProcess):
        self.agent = agent
        self.sold: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.agent.client("kiosk", timeout=30) as c:
            while not self._stop.is_set():
                key = str(uuid.uuid4())
                r = c.post("/v1/sales", json={"client_sale_id": key, "lines": [{"code": "TOTE01", "qty": 1}],
                                              "payment": {"method": "cash"}})
                (self.sold if r.status_code == 201 else self.errors).append(key if r.status_code == 201 else r.text)

    def __enter__(self) -> "Kiosk":
        self._thread.start()
        wait_for("a first sale", lambda: self.sold or self.errors, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_printer_added_by_the_hub_starts_live_with_nothing_else_touched_and_a_local_edit_is_drift(rig):
    before = rig.devices()["heartbeat-1"]
    assert before["state"] == "online"
    with EmulatorThread(profile="generic-80-gb18030") as printer:
        new = copy.deepcopy(rig.config)
        new["devices"].append(printer_device(printer.port, id="printer-1", station="kiosk-1"))
        with Kiosk(rig.agent) as kiosk:
            rig.push(new, by="ops")
            assert rig.result(1)["state"] == "applied"
            wait_for("printer-1 online", lambda: rig.devices().get("printer-1", {}).get("state") == "online", 30)
            n = len(kiosk.sold)
            wait_for("more sales after the change", lambda: len(kiosk.sold) > n + 5, 30)
        assert not kiosk.errors, kiosk.errors[:3]
        # Nothing but the new device restarted: the heartbeat's state never moved.
        after = rig.devices()["heartbeat-1"]
        assert (after["state"], after["since"]) == ("online", before["since"])
        # The file is the hub's version, byte for byte; the one before is kept as the last good.
        assert rig.agent.config_path.read_text() == as_yaml(new)
        assert (rig.workdir / "data" / "config" / "last-good.yaml").read_text() == as_yaml(rig.config)
        # Every sale made through the change is at the hub exactly once.
        wait_for("every sale at the hub", lambda: set(rig.sale_ids_at_hub()) >= set(kiosk.sold), 60)
        assert set(rig.sale_ids_at_hub().values()) == {1}
        # The new printer prints this kiosk's receipts.
        with rig.agent.client("kiosk") as c:
            r = c.post("/v1/sales", json={"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
                                          "payment": {"method": "cash"}})
            assert r.status_code == 201
        printer.wait_for(lambda emu: len(emu.receipts()) >= 1, 20)

        # The same text again as version 2: applied with nothing to do, no device restarted.
        assert rig.status().desired == 1
        printed = wait_for("receipts counted", lambda: rig.devices()["printer-1"]["counters"]["printed"], 20)
        rig.push(new)
        assert rig.result(2)["state"] == "applied"
        # A restarted device has a new driver, whose counters start at 0.
        assert rig.devices()["printer-1"]["counters"]["printed"] >= printed
        assert rig.devices()["heartbeat-1"]["since"] == before["since"]

        # The same version sent again (the retained copy a reconnect brings) does nothing at all.
        at = rig.result(2)
        db = open_db(rig.db_url)
        try:
            version, text = desired.version_yaml(db, STORE)
        finally:
            db.close()
        again = desired.DesiredConfig(version=version, sha256=config_sha256(text), yaml=text, by="test")
        desired.publish_retained(parse_broker_url(rig.broker.url), f"hub/{STORE}/config",
                                 again.model_dump_json().encode())
        wait_for("the resend seen", lambda: "hub version 2 already handled" in rig.agent.log(), 30)
        assert rig.result(2) == at and rig.devices()["printer-1"]["counters"]["printed"] >= printed

        snap = wait_for("the snapshot says version 2", lambda: (s := rig.snapshot()) and s["config"]["version"] == 2
                        and s, 30)
        assert snap["config"] == {"version": 2, "sha256": config_sha256(as_yaml(new)), "drift": False,
                                  "state": "applied"}
        # A local edit: drift at the hub (a warning: the store stays ok).
        with rig.agent.config_path.open("a") as f:
            f.write("# changed by hand\n")
        snap = wait_for("drift at the hub", lambda: (s := rig.snapshot()) and s["config"]["drift"] and s, 30)
        [reason] = [r for r in snap["reasons"] if r["code"] == "config_drift"]
        assert "version 2" in reason["message"]
        st = rig.status()
        assert (st.desired, st.in_force, st.state, st.drift) == (2, 2, "applied", True)
        assert "yes" in desired.format_statuses([st]).splitlines()[1]


def test_a_broken_config_is_refused_with_its_lines_and_one_that_breaks_a_device_is_rolled_back(rig, tmp_path):
    original = rig.agent.config_path.read_text()
    broken = copy.deepcopy(rig.config)
    broken["store"]["colour"] = "red"
    broken["devices"].append({"id": "thing-1", "kind": "printer.escpso"})
    rig.push(broken)
    refused = rig.result(1)
    assert refused["state"] == "refused" and refused["in_force"] == 0
    text = as_yaml(broken)
    kind_line = next(i for i, line in enumerate(text.splitlines(), 1) if "printer.escpso" in line)
    assert any(e.startswith(f"devices.yaml (hub version 1):{kind_line}: unknown device kind 'printer.escpso'")
               for e in refused["errors"]), refused["errors"]
    assert any("unknown key 'colour'" in e and e.startswith("devices.yaml (hub version 1):")
               for e in refused["errors"]), refused["errors"]
    assert rig.agent.config_path.read_text() == original  # nothing changed
    out = desired.format_statuses([rig.status()])
    assert "refused" in out and "devices.yaml (hub version 1):" in out

    # Passes check, breaks the store: a printer at a port nobody listens on. Rolled back by itself.
    dead = copy.deepcopy(rig.config)
    dead["fleet"] = {"rollback_after_s": 2}
    dead["devices"].append(printer_device(free_port(), id="printer-9", station="kiosk-1"))
    rig.push(dead)
    assert rig.result(2)["state"] == "applied"
    rolled = wait_for("rolled back", lambda: (r := rig.result(2)) and r["state"] == "rolled_back" and r, 60)
    assert "printer-9" in rolled["reason"] and rolled["in_force"] == 0
    assert rig.agent.config_path.read_text() == original
    wait_for("printer-9 gone", lambda: "printer-9" not in rig.devices(), 30)
    assert rig.devices()["heartbeat-1"]["state"] == "online"
    st = rig.status()
    assert st.rolled_back and st.rolled_back[0][0] == 2
    assert "version 2 rolled back: printer-9" in desired.format_statuses([st])
    with rig.agent.client() as c:
        assert c.get("/v1/health").json()["status"] in ("ok", "degraded")  # answers; no drift after a rollback
    snap = wait_for("the snapshot says version 0", lambda: (s := rig.snapshot()) and s["config"]["state"] ==
                    "rolled_back" and s, 30)
    assert snap["config"]["drift"] is False


def test_a_new_listen_address_needs_a_restart_which_comes_back_applied(rig):
    new = copy.deepcopy(rig.config)
    new["api"]["listen"] = f"127.0.0.1:{free_port()}"
    old = rig.agent
    rig.push(new)
    assert rig.result(1)["state"] == "restart_required"
    # The agent stops cleanly with a status systemd's Restart=on-failure starts it again for.
    assert old.proc.wait(30) == 75
    assert "exiting with status 75" in old.log()
    old.close()
    # The stand-in for systemd: start it again, on the file as it is now.
    assert rig.agent.config_path.read_text() == as_yaml(new)
    rig.agent = rig.new_agent(new).start()
    wait_for("version 1 applied", lambda: rig.result(1)["state"] == "applied", 60)
    with httpx.Client(base_url=rig.agent.url, timeout=10) as c:
        assert c.get("/v1/health").status_code == 200
    snap = wait_for("the snapshot says version 1", lambda: (s := rig.snapshot()) and s["config"]["version"] == 1
                    and s, 30)
    assert snap["config"]["drift"] is False and snap["config"]["state"] == "applied"


DUPLICATE_CLEAR = 15.0  # edge-hub run --duplicate-clear: the two-agents notice clears after this quiet


def test_a_second_pc_with_the_stores_id_takes_no_version_and_the_store_takes_what_came_meanwhile(tmp_path, mosquitto):
    # The store's agent and a second PC with a copy of its devices.yaml share the store's MQTT session, as
    # two PCs with one store id do (one login, one client id), and take turns with it. The store's agent
    # takes the session back after 1 s; the second PC waits 10 s, so its settle time (1.5 x 10 s) is not
    # over before the store's agent has taken a turn.
    rig = Rig(tmp_path, mosquitto, hub_args=("--duplicate-clear", f"{DUPLICATE_CLEAR:g}"),
              link={"trouble_hold": 5})
    second: AgentProcess | None = None
    try:
        rig.push(rig.config)
        assert rig.result(1)["state"] == "applied"
        ours = hub_query(rig, "SELECT live_stream FROM stores WHERE store = ?", STORE)[0][0]
        cfg = copy.deepcopy(rig.config)
        cfg["api"]["listen"] = f"127.0.0.1:{free_port()}"  # version 1, the store's file, would move its API
        cfg["hub"].update(takeover_backoff=10)
        (tmp_path / "second").mkdir()
        second = AgentProcess(tmp_path / "second", cfg, env={"EDGE_CONFIG": str(tmp_path / "second" / "devices.yaml")})
        second.start()
        wait_for("the second PC holds version 1", lambda: "hub version 1 held" in second.log(), 60)
        wait_for("the store's agent names duplicate_store", lambda: "duplicate_store" in health_codes(rig.agent), 60)
        new = copy.deepcopy(rig.config)
        new["devices"].append({**HEARTBEAT, "id": "heartbeat-2"})
        rig.push(new)
        wait_for("the store's agent holds version 2", lambda: "hub version 2 held" in rig.agent.log(), 30)
        assert "heartbeat-2" not in rig.devices()
        st = rig.status()
        assert (st.answered, st.state, st.in_force, st.others) == (1, "applied", 1, []), st
        assert second.stop(timeout=30) == 0, second.log()
        assert second.config_path.read_text() == as_yaml(cfg), "the second PC's devices.yaml was rewritten"
        assert hub_query(rig, "SELECT stream FROM config_results WHERE store = ? AND stream <> ?", STORE, ours) == []
        # Once the hub no longer sees two agents, the store's agent takes what was pushed meanwhile.
        assert rig.result(2, timeout=DUPLICATE_CLEAR + 60)["state"] == "applied"
        cleared = hub_query(rig, "SELECT cleared_at FROM identity WHERE store = ? AND code = 'duplicate_store'", STORE)
        answered = hub_query(rig, "SELECT received_at FROM config_results WHERE store = ? AND version = 2", STORE)
        assert cleared and cleared[0][0] is not None and answered[0][0] >= cleared[0][0], (cleared, answered)
        wait_for("heartbeat-2 online", lambda: rig.devices().get("heartbeat-2", {}).get("state") == "online", 30)
        st = wait_for("the hub has version 2 in force", lambda: (s := rig.status()) and s.in_force == 2 and s, 30)
        assert (st.answered, st.state) == (2, "applied"), st
    finally:
        if second is not None:
            second.close()
        rig.close()


def hub_query(rig: Rig, sql: str, *params) -> list[tuple]:
    db = open_db(rig.db_url)
    try:
        return db.query(sql, params)
    finally:
        db.close()


def health_codes(agent: AgentProcess) -> set[str]:
    with agent.client("console") as c:
        return {r["code"] for r in c.get("/v1/health").json().get("reasons", [])}


# The parts on their own: the wire, the downlink's limits, the diff, the console's facts ----------


def test_the_wire_refuses_what_does_not_hold_together():
    from sync import topics

    text = "store: {id: s-1, name: x}\n"
    ok = topics.DesiredConfig(version=1, sha256=config_sha256(text), yaml=text, by="ops")
    assert ok.matches()
    assert not topics.DesiredConfig(version=1, sha256="0" * 64, yaml=text).matches()
    for bad in ({"version": 0, "sha256": "0" * 64, "yaml": text}, {"version": 1, "sha256": "XYZ", "yaml": text},
                {"version": 1, "sha256": "0" * 64, "yaml": "é" * (topics.MAX_CONFIG_BYTES // 2 + 1)},
                {"version": 1, "sha256": "0" * 64, "yaml": text, "extra": 1}):
        with pytest.raises(topics.PayloadError):
            topics.validate(topics.DesiredConfig, bad)
    res = topics.ConfigResult(version=2, ok=False, state="refused", errors=["x" * 5000],
                              in_force=topics.ConfigVersion(version=1, sha256="0" * 64), at="2026-01-01T00:00:00Z")
    assert len(res.errors[0]) == 1000 and json.loads(res.wire())["state"] == "refused"
    assert topics.StoreTopics("s-1").config_res == "edge/s-1/config/res"
    assert "hub/s-1/config" in topics.StoreTopics("s-1").subscriptions()


def test_the_downlink_hands_over_only_a_whole_config_and_says_why_not():
    import asyncio

    from sync import topics
    from sync.downlink import Downlink

    class Handler:
        def __init__(self) -> None:
            self.got: list = []

        async def config(self, desired):
            self.got.append(("config", desired.version))

        async def alert(self, data):
            self.got.append(("alert", data["message"]))

    text = "store: {id: s-1, name: x}\n"
    good = json.dumps({"version": 3, "sha256": config_sha256(text), "yaml": text}).encode()
    torn = json.dumps({"version": 4, "sha256": config_sha256(text + "x"), "yaml": text}).encode()
    huge = b"{" + b" " * (2 * topics.MAX_CONFIG_BYTES + 5000) + b"}"
    h = Handler()
    d = Downlink("s-1", h, publish=lambda t, p: None)
    for payload in (good, torn, huge, b"", b"not json"):
        asyncio.run(d.handle("config", payload))
    assert h.got[0] == ("config", 3)
    assert "sha256 is not the hash" in h.got[1][1] and "over the limit" in h.got[2][1]
    assert h.got[3][0] == "alert" and len(h.got) == 4  # the empty payload (a cleared retained one) is nothing


def test_the_diff_restarts_only_what_changed_and_asks_a_restart_for_the_rest():
    from edge_agent import config as config_mod
    from edge_agent.config_apply import diff

    base = config_dict(8080, [dict(HEARTBEAT), {"id": "hb-2", "kind": "sensor.heartbeat"}], store_id=STORE)
    old = config_mod.parse(as_yaml(base))
    new_cfg = copy.deepcopy(base)
    new_cfg["devices"][1]["interval"] = 2
    new_cfg["devices"].append({"id": "hb-3", "kind": "sensor.heartbeat"})
    new_cfg["devices"].pop(0)
    new_cfg["fleet"] = {"rollback_after_s": 10}
    d = diff(old, config_mod.parse(as_yaml(new_cfg)))
    assert ([c.id for c in d.added], d.removed, [c.id for c in d.changed], d.restart) == (["hb-3"], ["heartbeat-1"],
                                                                                          ["hb-2"], [])
    new_cfg["api"]["listen"] = "127.0.0.1:9999"
    assert diff(old, config_mod.parse(as_yaml(new_cfg))).restart == ["api changed"]
    assert "attached" in diff(old, config_mod.parse(as_yaml(new_cfg)), frozenset({"sensor.heartbeat"})).restart[1]


def test_the_consoles_read_the_config_facts_defensively():
    from sync.console.facts import StoreFacts, config, summarize

    assert config(None) is None and config({"config": "junk"}) is None
    assert config({"config": {"version": True, "drift": "yes", "state": "<b>"}}) == \
        {"version": None, "drift": False, "state": None}
    snap = {"config": {"version": 4, "sha256": "0" * 64, "drift": True, "state": "rolled_back"}}
    assert summarize(StoreFacts("s-1", health=snap))["config"] == {"version": 4, "drift": True,
                                                                  "state": "rolled_back"}


@pytest.fixture(params=["sqlite", "postgres"])
def hub_db(request, tmp_path):
    url = f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = open_db(url)
    yield db
    db.close()


def test_the_hub_keeps_versions_and_the_stores_word_on_either_database(hub_db):
    from datetime import datetime, timezone

    from sync import topics

    assert desired.store_version(hub_db, "s-1", "a: 1\n", "ops").version == 1
    assert desired.store_version(hub_db, "s-1", "a: 2\n", "ops").version == 2
    assert desired.store_version(hub_db, "s-2", "b: 1\n", "ops").version == 1
    assert desired.version_yaml(hub_db, "s-1") == (2, "a: 2\n")
    assert desired.version_yaml(hub_db, "s-1", 1) == (1, "a: 1\n") and desired.version_yaml(hub_db, "s-1", 9) is None
    rows = hub_db.query("SELECT sha256, created_by FROM desired_configs WHERE store = 's-1' AND version = 1")
    assert rows == [(config_sha256("a: 1\n"), "ops")]
    now = datetime.now(timezone.utc)
    zero = topics.ConfigVersion(version=0, sha256="0" * 64)
    for res in (topics.ConfigResult(version=1, ok=False, state="refused", errors=["devices.yaml (hub version 1):3: x"],
                                    in_force=zero, at=now),
                topics.ConfigResult(version=2, ok=True, state="applied", in_force=zero, at=now),
                topics.ConfigResult(version=2, ok=False, state="rolled_back", reason="printer-9 is offline",
                                    in_force=zero, at=now)):
        with hub_db.transaction() as tx:
            desired.record_result(tx, "s-1", res)
    s1, s2 = desired.statuses(hub_db)
    assert (s1.store, s1.desired, s1.in_force, s1.state, s1.answered, s1.drift) == ("s-1", 2, 0, "rolled_back", 2, None)
    assert s1.rolled_back == [(2, "printer-9 is offline")]
    assert (s2.store, s2.desired, s2.state) == ("s-2", 1, None)
    assert [r.store for r in desired.statuses(hub_db, "s-2")] == ["s-2"]
    table = desired.format_statuses([s1, s2])
    assert "version 2 rolled back: printer-9 is offline" in table
