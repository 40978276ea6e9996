"""The console's identity and hub-link alerts: rule kinds ``store_identity`` and ``store_reason``.

The pure rules first (raised, held for ``for_s``, one alert for one cause),
then their life in the hub's database on SQLite and PostgreSQL: an issue
the hub records (``tx.identity``, a real conflicting event through
``tx.ingest``), loaded into the fleet as the evaluator does, raised,
resolved by itself or by staff.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from sync.console.facts import StoreFacts, summarize
from sync.console.rules import RuleEngine, RuleSet, load_rules
from sync.console.views import store_detail
from sync.hub.console import alerts, history
from sync.hub.console.alerts import CauseStillThere
from sync.hub.console.fleet import Fleet
from sync.hub.db import open_db
from sync.hub.ingest import EventRow
from sync.hub.observe import Changes

NOW = datetime.now(timezone.utc).replace(microsecond=0)
STREAM = "3f2c9a1e-0b7d-4c55-9a60-1d2e3f4a5b6c"


def clock() -> datetime:
    """The hub's clock now (identity rows are stamped with it)."""
    return datetime.now(timezone.utc)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def reason(code: str, message: str = "") -> dict:
    return {"code": code, "subject": "hub", "message": message or f"{code} happened"}


def facts(reasons: list[dict] | None = None, identity: tuple = (), presence: str = "online", **health) -> StoreFacts:
    snap = {"status": "degraded" if reasons else "ok", "reasons": reasons or [], **health}
    return StoreFacts("s1", presence, NOW.isoformat(), "0.1.0", snap, NOW.isoformat(), identity=identity)


def issue(code: str, subject: str = STREAM, first: float = -60, last: float = -60, count: int = 1,
          handled: float | None = None) -> dict:
    return {"code": code, "subject": subject, "detail": f"{code} detail", "first_at": at(first).isoformat(),
            "last_at": at(last).isoformat(), "count": count,
            "handled_at": None if handled is None else at(handled).isoformat()}


def rules(*items: dict) -> RuleSet:
    return RuleSet.model_validate({"rules": list(items)})


def fired(rs: RuleSet, f: StoreFacts, now: datetime = NOW, engine: RuleEngine | None = None) -> list[tuple]:
    return sorted((c.rule, c.subject, c.title) for c in (engine or RuleEngine(rs)).evaluate([f], now).firing)


# The pure rules ------------------------------------------------------------------------------

HUB_LINK = {"id": "hub-link", "kind": "store_reason", "codes": ["hub_not_acknowledging", "hub_ack_*"],
            "for_s": 20, "auto_resolve": True}


def test_a_store_reason_is_raised_per_code_after_its_for_s_and_only_for_the_codes_listed():
    rs = rules(HUB_LINK)
    engine = RuleEngine(rs)
    f = facts([reason("hub_ack_invalid", "ack for seq 90 of a stream this store never sent"),
               reason("hub_ack_invalid", "ack for seq 91 of a stream this store never sent"),
               reason("hub_offline"), reason("device_offline")])
    assert fired(rs, f, NOW, engine) == []                  # first seen now: held for 20 s
    assert fired(rs, f, at(19), engine) == []
    [(rule, subject, title)] = fired(rs, f, at(20), engine)
    assert (rule, subject, title) == ("hub-link", "hub_ack_invalid", "hub acknowledgements the store cannot accept")
    [c] = engine.evaluate([f], at(21)).firing
    assert c.detail == ("ack for seq 90 of a stream this store never sent; "
                        "ack for seq 91 of a stream this store never sent")
    assert c.auto_resolve
    # Gone and back: counted from the start again.
    assert fired(rs, facts([]), at(22), engine) == []
    assert fired(rs, f, at(23), engine) == []


def test_a_duplicate_the_hub_knows_is_one_alert_not_two():
    rs = rules({"id": "hub-link", "kind": "store_reason", "codes": ["*"]},
               {"id": "duplicate-store", "kind": "store_identity", "codes": ["duplicate_store"], "auto_resolve": True})
    told = facts([reason("duplicate_store", "the hub sees two agents"), reason("mqtt_session_taken_over")])
    assert [r[:2] for r in fired(rs, told)] == [("hub-link", "duplicate_store"), ("hub-link", "mqtt_session_taken_over")]
    both = facts(told.health["reasons"], identity=(issue("duplicate_store", "s1"),))
    assert [r[:2] for r in fired(rs, both)] == [("duplicate-store", "duplicate_store/s1"),
                                                ("hub-link", "mqtt_session_taken_over")]


