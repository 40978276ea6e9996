"""The store day inside ``make test``: 90 seconds of the same soak ``make soak`` runs, failing on any violation.

Its margins are the soak's own (signals within 60 s, drains within 180 s,
label grace plus 15 s): generous for two shared cores. The table is in the
failure message; the run dir (logs, report.json) stays in pytest's tmp dir.
The label and receipt judges have their own small tests here: a judge that
is wrong reports a bug that is not there, or misses one that is. So do the
rules that keep the soak from passing while it checks nothing: a row short
of its minimum, a 5xx, a crashed step, a lost member QR, a label round that
errs are violations (the agent's side is an httpx.MockTransport there: what
is judged is the soak's reading of an answer, not the agent).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from drivers.printer.elements import Receipt, Text
from drivers.shelf_label.models import get_model
from edge_agent.catalog import Product
from edge_agent.labels.plan import desire, draw
from soak import checks as rows
from soak.actors import Actor, Kiosk, call
from soak.checks import MINIMUMS, ROWS, Checks, minimum
from soak.day import CATALOG, Day, Outages
from soak.faults import _after
from soak.identity import store_line, whole
from soak.invariants import PRICE_BLOCKS, LabelWatch, _crop, _layout, hub_ledger, missing_seqs, receipts
from soak.ledger import Ledger, Sale
from soak.rig import STORE, Timers
from soak.runner import run
from sync.hub.cli import format_stores
from sync.hub.db import StoreRow
from sync.hub.schema import EVENTS_SQLITE, SCHEMA


def _picture(model: str, **changes: object):
    product = Product.model_validate({**CATALOG[0], **changes})
    desired = desire(product.sku, product, model, datetime.now(timezone.utc))
    return _layout(draw(desired)[0], get_model(model))


@pytest.mark.parametrize("model", ["m2-2.9-bwr", "m2-4.2-bwr"])
def test_the_label_judge_sees_the_price_and_only_the_price(model):
    """The soak judges a label by its price blocks' pixels: another price differs, another stock count does not."""
    m = get_model(model)
    shown = _crop(_picture(model, stock_store=24), m, PRICE_BLOCKS)
    assert shown == _crop(_picture(model, stock_store=3, stock_online=7), m, PRICE_BLOCKS)
    assert shown != _crop(_picture(model, promo={"price": Decimal("149.00"), "label": "x"}), m, PRICE_BLOCKS)
    assert shown != _crop(_picture(model, promo=None), m, PRICE_BLOCKS)  # 189.00, no struck-through price


@pytest.mark.slow
def test_a_90_second_store_day_keeps_every_promise(tmp_path):
    seed = int(os.environ.get("EDGE_SOAK_SEED", "1"))
    result = run(minutes=1.5, seed=seed, run_dir=tmp_path / "soak", quiet=True)
    assert result.ok, f"{result.violations} violations (logs in {result.run_dir}):\n{result.table}"


def _doc(*lines: str, end: str = "cut") -> Receipt:
    return Receipt(tuple(Text(line) for line in lines), end)


def _receipt_day(tmp_path, printed: list[Receipt]) -> SimpleNamespace:
    ledger = Ledger()
    answer = {"sale_id": "S-1", "currency": "CNY", "total": "318.00",
              "lines": [{"sku": "LIP-RED-01", "qty": 2, "unit_price": "159.00", "amount": "318.00"}]}
    ledger.add_sale(Sale("S-1", "kiosk-1", {}, answer, {"LIP-RED-01": ("Double 11", "159.00")}, "J-1", 0.0, 1))
    rig = SimpleNamespace(printers={"kiosk-1": None}, receipts=lambda kiosk: printed)
    return SimpleNamespace(rig=rig, ledger=ledger, checks=Checks(tmp_path, 0.0, quiet=True))


RECEIPT = ("Sale        S-1", "Lipstick    318.00", "  * Double 11: you save 60.00", "TOTAL         CNY 318.00")


