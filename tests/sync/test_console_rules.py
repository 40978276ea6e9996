"""The console's pure parts: reading snapshots defensively, rules as data and their evaluation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sync.console import facts
from sync.console.commands import ActionRefused, actions_for, check
from sync.console.facts import StoreFacts, summarize
from sync.console.rules import DEFAULT_RULES, RuleEngine, RuleSet
from sync.hub.console.rules import load_rules
from sync.hub.errors import ConsoleConfigError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


def device(id_: str, state: str = "online", since: float = 3600, kind: str = "sensor.heartbeat",
           error: str | None = None) -> dict:
    return {"id": id_, "kind": kind, "state": state, "since": ago(since), "last_error": error, "counters": {}}


def store(health: dict | None = None, presence: str = "online", **kw) -> StoreFacts:
    return StoreFacts("store-1", presence, kw.pop("presence_since", ago(7200)), "0.1.0", health,
                      kw.pop("health_at", ago(5)), **kw)


def rules(*items: dict, **top) -> RuleSet:
    return RuleSet.model_validate({"rules": list(items), **top})


def fired(rs: RuleSet, *stores: StoreFacts, now: datetime = NOW) -> list[tuple[str, str]]:
    return sorted((c.rule, c.subject) for c in RuleEngine(rs).evaluate(stores, now).firing)


def test_the_shipped_rules_load_and_cover_every_kind_the_issue_names():
    rs = load_rules()
    assert {r.kind for r in rs.rules} == {"device_state", "device_alert", "labels_non_compliant", "outbox_growing",
                                          "store_offline", "clock_skew", "print_queue", "store_identity", "store_reason"}
    # Raised within a minute of the cause: evaluation every <= 10 s, and no rule waits so long
    # that check interval + debounce + for_s + one evaluation could pass 60 s.
    assert rs.evaluate_every_s <= 10
    assert all(r.for_s + rs.evaluate_every_s + 5 + 1 <= 60 for r in rs.rules if r.id != "clock-skew")


def test_a_device_is_raised_only_after_its_for_s_counted_from_its_own_since():
    rs = rules({"id": "off", "kind": "device_state", "states": ["offline"], "for_s": 30})
    assert fired(rs, store({"devices": [device("hb", "offline", since=29)]})) == []
    assert fired(rs, store({"devices": [device("hb", "offline", since=31)]})) == [("off", "hb")]
    assert fired(rs, store({"devices": [device("hb", "error", since=999)]})) == []


def test_the_store_clock_offset_moves_a_device_since_onto_the_hub_clock():
    rs = rules({"id": "off", "kind": "device_state", "states": ["offline"], "for_s": 30})
    # The store's clock is 20 s behind: its "40 s ago" is 20 s ago on the hub's clock.
    snap = {"devices": [device("hb", "offline", since=40)], "clock_offset_s": 20}
    assert fired(rs, store(snap)) == []


def test_device_kinds_filter_devices_by_pattern():
    rs = rules({"id": "p", "kind": "device_state", "states": ["error"], "device_kinds": ["printer.*"]})
    snap = {"devices": [device("printer-1", "error", kind="printer.escpos"), device("scan-1", "error",
                                                                                    kind="scanner.serial")]}
    assert fired(rs, store(snap)) == [("p", "printer-1")]


def test_conditions_without_a_start_in_the_data_count_from_first_sight():
    rs = rules({"id": "skew", "kind": "clock_skew", "max_offset_s": 5, "for_s": 60})
    engine = RuleEngine(rs)
    skewed = store({"clock_offset_s": -12.5})
    assert engine.evaluate([skewed], NOW).firing == []
    assert engine.evaluate([skewed], NOW + timedelta(seconds=59)).firing == []
    [c] = engine.evaluate([skewed], NOW + timedelta(seconds=60)).firing
    assert (c.rule, c.title, c.since) == ("skew", "clock off by -12.5 s", NOW)
    # Once it goes away the clock starts again.
    assert engine.evaluate([store({"clock_offset_s": 0.1})], NOW + timedelta(seconds=61)).firing == []
    assert engine.evaluate([skewed], NOW + timedelta(seconds=62)).firing == []


def test_an_offline_or_silent_store_is_held_and_only_store_rules_judge_it():
    rs = rules({"id": "off", "kind": "device_state", "states": ["offline"]},
               {"id": "gone", "kind": "store_offline", "for_s": 10}, stale_after_s=180)
    broken = {"devices": [device("hb", "offline", since=600)]}
    ev = RuleEngine(rs).evaluate([store(broken, presence="offline", presence_since=ago(11))], NOW)
    assert [(c.rule, c.subject, c.title) for c in ev.firing] == [("gone", "store", "store offline")]
    assert ev.held == {"store-1"}
    # Online but no snapshot for longer than stale_after_s: silent, held too.
    ev = RuleEngine(rs).evaluate([store(broken, health_at=ago(200))], NOW)
    assert [(c.rule, c.title) for c in ev.firing] == [("gone", "store silent")]
    assert fired(rs, store(broken, presence="offline", presence_since=ago(5))) == []


def test_device_alerts_labels_outbox_and_print_queue():
    rs = rules({"id": "paper", "kind": "device_alert", "codes": ["paper_*"], "severity": "critical"},
               {"id": "labels", "kind": "labels_non_compliant", "min_count": 2},
               {"id": "outbox", "kind": "outbox_growing", "max_age_s": 600, "max_depth": 1000},
               {"id": "print", "kind": "print_queue", "max_failed": 0, "max_waiting": 3})
    alert = {"device": "printer-1", "code": "paper_out", "severity": "error", "time": ago(1), "message": "paper out"}
    ok = store({"labels": {"labels": 50, "non_compliant": 1}, "outbox_depth": 10, "oldest_unacked_age_s": 5,
                "printing": {"queued": 2, "waiting": 3, "failed": 0}})
    assert fired(rs, ok) == []
    bad = store({"labels": {"labels": 50, "non_compliant": 2, "oldest_non_compliant_since": ago(100)},
                 "outbox_depth": 5, "oldest_unacked_age_s": 900, "printing": {"printers": {"p1": {"failed": 1}}}},
                device_alerts=(alert,))
    assert fired(rs, bad) == [("labels", "labels"), ("outbox", "outbox"), ("paper", "printer-1"),
                              ("print", "printing")]
    assert fired(rs, store({"outbox_depth": 5000, "oldest_unacked_age_s": 1})) == [("outbox", "outbox")]


def test_a_title_template_with_an_unknown_name_falls_back_to_the_default():
    rs = rules({"id": "off", "kind": "device_state", "states": ["offline"], "title": "{nope} down"})
    [c] = RuleEngine(rs).evaluate([store({"devices": [device("hb", "offline")]})], NOW).firing
    assert c.title == "hb offline"


@pytest.mark.parametrize("text, expected", [
    ("rules: [{id: a, kind: nope}]", "rules.0"),
    ("rules: [{id: a, kind: device_state, for_s: -1}]", "for_s"),
    ("rules: [{id: a, kind: device_state, colour: red}]", "colour"),
    ("rules: [{id: a, kind: clock_skew}, {id: a, kind: clock_skew}]", "repeated: a"),
    ("evaluate_every_s: 30", "evaluate_every_s"),
    ("rules: [", "not YAML"),
])
def test_a_bad_rules_file_says_where_and_what(tmp_path, text, expected):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConsoleConfigError) as err:
        load_rules(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def test_summaries_read_any_snapshot_without_failing():
    for junk in (None, {}, {"devices": "x"}, {"devices": [1, {"id": 3}], "labels": [], "printing": "x",
                                                "outbox_depth": "many", "clock_offset_s": True}):
        s = summarize(store(junk))
        assert s["devices"]["total"] == 0 and s["outbox_depth"] is None and s["clock_offset_s"] is None
    s = summarize(store({"devices": [device("a"), device("b", "error", error="jam"), device("c", "offline")]}))
    assert s["devices"]["total"] == 3 and [p["id"] for p in s["problems"]] == ["b", "c"]
    # Print queue totals, or per printer when there are none.
    assert facts.printing({"printing": {"queued": 2, "failed": 1, "printers": {"p": {"queued": 2}}}})["queued"] == 2
    assert facts.printing({"printing": {"p1": {"waiting": 1}, "p2": {"waiting": 2}}})["waiting"] == 3


def test_the_console_offers_only_the_actions_each_device_has():
    # What the store's snapshot says the device has (its driver declares them), not a table of the console's.
    assert actions_for("printer-1", ["reopen", "print_test_page"]) == ["reopen", "print_test_page"]
    assert actions_for("mirror-1", ["reopen", "end_session", "end_session"]) == ["reopen", "end_session"]
    assert actions_for("hb", None) == ["reopen"]  # a snapshot that says nothing: what every device has
    assert actions_for("agent", None) == ["status", "set_log_level", "resend_from"]
    with pytest.raises(ActionRefused, match="allowed: reopen$"):
        check("hb", "sensor.heartbeat", "print_test_page", {}, ["reopen"])
    with pytest.raises(ActionRefused, match="allowed: reopen$"):
        check("printer-1", "printer.escpos", "print_test_page", {}, None)
    assert check("mirror-1", "mirror.camera", "end_session", {}, ["reopen", "end_session"]) == {}
    with pytest.raises(ActionRefused, match="level"):
        check("agent", None, "set_log_level", {"level": "loud"})
    with pytest.raises(ActionRefused, match="seq"):
        check("agent", None, "resend_from", {"seq": True})
    assert check("agent", None, "resend_from", {"seq": 7}) == {"seq": 7}


def test_a_snapshots_actions_are_read_defensively():
    def acts(raw):
        return facts.devices({"devices": [{"id": "d", "state": "online", "actions": raw}]})[0]["actions"]

    assert acts(["reopen", "end_session"]) == ["reopen", "end_session"]
    assert acts(["reopen", "reopen"]) == ["reopen"]
    for bad in ("reopen", [1], ["x" * 65], [""], ["<script>"], ["a"] * 33, {"reopen": 1}, None):
        assert acts(bad) is None, bad
    assert facts.devices({"devices": [{"id": "d", "state": "online"}]})[0]["actions"] is None


def test_default_rules_file_is_the_one_documented():
    assert DEFAULT_RULES.name == "rules.yaml" and DEFAULT_RULES.exists()


def test_labels_count_past_their_grace_when_the_store_says_so():
    rs = rules({"id": "labels", "kind": "labels_non_compliant", "min_count": 1})
    # Two labels being updated after a price change, none past its grace: nothing to raise.
    updating = store({"labels": {"labels": 6, "non_compliant": 2, "past_grace": 0,
                                 "oldest_non_compliant_since": ago(1)}})
    assert fired(rs, updating) == []
    wrong = store({"labels": {"labels": 6, "non_compliant": 6, "past_grace": 1,
                              "oldest_non_compliant_since": ago(900), "oldest_past_grace_since": ago(600)}})
    [c] = RuleEngine(rs).evaluate([wrong], NOW).firing
    assert (c.title, c.since) == ("1 shelf label not compliant", NOW - timedelta(seconds=600))
    assert c.detail == "1 of 6 shelf labels shows another price than the checkout"
    # An agent too old to report past_grace: every non-compliant label counts, as before.
    old = store({"labels": {"labels": 6, "non_compliant": 2, "oldest_non_compliant_since": ago(5)}})
    assert [x.title for x in RuleEngine(rs).evaluate([old], NOW).firing] == ["2 shelf labels not compliant"]


def test_the_summary_carries_the_stores_own_status_and_reasons():
    s = summarize(store({"status": "degraded", "reasons": [
        {"code": "printer_attention", "subject": "backroom", "message": "backroom: paper out"},
        {"code": 7}, "junk", {"code": "labels_non_compliant", "message": None}]}))
    assert s["status"] == "degraded"
    assert s["reasons"] == [{"code": "printer_attention", "subject": "backroom", "message": "backroom: paper out"},
                            {"code": "labels_non_compliant", "subject": None, "message": ""}]
    assert (summarize(store({"status": "fine"}))["status"], summarize(store(None))["reasons"]) == (None, [])


def test_each_labels_alert_is_its_own_row_at_the_hub():
    from sync.console.facts import alert_device

    assert alert_device({"device": "labels-1", "subject": "0000021D4E83B401"}) == "labels-1/0000021D4E83B401"
    assert alert_device({"device": "backroom"}) == alert_device({"device": "backroom", "subject": "backroom"}) \
        == "backroom"
    assert alert_device({}) == "?"
    long = alert_device({"device": "d" * 64, "subject": "s" * 64})
    assert len(long) == 64 and long.startswith("d" * 30 + "/")


def test_edge_hub_stores_counts_in_words():
    from sync.hub.cli import format_stores
    from sync.hub.db import StoreRow

    def row(store: str, status: str | None) -> StoreRow:
        return StoreRow(store, status, None, 0, 0, 0, 0, None, 0, 0)

    assert format_stores([row("store-a", "online")], NOW).splitlines()[-1] == "1 store: 1 online"
    assert format_stores([row("store-a", "online"), row("store-b", "offline"), row("store-c", None)],
                         NOW).splitlines()[-1] == "3 stores: 1 online, 1 offline, 1 unknown"


def test_titles_count_in_words():
    rs = rules({"id": "outbox", "kind": "outbox_growing", "max_age_s": 60})
    one = store({"outbox_depth": 1, "oldest_unacked_age_s": 600})
    assert [c.title for c in RuleEngine(rs).evaluate([one], NOW).firing] == ["outbox not draining (1 event)"]
    two = store({"outbox_depth": 2, "oldest_unacked_age_s": 600})
    assert [c.title for c in RuleEngine(rs).evaluate([two], NOW).firing] == ["outbox not draining (2 events)"]


def test_device_alert_rules_judge_the_stores_own_list_when_its_snapshot_has_one():
    rs = rules({"id": "paper", "kind": "device_alert", "codes": ["paper_out"]},
               {"id": "crit", "kind": "device_alert", "codes": ["*"], "severities": ["critical"]})
    stale = ({"device": "printer-1", "code": "paper_out", "state": "raised", "time": ago(60)},)
    # An older agent: the raised rows of device_alerts are all there is.
    assert fired(rs, store({"devices": []}, device_alerts=stale)) == [("paper", "printer-1")]
    # This agent says what is open now: the paper went back in while a clear was lost.
    assert fired(rs, store({"devices": [], "open_alerts": []}, device_alerts=stale)) == []
    now_open = [{"device": "printer-1", "code": "paper_out", "severity": "error", "time": ago(5)},
                {"device": "labels-1", "subject": "A1", "code": "x", "severity": "critical"},
                {"device": "labels-1", "subject": "A1", "code": "y", "severity": "critical"},
                {"device": 7, "code": "junk"}, "junk"]
    f = store({"devices": [], "open_alerts": now_open})
    # Two codes of one subject under one rule are one alert.
    assert fired(rs, f) == [("crit", "labels-1/A1"), ("paper", "printer-1")]
    assert summarize(f)["device_alerts"] == 3