def test_the_outbox_rule_leaves_a_store_that_says_why_to_its_reason_rule():
    rs = rules({"id": "outbox", "kind": "outbox_growing", "max_age_s": 600, "unless_reasons": ["hub_*"]})
    old = {"outbox_depth": 40, "oldest_unacked_age_s": 900}
    assert [r[0] for r in fired(rs, facts([], **old))] == ["outbox"]  # an older agent: the backstop
    assert fired(rs, facts([reason("hub_not_acknowledging")], **old)) == []
    assert [r[0] for r in fired(rs, facts([reason("device_offline")], **old))] == ["outbox"]


def test_identity_issues_are_titled_in_words_and_judged_while_the_store_is_held():
    rs = rules({"id": "identity", "kind": "store_identity", "codes": ["*"]})
    f = facts(identity=(issue("stream_conflict", count=3), issue("database_restored"),
                        issue("duplicate_store", "s1"), issue("some_future_code", "x")), presence="offline")
    assert fired(rs, f) == [
        ("identity", f"database_restored/{STREAM}", "store database restored or copied"),
        ("identity", "duplicate_store/s1", "two agents run as this store"),
        ("identity", "some_future_code/x", "some future code"),
        ("identity", f"stream_conflict/{STREAM}", "stream conflict: event kept aside")]
    [c] = [c for c in RuleEngine(rs).evaluate([f], NOW).firing if c.subject.startswith("stream_conflict")]
    assert (c.detail, c.since) == ("stream_conflict detail (seen 3 times)", at(-60))
    only = rules({"id": "conflicts", "kind": "store_identity", "codes": ["stream_conflict"]})
    assert [r[1] for r in fired(only, f)] == [f"stream_conflict/{STREAM}"]


def test_an_issue_staff_resolved_stays_quiet_until_the_hub_sees_it_again():
    rs = rules({"id": "conflicts", "kind": "store_identity", "codes": ["stream_conflict"]})
    assert fired(rs, facts(identity=(issue("stream_conflict", last=-60, handled=-30),))) == []
    assert len(fired(rs, facts(identity=(issue("stream_conflict", last=-10, handled=-30),)))) == 1
    # An auto-resolving rule ignores staff: its issue clears at the hub.
    auto = rules({"id": "dup", "kind": "store_identity", "codes": ["duplicate_store"], "auto_resolve": True})
    assert len(fired(auto, facts(identity=(issue("duplicate_store", "s1", last=-60, handled=-30),)))) == 1


def test_the_shipped_rules_alert_on_identity_and_the_hub_link_but_not_twice_on_hub_offline():
    rs = load_rules()
    by_id = {r.id: r for r in rs.rules}
    assert {(by_id[i].kind, by_id[i].severity, by_id[i].auto_resolve, by_id[i].for_s) for i in
            ("stream-conflict", "database-restored", "duplicate-store")} == {
        ("store_identity", "critical", False, 0), ("store_identity", "warning", False, 0),
        ("store_identity", "critical", True, 0)}
    assert rs.resolvable_while_present() == {"stream-conflict", "database-restored"}
    link = by_id["hub-link"]
    assert (link.kind, link.auto_resolve) == ("store_reason", True)
    assert set(link.codes) == {"hub_not_acknowledging", "hub_ack_invalid", "hub_publish_refused",
                               "mqtt_session_taken_over", "duplicate_store", "outbox_unreadable"}
    old = {"outbox_depth": 40, "oldest_unacked_age_s": 900}
    stuck = fired(rs, facts([reason("hub_not_acknowledging")], **old), at(5))
    assert [r[:2] for r in stuck] == [("hub-link", "hub_not_acknowledging")]  # not outbox-growing as well
    assert fired(rs, facts([reason("hub_offline")])) == []


def test_the_summary_counts_identity_issues_and_reads_without_them():
    s = summarize(facts(identity=(issue("stream_conflict"), issue("duplicate_store", "s1"))))
    assert s["identity"]["open"] == 2
    assert [(i["code"], i["problem"]) for i in s["identity"]["issues"]] == [
        ("stream_conflict", "stream conflict: event kept aside"), ("duplicate_store", "two agents run as this store")]
    assert summarize(StoreFacts("s2"))["identity"] == {"open": 0, "issues": []}