def test_the_receipt_judge_counts_copies_of_sales_only(tmp_path):
    """A return slip names its sale on a "Sale" line too: it is no second receipt; an unmarked copy is."""
    slip = _doc("Return      R-1", "Sale        S-1", "Refund      159.00")
    day = _receipt_day(tmp_path, [_doc(*RECEIPT), slip])
    receipts(day)
    assert day.checks.violations == []
    day = _receipt_day(tmp_path, [_doc(*RECEIPT), _doc(*RECEIPT)])
    receipts(day)
    assert [v.what for v in day.checks.violations] == ["receipt printed once (copies without REPRINT)"]


def test_the_receipt_judge_wants_the_promotion_and_a_whole_copy(tmp_path):
    day = _receipt_day(tmp_path, [_doc(*(ln for ln in RECEIPT if "Double 11" not in ln))])
    receipts(day)
    assert [v.what for v in day.checks.violations] == ["receipt shows each promotion the sale got"]
    day = _receipt_day(tmp_path, [_doc(*RECEIPT[:2], end="disconnect")])
    receipts(day)
    assert [v.what for v in day.checks.violations] == ["a whole receipt (up to its cut) came out"]


# The soak must not pass while it checks nothing ---------------------------------------------

def test_a_row_short_of_its_minimum_is_a_violation(tmp_path):
    """A table whose session row made 0 checks fails, the other rows at their minimum pass."""
    checks = Checks(tmp_path, 0.0, quiet=True)
    for row in ROWS:
        if row != rows.SESSION:
            checks.ok(row, minimum(row, 1.5))
    checks.require_minimums(1.5)
    assert [(v.invariant, v.got) for v in checks.violations] == [(rows.SESSION, 0)]


def test_the_minimums_cover_every_row_and_grow_with_the_day():
    assert set(MINIMUMS) == set(ROWS)
    assert all(minimum(row, 1.5) >= 1 for row in ROWS)
    assert minimum(rows.LABELS, 20) > minimum(rows.LABELS, 5) > minimum(rows.LABELS, 1.5)


class _Scanner:
    def __init__(self) -> None:
        self.scanned: list[str] = []

    def scan(self, code: str) -> None:
        self.scanned.append(code)


def _day(tmp_path, answer) -> Day:
    """A day whose agent answers every call with ``answer(request)``."""
    transport = httpx.MockTransport(answer)
    rig = SimpleNamespace(client=lambda name: httpx.Client(base_url="http://agent", transport=transport),
                          scanners={"kiosk-1": _Scanner()}, incarnation=1, timers=Timers())
    ledger = Ledger()
    return Day(rig, ledger, Checks(tmp_path, ledger.started, quiet=True), seed=1, minutes=1.5)  # type: ignore[arg-type]


def test_a_server_error_is_a_violation_and_every_answer_a_check(tmp_path):
    day = _day(tmp_path, lambda req: httpx.Response(500 if req.url.path == "/bad" else 200, text="boom"))
    with day.rig.client("kiosk-1") as http:
        assert call(day, http, "GET", "/good").status_code == 200
        assert call(day, http, "GET", "/bad").status_code == 500
    assert day.checks.counts[rows.ANSWERS] == 2
    assert [v.what for v in day.checks.violations] == ["GET /bad answered without a server error"]


def test_an_actor_step_that_crashes_is_a_violation(tmp_path):
    class Reader(Actor):
        def step(self) -> None:
            self.day.stop.set()
            call(self.day, self.day.rig.client("kiosk-1"), "GET", "/v1/sessions/kiosk-1").json()

    day = _day(tmp_path, lambda req: httpx.Response(200, text="<html>not json</html>"))
    Reader(day, "reader").run()
    assert [v.what for v in day.checks.violations] == ["reader: a step runs to its end"]


def _no_member(req: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"station": "kiosk-1", "member_id": None, "basket": {"lines": []}})


