"""The console's tables on SQLite and PostgreSQL: timeline rows, device alerts, the alerts' life."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from sync.console.facts import StoreFacts
from sync.console.rules import RuleEngine, RuleSet
from sync.hub.console import alerts, history
from sync.hub.console.alerts import CauseStillThere
from sync.hub.db import open_db
from sync.hub.ingest import EventRow
from sync.hub.observe import Changes, Observer

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    hub_db = open_db(url)
    yield hub_db
    hub_db.close()


def snap(**states: tuple[str, float]) -> dict:
    """A snapshot with devices in (state, seconds ago)."""
    return {"devices": [{"id": d, "kind": "sensor.heartbeat", "state": s,
                         "since": (NOW - timedelta(seconds=ago)).isoformat(), "last_error": f"{d} {s}"}
                        for d, (s, ago) in states.items()]}


def record(db, obs: Observer, store: str, snapshot: dict) -> None:
    op = obs.health(store, snapshot)
    if op is not None:
        with db.transaction() as tx:
            op(tx)
    obs.committed()


def test_device_state_changes_become_a_24_hour_timeline(db):
    obs = Observer()
    record(db, obs, "s1", snap(hb=("online", 30 * 3600), pr=("online", 600)))  # hb online since before the window
    record(db, obs, "s1", snap(hb=("online", 30 * 3600), pr=("online", 600)))  # nothing changed: no rows
    record(db, obs, "s1", snap(hb=("offline", 300), pr=("busy", 10)))          # busy is online: no row for pr
    record(db, obs, "s1", snap(hb=("online", 60), pr=("error", 5)))
    assert db.query("SELECT count(*) FROM device_states")[0][0] == 5
    # A second worker seeing the same snapshots records nothing twice.
    record(db, Observer(), "s1", snap(hb=("online", 60), pr=("error", 5)))
    assert db.query("SELECT count(*) FROM device_states")[0][0] == 5

    tl = history.timeline(db, "s1", NOW)
    hb = [(s["state"], s["until"] is None) for s in tl["devices"]["hb"]]
    assert hb == [("online", False), ("offline", False), ("online", True)]
    assert tl["devices"]["hb"][0]["since"] == tl["from"]  # cut at the window's start
    assert [s["state"] for s in tl["devices"]["pr"]] == ["online", "error"]
    assert tl["devices"]["pr"][-1]["last_error"] == "pr error"
    assert history.timeline(db, "other", NOW)["devices"] == {}


def test_device_alerts_keep_the_latest_by_seq_whatever_order_they_are_stored_in(db):
    obs = Observer()

    def ev(seq: int, code: str, state: str) -> EventRow:
        data = {"device": "printer-1", "code": code, "state": state, "severity": "error", "message": code}
        return EventRow(seq, f"id-{seq}", "retail.device.alert", NOW.isoformat(), json.dumps({"data": data}))

    sale = EventRow(1, "id-1", "retail.sale.completed", None, "{}")
    assert obs.events("s1", [sale]) is None  # no alert, no work
    for rows in ([ev(3, "paper_out", "cleared")], [ev(2, "paper_out", "raised"), ev(4, "cover_open", "raised")]):
        with db.transaction() as tx:
            obs.events("s1", rows)(tx)
    raised = history.raised_device_alerts(db)
    assert [(a["code"], a["seq"]) for a in raised["s1"]] == [("cover_open", 4)]
    assert {a["code"]: a["state"] for a in history.device_alerts(db, "s1")} == {"paper_out": "cleared",
                                                                                 "cover_open": "raised"}


def test_each_labels_alert_is_a_row_of_its_own_and_a_row_from_before_is_closed(db):
    obs = Observer()

    def ev(seq: int, mac: str | None, state: str) -> EventRow:
        data = {"device": "labels-1", "code": "label_price_mismatch", "state": state, "severity": "warning",
                "message": f"label {mac}", **({"subject": mac} if mac else {})}
        return EventRow(seq, f"id-{seq}", "retail.device.alert", NOW.isoformat(), json.dumps({"data": data}))

    with db.transaction() as tx:  # as an older hub stored it: one row for the whole access point
        obs.events("s1", [ev(1, None, "raised")])(tx)
    with db.transaction() as tx:
        obs.events("s1", [ev(2, "A1", "raised"), ev(3, "A2", "raised"), ev(4, "A3", "raised")])(tx)
    raised = sorted(a["device"] for a in history.raised_device_alerts(db)["s1"])
    assert raised == ["labels-1", "labels-1/A1", "labels-1/A2", "labels-1/A3"]
    with db.transaction() as tx:
        obs.events("s1", [ev(5, "A2", "cleared")])(tx)
    # One label put right: its own row and the old catch-all close; the two still wrong stay raised.
    raised = sorted(a["device"] for a in history.raised_device_alerts(db)["s1"])
    assert raised == ["labels-1/A1", "labels-1/A3"]


RULES = RuleSet.model_validate({"rules": [
    {"id": "off", "kind": "device_state", "states": ["offline"], "for_s": 0},
    {"id": "gone", "kind": "store_offline", "auto_resolve": True}]})


def evaluate(db, engine: RuleEngine, facts: list[StoreFacts], now: datetime) -> list[str]:
    with db.transaction() as tx:
        return alerts.apply(tx, alerts.diff(alerts.active(tx), engine.evaluate(facts, now), RULES), now)


def test_an_alert_is_raised_once_taken_cleared_and_resolved_by_staff(db):
    engine = RuleEngine(RULES)
    down = StoreFacts("s1", "online", None, None, snap(hb=("offline", 40)), NOW.isoformat())
    up = StoreFacts("s1", "online", None, None, snap(hb=("online", 1)), NOW.isoformat())
    [aid] = evaluate(db, engine, [down], NOW)
    assert evaluate(db, engine, [down], NOW) == []  # still the same alert
    # A second console on the same database raises nothing twice.
    assert evaluate(db, RuleEngine(RULES), [down], NOW) == []
    a = alerts.get(db, aid)
    assert (a["state"], a["title"], a["cleared_at"], a["active"]) == ("open", "hb offline", None, True)

    with db.transaction() as tx:
        assert alerts.acknowledge(tx, aid, "li.wei", NOW)["acked_by"] == "li.wei"
        with pytest.raises(CauseStillThere, match="still there"):
            alerts.resolve(tx, aid, "li.wei", NOW)

    assert evaluate(db, engine, [up], NOW) == [aid]  # the cause cleared: it waits for staff
    a = alerts.get(db, aid)
    assert (a["state"], a["cleared_at"] is not None) == ("acknowledged", True)
    assert evaluate(db, engine, [down], NOW) == [aid]  # back before anyone resolved it: the same alert
    assert alerts.get(db, aid)["cleared_at"] is None
    evaluate(db, engine, [up], NOW)
    with db.transaction() as tx:
        a = alerts.resolve(tx, aid, "li.wei", NOW)
    assert (a["state"], a["resolved_by"], a["active"]) == ("resolved", "li.wei", False)
    # Fails again later: a new alert.
    [again] = evaluate(db, engine, [down], NOW + timedelta(seconds=1))
    assert again != aid
    assert [x["id"] for x in alerts.listing(db, "s1")] == [again]
    assert {x["id"] for x in alerts.listing(db, "s1", resolved=True)} == {aid, again}


def test_a_held_store_keeps_its_device_alerts_and_store_alerts_resolve_themselves(db):
    engine = RuleEngine(RULES)
    down = StoreFacts("s1", "online", None, None, snap(hb=("offline", 40)), NOW.isoformat())
    [dev] = evaluate(db, engine, [down], NOW)
    gone = StoreFacts("s1", "offline", NOW.isoformat(), None, snap(hb=("offline", 40)), NOW.isoformat())
    [store_alert] = evaluate(db, engine, [gone], NOW)
    assert alerts.get(db, dev)["cleared_at"] is None  # frozen while the store is away
    back = StoreFacts("s1", "online", NOW.isoformat(), None, snap(hb=("offline", 40)), NOW.isoformat())
    assert evaluate(db, engine, [back], NOW) == [store_alert]
    a = alerts.get(db, store_alert)
    assert (a["state"], a["resolved_by"]) == ("resolved", "auto")


def test_unanswered_commands_time_out_once_and_old_history_is_pruned(db):
    with db.transaction() as tx:
        tx.command_sent("c1", "s1", "hb", "reopen", "{}")
        tx.command_sent("c2", "s1", "hb", "reopen", "{}")
        tx.command_result("c2", "s1", True, json.dumps({"ok": 1}), None)
    with db.transaction() as tx:
        assert history.mark_timeout(tx, "c1", 30, NOW)
        assert not history.mark_timeout(tx, "c2", 30, NOW)  # answered: stays ok
    states = {c["id"]: (c["state"], c["result"]) for c in history.commands(db, "s1")}
    assert states == {"c1": ("timeout", None), "c2": ("ok", {"ok": 1})}

    obs = Observer()
    record(db, obs, "s1", snap(hb=("online", 3600)))
    record(db, obs, "s1", snap(hb=("offline", 60)))
    with db.transaction() as tx:
        tx.command_sent("c3", "s1", "hb", "reopen", "{}")  # its console went away before the answer
        history.prune(tx, datetime.now(timezone.utc) + timedelta(hours=2))
    assert [c["state"] for c in history.commands(db, "s1") if c["id"] == "c3"] == ["timeout"]
    with db.transaction() as tx:
        history.prune(tx, NOW + timedelta(days=60))
    # Both rows are old, but the newest is the state the device is in: it stays.
    assert db.query("SELECT state FROM device_states") == [("offline",)]
    assert history.commands(db, "s1") == []


def test_the_observer_hands_changes_to_its_listener_only_after_the_commit():
    got: list[Changes] = []
    obs = Observer(got.append)
    obs.status("s1", "online", "0.1.0", NOW.isoformat())
    obs.command("c1", "s1", True, {"x": 1}, None)
    assert got == []
    obs.committed()
    assert list(got[0].status) == ["s1"] and got[0].commands[0]["id"] == "c1"
    obs.health("s1", {"devices": []})
    obs.abandoned()
    obs.committed()
    assert len(got) == 1  # nothing new after an abandoned group


def test_offline_again_keeps_the_first_offline_time(db):
    with db.transaction() as tx:
        tx.set_status("s1", "offline", None, "2026-01-01T00:00:00.000+00:00")
    with db.transaction() as tx:
        tx.set_status("s1", "offline", None, "2026-01-02T00:00:00.000+00:00")  # the retained Will, redelivered
    assert db.status_health("s1")["status_since"] == "2026-01-01T00:00:00.000+00:00"
    with db.transaction() as tx:
        tx.set_status("s1", "online", "0.1.0", "2026-01-03T00:00:00.000+00:00")
    assert db.status_health("s1")["status_since"] == "2026-01-03T00:00:00.000+00:00"