# In the hub's database -------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    hub_db = open_db(url)
    yield hub_db
    hub_db.close()


RULES = RuleSet.model_validate({"rules": [
    {"id": "stream-conflict", "kind": "store_identity", "codes": ["stream_conflict"], "severity": "critical"},
    {"id": "duplicate-store", "kind": "store_identity", "codes": ["duplicate_store"], "severity": "critical",
     "auto_resolve": True},
    {"id": "hub-link", "kind": "store_reason", "codes": ["hub_*", "duplicate_store"], "for_s": 10,
     "auto_resolve": True}]})


class Pass:
    """One evaluator pass, as evaluator.py runs it: the database's identity into the fleet, the
    rules over the fleet, the difference written."""

    def __init__(self, db) -> None:
        self.db = db
        self.fleet = Fleet()
        self.engine = RuleEngine(RULES)

    def __call__(self, now: datetime, health: dict | None = None) -> list[dict]:
        if health is not None:  # a snapshot the worker committed
            self.fleet.apply(Changes(status={"s1": {"state": "online", "since": NOW.isoformat(), "version": "0.1.0"}},
                                     health={"s1": health}))
        self.fleet.set_identity(history.open_identity(self.db))
        ev = self.engine.evaluate(self.fleet.facts(), now)
        with self.db.transaction() as tx:
            ids = alerts.apply(tx, alerts.diff(alerts.active(tx), ev, RULES), now)
        return alerts.by_ids(self.db, ids)


def event(seq: int, id_: str) -> EventRow:
    body = {"specversion": "1.0", "id": id_, "source": "edge/s1", "type": "retail.sale.completed", "seq": seq,
            "stream": STREAM, "data": {}}
    return EventRow(seq, id_, "retail.sale.completed", None, json.dumps(body), STREAM)


def test_a_conflicting_event_raises_a_critical_alert_staff_resolve_after_looking(db):
    run = Pass(db)
    with db.transaction() as tx:
        tx.ingest("s1", [event(1, "evt-a"), event(2, "evt-b")])
    assert run(NOW, health={"status": "ok", "reasons": []}) == []
    with db.transaction() as tx:
        result = tx.ingest("s1", [event(2, "evt-other")])
    assert result.conflicts == [(2, "evt-b", "evt-other")]

    [a] = run(NOW)
    assert (a["rule"], a["subject"], a["severity"], a["title"]) == (
        "stream-conflict", f"stream_conflict/{STREAM}", "critical", "stream conflict: event kept aside")
    assert "evt-other" in a["detail"] and "evt-b" in a["detail"]
    assert run(at(5)) == []  # the same alert; the hub never clears a conflict, so it does not clear either
    assert alerts.get(db, a["id"])["cleared_at"] is None
    summary = run.fleet.summary("s1")
    assert summary["identity"]["open"] == 1

    # The store page: the issue, and the event kept aside (without its body).
    ident = history.identity(db, "s1")
    assert ident["conflicts"] == 1 and ident["streams"] == 1
    assert [(c["seq"], c["id"], c["kept_id"]) for c in ident["latest_conflicts"]] == [(2, "evt-other", "evt-b")]
    assert [(i["code"], i["cleared_at"]) for i in ident["issues"]] == [("stream_conflict", None)]
    detail = store_detail(run.fleet.get("s1"), summary, NOW, timeline={}, alerts=[], device_alerts=[], commands=[],
                          identity=ident)
    assert detail["identity"]["conflicts"] == 1

    # Staff may resolve it while the cause is on record: that is what looking at it means, and it
    # closes the hub's record too (edge-hub stores no longer counts it).
    # (On the hub's clock from here: the hub stamps the issue's last sighting with it.)
    with db.transaction() as tx:
        with pytest.raises(CauseStillThere):
            alerts.resolve(tx, a["id"], "li.wei", clock())
        done = alerts.resolve(tx, a["id"], "li.wei", clock(), RULES.resolvable_while_present())
    assert (done["state"], done["resolved_by"]) == ("resolved", "li.wei")
    assert run(clock()) == [] and alerts.listing(db, "s1") == []
    assert db.identity_issues("s1", open_only=True) == [] and db.store("s1").identity == 0
    assert db.identity_issues("s1")[0].cleared_at is not None

    # Another conflict in the same stream later: a new alert.
    while clock().isoformat(timespec="milliseconds") <= done["resolved_at"]:
        pass  # the hub's times have milliseconds: the next sighting must be stamped after the resolve
    with db.transaction() as tx:
        assert tx.ingest("s1", [event(1, "evt-third")]).conflicts
    [again] = run(clock())
    assert again["id"] != a["id"] and again["state"] == "open"