def test_a_member_qr_lost_while_scanner_and_agent_are_up_is_a_violation(tmp_path):
    day = _day(tmp_path, _no_member)
    kiosk = Kiosk(day, "kiosk-1")
    kiosk.attach_within = 0.2  # seconds per scan, short for the test
    assert kiosk._attach("M-S001") is False
    assert day.rig.scanners["kiosk-1"].scanned == ["RM1:M-S001", "RM1:M-S001"]  # scanned again, as a customer would
    assert [(v.invariant, v.got) for v in day.checks.violations] == [(rows.ANSWERS, "not attached (a scan lost)")]
    assert day.checks.notes == []


@pytest.mark.parametrize("outage", ["scanner-kiosk-1", "agent"])
def test_a_member_qr_lost_just_after_a_replug_or_restart_is_a_note(tmp_path, outage):
    day = _day(tmp_path, _no_member)
    kiosk = Kiosk(day, "kiosk-1")
    kiosk.attach_within = 0.2
    day.outages.begin(outage)
    day.outages.end(outage)
    assert kiosk._attach("M-S001") is False
    assert day.checks.violations == []
    assert len(day.checks.notes) == 1


def test_a_label_round_that_errs_is_a_violation_unless_the_agent_is_restarting(tmp_path):
    day = _day(tmp_path, _no_member)
    watch = LabelWatch(day)
    watch.skipped(ValueError("a product the checkout answered is not one"))
    watch.skipped(httpx.ConnectError("refused"))
    assert [v.invariant for v in day.checks.violations] == [rows.LABELS, rows.LABELS]
    day.outages.begin("agent")
    day.outages.end("agent")
    watch.skipped(httpx.ConnectError("refused"))
    assert len(day.checks.violations) == 2 and len(day.checks.notes) == 1


def test_the_consoles_outbox_counts_only_from_a_snapshot_taken_after_the_hub_came_back():
    """A snapshot from before the downtime, read back at the hub's start, says outbox 0 too: no proof."""
    back = datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc)
    assert _after("2026-12-07T04:00:05+00:00", back)
    assert not _after("2026-12-07T03:59:00+00:00", back)
    assert not _after(None, back)


# The hub's ledger per stream, and the identity fault's readings ---------------------------------

def _hub_db(tmp_path, events: list[tuple[str, int, str, dict]], conflicts: list[str] = ()) -> Path:
    """A hub database (the hub's own schema) holding ``events`` (stream, seq, type, data) of the soak store."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "hub.db"
    conn = sqlite3.connect(path)
    for statement in (*SCHEMA, *EVENTS_SQLITE):
        conn.execute(statement)
    for n, (stream, seq, type_, data) in enumerate(events):
        conn.execute("INSERT INTO events (store, stream, seq, id, type, event, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (STORE, stream, seq, f"e{n}", type_, json.dumps({"id": f"e{n}", "data": data}), "t"))
    for cid in conflicts:
        conn.execute("INSERT INTO conflicts (store, stream, seq, id, kept_id, type, event, received_at) "
                     "VALUES (?, 's1', 1, ?, 'e0', 'retail.sale.completed', ?, 't')", (STORE, cid, json.dumps({"id": cid})))
    conn.commit()
    conn.close()
    return path


def _ledger_day(tmp_path, events, sales=(), conflicts=(), injected=()) -> SimpleNamespace:
    ledger = Ledger()
    for sale_id in sales:
        ledger.add_sale(Sale(sale_id, "kiosk-1", {}, {}, {}, None, 0.0, 1))
    rig = SimpleNamespace(hub_db=_hub_db(tmp_path, events, list(conflicts)))
    return SimpleNamespace(rig=rig, ledger=ledger, checks=Checks(tmp_path, 0.0, quiet=True), open_gaps=set(),
                           injected=[{"id": i} for i in injected])


SALE = "retail.sale.completed"


def test_the_hub_ledger_takes_each_stream_from_seq_1():
    """A restart's new stream starts again at 1: no gap; a hole inside one stream is one."""
    events = [("s1", 1, SALE, {}), ("s1", 2, SALE, {}), ("s2", 1, SALE, {}), ("s2", 3, SALE, {})]
    assert missing_seqs(events) == {("s2", 2)}