def test_a_resolve_during_a_pass_is_not_undone_by_that_pass(db):
    with db.transaction() as tx:
        tx.identity("s1", "stream_conflict", STREAM, "seq 2 came twice")
    run = Pass(db)
    [a] = run(NOW)
    # This pass read the issue before staff resolved it (handled_at not known to it yet).
    run.fleet.set_identity(history.open_identity(db))
    ev = run.engine.evaluate(run.fleet.facts(), at(5))
    with db.transaction() as tx:
        alerts.resolve(tx, a["id"], "li.wei", at(6), RULES.resolvable_while_present())
    with db.transaction() as tx:
        assert alerts.apply(tx, alerts.diff(alerts.active(tx), ev, RULES), at(5)) == []
    assert run(at(10)) == [] and alerts.listing(db, "s1") == []


def test_two_agents_as_one_store_raise_an_alert_that_resolves_when_the_hub_clears_it(db):
    run = Pass(db)
    with db.transaction() as tx:
        tx.identity("s1", "duplicate_store", "s1", "two agents run as store s1 at once")
    [a] = run(NOW)
    assert (a["rule"], a["subject"], a["title"]) == ("duplicate-store", "duplicate_store/s1",
                                                     "two agents run as this store")
    with db.transaction() as tx:
        with pytest.raises(CauseStillThere):  # auto-resolving: staff cannot close it while both run
            alerts.resolve(tx, a["id"], "li.wei", at(1), RULES.resolvable_while_present())
    # Both agents say so too: still one alert.
    assert run(at(2), health={"status": "degraded", "reasons": [reason("duplicate_store")]}) == []
    assert run(at(20), health={"status": "degraded", "reasons": [reason("duplicate_store")]}) == []

    with db.transaction() as tx:
        assert tx.clear_duplicates((datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()) == ["s1"]
    assert history.open_identity(db) == {}
    [cleared] = [x for x in run(at(25), health={"status": "ok", "reasons": []}) if x["id"] == a["id"]]
    assert (cleared["state"], cleared["resolved_by"]) == ("resolved", "auto")
    assert run.fleet.summary("s1")["identity"]["open"] == 0

    # Seen again: the hub opens the issue anew, and the console raises a new alert.
    with db.transaction() as tx:
        tx.identity("s1", "duplicate_store", "s1", "two agents run as store s1 at once")
    [again] = run(at(30))
    assert again["id"] != a["id"]


def test_a_hub_link_reason_holds_for_its_for_s_then_resolves_itself(db):
    run = Pass(db)
    stuck = {"status": "degraded", "reasons": [reason("hub_publish_refused", "the broker refused the batch (0x87)")]}
    assert run(NOW, health=stuck) == []
    assert run(at(9), health=stuck) == []
    [a] = run(at(10), health=stuck)
    assert (a["rule"], a["subject"], a["detail"]) == ("hub-link", "hub_publish_refused",
                                                      "the broker refused the batch (0x87)")
    [done] = run(at(15), health={"status": "ok", "reasons": []})
    assert (done["id"], done["state"], done["resolved_by"]) == (a["id"], "resolved", "auto")


def test_an_identity_issue_of_a_store_the_fleet_never_heard_of_shows_it(db):
    with db.transaction() as tx:
        tx.identity("s9", "database_restored", STREAM, "stream b continues stream a after seq 10")
    fleet = Fleet()
    seen: list = []
    fleet.subscribe(lambda change: seen.append(change.stores))
    fleet.set_identity(history.open_identity(db))
    assert seen == [{"s9"}]
    [i] = fleet.get("s9").identity
    assert (i["code"], i["subject"], i["handled_at"]) == ("database_restored", STREAM, None)
    fleet.set_identity(history.open_identity(db))
    assert seen == [{"s9"}]  # nothing changed: nobody told
    fleet.set_identity({})
    assert fleet.get("s9").identity == () and seen == [{"s9"}, {"s9"}]