def test_the_hub_ledger_counts_a_sale_once_across_streams(tmp_path):
    events = [("s1", 1, SALE, {"sale_id": "A"}), ("s1", 2, SALE, {"sale_id": "B"}), ("s2", 1, SALE, {"sale_id": "C"})]
    day = _ledger_day(tmp_path, events, sales=["A", "B", "C"])
    hub_ledger(day, final=True)
    assert day.checks.violations == []
    day = _ledger_day(tmp_path / "twice", [*events, ("s2", 2, SALE, {"sale_id": "A"})], sales=["A", "B", "C"])
    hub_ledger(day, final=True)
    assert [(v.what, v.ids) for v in day.checks.violations] == [
        ("sale answered 201 is at the hub exactly once", {"sale": "A"})]


def test_the_hub_ledger_flags_a_hole_that_stays_and_a_conflict_it_did_not_inject(tmp_path):
    events = [("s1", 1, SALE, {"sale_id": "A"}), ("s1", 3, SALE, {"sale_id": "B"})]
    day = _ledger_day(tmp_path, events, sales=["A", "B"], conflicts=["old-pc-1", "stray"], injected=["old-pc-1"])
    hub_ledger(day, final=False)  # a hole seen once may be a batch on its way
    assert [v.what for v in day.checks.violations] == [
        "no event kept aside as a conflict but those the soak injected"]
    assert "stray" in str(day.checks.violations[0].got) and "old-pc-1" not in str(day.checks.violations[0].got)
    hub_ledger(day, final=False)
    assert day.checks.violations[-2].what == "each stream's seqs at the hub are gapless (a hole stays)"


def test_a_stale_event_counts_as_kept_whole_only_as_sent():
    sent = {"id": "old-pc-1", "seq": 3, "stream": "s1", "time": "2026-12-07T06:00:00.000+00:00",
            "data": {"sale_id": "OLD-PC-1", "injected": "soak"}}
    assert whole({**sent, "time": "2026-12-07T06:00:00Z"}, sent)
    assert not whole({**sent, "data": {"sale_id": "OLD-PC-1"}}, sent)
    assert not whole({**sent, "time": "2026-12-07T06:00:01Z"}, sent)


def test_the_stores_table_is_read_by_its_headers():
    """The real edge-hub stores table: OPEN GAPS has a space inside, IDENTITY may read "1 open"."""
    row = StoreRow(STORE, "online", "2026-12-07T06:00:00", 12, 12, 40, 0, None, 0, 1, "s1", 3, 1)
    table = format_stores([StoreRow("store-other", None, None, 0, 0, 0, 2, None, 0, 0), row])
    line = store_line(table, STORE)
    assert (line["CONFLICTS"], line["OPEN GAPS"], line["IDENTITY"], line["STREAMS"]) == ("1", "0", "1 open", "3")
    assert store_line(table, "store-none") is None


# The privacy watch's readings ----------------------------------------------------------------------

def _privacy_day(tmp_path, swept: int, acked: int, sales: list[tuple[int, str, dict]], oldest_ack_s: float | None):
    """A store database as the agent keeps it (meta, sales, acks) and a day whose ledger sold ``sales``
    (seq, sale id, the stored event), each posted with member M-S001."""
    from datetime import timedelta

    from edge_agent.store import codec

    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "store.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
    conn.execute("CREATE TABLE sales (seq INTEGER PRIMARY KEY, sale_id BLOB, body BLOB)")
    conn.execute("CREATE TABLE acks (seq INTEGER PRIMARY KEY, at TEXT)")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("privacy_swept_seq", swept), ("acked_seq", acked)])
    ledger = Ledger()
    for seq, sale_id, event in sales:
        conn.execute("INSERT INTO sales VALUES (?, ?, ?)", (seq, codec.uuid_bytes(sale_id), codec.pack({"event": event})))
        ledger.add_sale(Sale(sale_id, "kiosk-1", {"member_id": "M-S001"}, {}, {}, None, 0.0, 1))
    if oldest_ack_s is not None:
        at = datetime.now(timezone.utc) - timedelta(seconds=oldest_ack_s)
        conn.execute("INSERT INTO acks VALUES (?, ?)", (swept + 1, at.isoformat()))
    conn.commit()
    conn.close()
    rig = SimpleNamespace(agent=SimpleNamespace(data_dir=data), timers=Timers(privacy_retention=30, privacy_sweep=5))
    return SimpleNamespace(rig=rig, ledger=ledger, checks=Checks(tmp_path, 0.0, quiet=True), stop=None)


S1, S2, S3 = ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002",
              "00000000-0000-4000-8000-000000000003")


def test_the_privacy_watch_passes_a_store_that_keeps_its_word(tmp_path):
    from soak.privacy import PrivacyWatch

    day = _privacy_day(tmp_path, swept=1, acked=2, oldest_ack_s=10, sales=[
        (1, S1, {"member_id": None, "member_pseudonym": "p1-ab"}),   # swept
        (2, S2, {"member_id": "M-S001"}),                             # acknowledged, retention not past yet
        (3, S3, {"member_id": "M-S001"})])                            # not acknowledged: untouched
    watch = PrivacyWatch(day)
    watch.look()
    assert day.checks.violations == [] and day.checks.counts[rows.PRIVACY] == 3
    assert watch.swept_members == {S1}


@pytest.mark.parametrize("case", ["member left in a swept sale", "unacknowledged sale swept", "sweep late"])
def test_the_privacy_watch_sees_each_broken_promise(tmp_path, case):
    from soak.privacy import PrivacyWatch

    swept_event = {"member_id": "M-S001"} if case == "member left in a swept sale" else \
        {"member_id": None, "member_pseudonym": "p1-ab"}
    unacked = {"member_id": None, "member_pseudonym": "p1-cd"} if case == "unacknowledged sale swept" else \
        {"member_id": "M-S001"}
    day = _privacy_day(tmp_path, swept=1, acked=1, oldest_ack_s=200 if case == "sweep late" else 10,
                       sales=[(1, S1, swept_event), (2, S2, unacked)])
    PrivacyWatch(day).look()
    assert [v.invariant for v in day.checks.violations] == [rows.PRIVACY], case


def test_the_help_judge_wants_each_call_delivered_in_time_and_answered(tmp_path):
    from soak.assist import Call, judge_calls, log

    day = SimpleNamespace(ledger=Ledger(), checks=Checks(tmp_path, 0.0, quiet=True), outages=Outages(), help=None)
    now = time.monotonic()
    calls = log(day)
    calls.asked(Call("fast", "kiosk-1", now, 1, 1, seen=now + 0.12, outcome="done"))
    calls.asked(Call("late", "kiosk-1", now, 1, 1, seen=now + 1.5, outcome="taken"))
    calls.asked(Call("lost", "kiosk-2", now, 1, 1, seen=None, outcome="cancelled"))
    calls.asked(Call("nobody", "kiosk-2", now, 0, 1, seen=None, outcome="cancelled"))  # sent to the counter
    calls.asked(Call("left open", "kiosk-2", now, 1, 1, seen=now + 0.2, outcome="open"))
    calls.seen("early", now + 0.05)  # the band heard it before the kiosk wrote it down
    calls.asked(Call("early", "kiosk-1", now, 1, 1, outcome="done"))
    # The agent itself took 2 s to answer the kiosk (a stalled machine): the band is judged from that answer.
    calls.asked(Call("stalled", "kiosk-1", now, 1, 1, seen=now + 2.3, outcome="done", answered=now + 2.0))
    # Answered at once, then 1.4 s to the band: late whatever the machine did.
    calls.asked(Call("slow push", "kiosk-2", now, 1, 1, seen=now + 1.5, outcome="done", answered=now + 0.1))
    judge_calls(day)
    bad = {(v.ids.get("assist_id"), v.what) for v in day.checks.violated(rows.HELP)}
    assert bad == {("late", "a call while the band was on duty reached it"),
                   ("lost", "a call while the band was on duty reached it"),
                   ("slow push", "a call while the band was on duty reached it"),
                   ("left open", "a call is taken or cancelled")}
    assert any("after 2.0 s" in n for n in day.checks.notes)
    assert day.ledger.figures["help delivery max (ms)"] == "1500"
    assert day.ledger.figures["help calls delivered to the band"] == "6"


def test_a_call_forgotten_by_a_restart_is_a_note(tmp_path):
    from soak.assist import Call, judge_calls, log

    day = SimpleNamespace(ledger=Ledger(), checks=Checks(tmp_path, 0.0, quiet=True), outages=Outages(), help=None)
    asked = time.monotonic()
    day.outages.begin("agent")
    day.outages.end("agent")
    log(day).asked(Call("gone", "kiosk-1", asked, 1, 1, outcome="forgotten"))
    judge_calls(day)
    assert not day.checks.violations and day.checks.notes


# The fleet's judges ------------------------------------------------------------------------------

def _device(dev_id: str, kind: str, state: str, since: str, **counters: int) -> dict:
    return {"id": dev_id, "kind": kind, "state": state, "since": since, "counters": counters}


def test_the_fleet_judge_tells_a_restarted_device_from_one_that_worked_on():
    """A restart is every counter fallen back, a printer's new connection, or an online device with a new
    since; a gauge that fell (labels_non_compliant) or a printer that went busy and back is not one."""
    from soak.fleet import _restarted

    before = {"hb": _device("hb", "sensor.heartbeat", "online", "t0", beats=40),
              "ap": _device("ap", "shelf_label.oepl", "online", "t0", polls=90, labels_non_compliant=3),
              "p1": _device("p1", "printer.escpos", "online", "t0", printed=7, reprints=0)}
    worked = {"hb": _device("hb", "sensor.heartbeat", "online", "t0", beats=52),
              "ap": _device("ap", "shelf_label.oepl", "online", "t0", polls=99, labels_non_compliant=0),
              "p1": _device("p1", "printer.escpos", "online", "t5", printed=9, reprints=0)}
    assert _restarted(before, worked, {"kiosk-1": 1}, {"kiosk-1": 1}) == []
    restarted = {"hb": _device("hb", "sensor.heartbeat", "online", "t0", beats=3),
                 "ap": _device("ap", "shelf_label.oepl", "online", "t9", polls=120, labels_non_compliant=0),
                 "p1": _device("p1", "printer.escpos", "online", "t5", printed=9, reprints=0)}
    got = _restarted(before, restarted, {"kiosk-1": 1}, {"kiosk-1": 2})
    assert [line.split(":")[0] for line in got] == ["hb", "ap", "kiosk-1's printer"]
    assert _restarted(before, {}, {}, {}) == ["hb: gone", "ap: gone", "p1: gone"]


def test_the_fleet_adopts_before_the_second_pc_then_runs_each_operation_once_among_the_faults():
    """The hub's version is retained on the store's topic when the second PC connects: it must hold it."""
    from soak.fleet import AGAIN, OPERATIONS, merge

    plan = [(name, None, 1.0) for name in ("paper out", "agent SIGKILL", "second PC with the same store id", "stale",
                                           "intruder")]
    orders = set()
    for seed in range(8):
        day = SimpleNamespace(minutes=1.5, rng=lambda name, seed=seed: random.Random(f"{seed}:{name}"))
        names = [name for name, _, _ in merge(plan, day, after="agent SIGKILL")]
        assert names[:3] == ["paper out", "agent SIGKILL", "fleet: the store's own file as the hub's version 1"]
        fleet = [n for n in names if n.startswith("fleet:")]
        assert sorted(fleet[1:]) == sorted(OPERATIONS)
        assert [n for n in names if n in ("second PC with the same store id", "stale", "intruder")] == [
            "second PC with the same store id", "stale", "intruder"]
        orders.add(tuple(names))
    assert len(orders) > 1  # the seed draws the order
    day = SimpleNamespace(minutes=10, rng=lambda name: random.Random(name))
    assert [n for n, _, _ in merge(plan, day, after="agent SIGKILL") if n.startswith("fleet:")][-1] == AGAIN
