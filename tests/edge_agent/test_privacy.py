"""Personal data kept no longer than needed, and who read it (edge_agent/privacy.py).

On the real store (SQLite, the group-commit writer) with an injected clock:
the sweep pseudonymises what the hub acknowledged once retention passed and
never touches what it has not; a return of a swept sale still works; pickup
codes are keyed hashes; reads land in the access log, are summarised to the
outbox exactly once and expire after their own retention; schema step 11
from version 10 with data in it. tests/edge_agent/test_privacy_agent.py
does the same through a running agent and the reference hub.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge_agent import catalog, orders, returns, sales
from edge_agent.config import PrivacyConfig, Role
from edge_agent.errors import StoreError
from edge_agent.privacy import Privacy
from edge_agent.store import Store, codec, keys, outbox
from edge_agent.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from sync.topics import ACCESS_SUMMARY, AccessSummary, OrderCreated

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
TOTE = catalog.CatalogItem(sku="TOTE-CANVAS", barcodes=["TOTE01"], name="Canvas Tote", price="50.00", currency="CNY",
                           stock_store=100, stock_online=100, version=1)


class Clock:
    """The sweep's clock, moved by the test."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run(coro):
    return asyncio.run(coro)


async def _store(path: Path) -> Store:
    store = Store(path / "store.db")
    await store.start()
    await store.write(lambda tx: catalog.upsert(tx.conn, [TOTE]))
    return store


def _sale(member: str | None = "M-1001") -> sales.SaleIn:
    return sales.SaleIn.model_validate({"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 2}],
                                        "member_id": member, "payment": {"method": "card", "reference": "T-1"}})


async def _sell(store: Store, member: str | None = "M-1001") -> dict:
    view, _ = await store.write(lambda tx: sales.record(tx, _sale(member), "kiosk-1", "store-001"))
    return view


async def _ack(store: Store, seq: int, at: datetime) -> None:
    await store.write(lambda tx: outbox.acknowledge(tx.conn, seq, at.isoformat()))


async def _sale_row(store: Store, seq: int) -> dict:
    body = await store.read(lambda c: c.execute("SELECT body FROM sales WHERE seq = ?", (seq,)).fetchone()[0])
    return codec.unpack(body)["event"]


def _privacy(store: Store, clock: Callable[[], datetime], **config) -> Privacy:
    return Privacy(store, PrivacyConfig(**config), "store-001", clock=clock)


def test_a_sale_is_pseudonymised_only_after_the_hubs_ack_and_retention(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock)
        try:
            acked = await _sell(store)
            unacked = await _sell(store, "M-2002")
            await _ack(store, acked["seq"], T0)
            clock.now = T0 + timedelta(days=29, hours=23)
            early = await privacy.sweep()
            before = await _sale_row(store, acked["seq"])
            clock.now = T0 + timedelta(days=30, minutes=1)
            late = await privacy.sweep()
            # A year on, the unacknowledged sale is still whole: the hub must get it as sold.
            clock.now = T0 + timedelta(days=365)
            await privacy.sweep()
            swept, kept = await _sale_row(store, acked["seq"]), await _sale_row(store, unacked["seq"])
            pending = await store.read(outbox.pending)
            cursor = await store.read(lambda c: c.execute(
                "SELECT value FROM meta WHERE key = 'privacy_swept_seq'").fetchone()[0])
            return early, before, late, swept, kept, pending, cursor, store.secret, acked, unacked
        finally:
            await store.stop()

    early, before, late, swept, kept, pending, cursor, key, acked, unacked = run(main())
    assert early.sales == 0 and before["member_id"] == "M-1001"
    assert late.sales == 1 and late.swept_to == acked["seq"] == cursor
    assert swept["member_id"] is None and swept["member_pseudonym"] == keys.pseudonym(key, "M-1001")
    assert "M-1001" not in json.dumps(swept)
    # Everything else of the sale stays for the store's own books.
    assert {k: v for k, v in swept.items() if k not in ("member_id", "member_pseudonym")} == {
        k: v for k, v in before.items() if k != "member_id"}
    assert kept["member_id"] == "M-2002" and "member_pseudonym" not in kept
    [event] = [e for e in pending if e.type == "retail.sale.completed"]
    assert event.seq == unacked["seq"] and event.data["member_id"] == "M-2002"


def test_a_return_of_a_swept_sale_works_and_names_the_member_by_pseudonym(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock)
        try:
            sale = await _sell(store)
            await _ack(store, sale["seq"], T0)
            clock.now = T0 + timedelta(days=40)
            await privacy.sweep()
            body = returns.ReturnIn.model_validate({"client_return_id": str(uuid.uuid4()), "sale": sale["id"],
                                                    "lines": [{"code": "TOTE01", "qty": 1}],
                                                    "reason": "Ms Wang says it is too small"})
            ret, _ = await store.write(lambda tx: returns.record(tx, body, "associate-1", "store-001"))
            await _ack(store, ret["seq"], clock.now)
            clock.now += timedelta(days=31)
            report = await privacy.sweep()
            stored = await store.read(lambda c: c.execute(
                "SELECT body FROM returns WHERE seq = ?", (ret["seq"],)).fetchone()[0])
            return sale, ret, report, codec.unpack(stored)["event"], store.secret
        finally:
            await store.stop()

    sale, ret, report, stored, key = run(main())
    assert sale["points_earned"] == 100
    assert ret["state"] == "accepted" and ret["total"] == "50.00"
    assert ret["member_id"] is None and ret["member_pseudonym"] == keys.pseudonym(key, "M-1001")
    assert ret["points_reversed"] == 50  # the hub takes them back from the member of sale_id
    # The return itself, once acknowledged and past retention: no member id to sweep, but its free text goes.
    assert report.returns == 0 and stored["reason"] is None and stored["member_pseudonym"] == ret["member_pseudonym"]


def test_pickup_codes_are_hashes_and_hand_over_checks_them(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock)
        try:
            order = OrderCreated.model_validate({"order_id": "WEB-7", "pickup_code": "482913", "member_id": "M-1001",
                                                 "lines": [{"sku": "TOTE-CANVAS", "qty": 1}]})
            await store.write(lambda tx: orders.receive(tx, [order], None))
            stored = await store.read(lambda c: c.execute(
                "SELECT pickup_code FROM orders WHERE order_id = 'WEB-7'").fetchone()[0])
            for status in ("picking", "ready"):
                await store.write(lambda tx: orders.set_status(tx, "WEB-7", orders.StatusIn(status=status), "pad-1"))
            wrong = await store.write(lambda tx: orders.set_status(
                tx, "WEB-7", orders.StatusIn(status="collected", pickup_code="482914"), "pad-1"))
            other = await store.write(lambda tx: orders.set_status(  # the right code in another order's QR
                tx, "WEB-7", orders.StatusIn(status="collected", pickup_code="RP1:WEB-8:482913"), "pad-1"))
            right = await store.write(lambda tx: orders.set_status(
                tx, "WEB-7", orders.StatusIn(status="collected", pickup_code="RP1:WEB-7:482913"), "pad-1"))
            after = await store.read(lambda c: c.execute(
                "SELECT pickup_code, member_id, status_seq FROM orders WHERE order_id = 'WEB-7'").fetchone())
            await _ack(store, store.last_seq, T0)
            clock.now = T0 + timedelta(days=31)
            report = await privacy.sweep()
            view = await store.read(lambda c: orders.get(c, "WEB-7"))
            return stored, wrong, other, right, after, report, view, store.secret
        finally:
            await store.stop()

    stored, wrong, other, right, after, report, view, key = run(main())
    assert "482913" not in stored and stored == keys.code_hash(key, "WEB-7", "482913")
    assert wrong.wrong_code and not wrong.changed and other.wrong_code
    assert right.changed and right.order["status"] == "collected"
    code, member, status_seq = after
    assert code == "" and member == "M-1001" and status_seq is not None  # the code went at collection
    assert report.orders == 1
    assert view["member_id"] is None and view["member_pseudonym"] == keys.pseudonym(key, "M-1001")


def test_reads_are_logged_summarised_once_and_expire_after_their_own_retention(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock, access_log_days=180)
        await privacy.start()
        try:
            log = privacy.access
            log.record("associate-1", Role.ASSOCIATE, "M-1001", "GET /v1/members/{member_id}")
            log.record("associate-1", Role.ASSOCIATE, "M-1001", "feed:member.arrived")
            log.record("associate-1", Role.ASSOCIATE, "M-2002", "feed:member.arrived")
            log.record("kiosk-1", Role.KIOSK, "M-1001", "feed:member.attached")
            log.record("kiosk-1", Role.KIOSK, None, "ignored: no member")
            first = await privacy.sweep()
            again = await privacy.sweep()  # nothing new: no second summary
            clock.now = T0 + timedelta(days=100)
            log.record("admin-1", Role.ADMIN, "M-3003", "GET /v1/members")
            second = await privacy.sweep()
            rows = await store.read(lambda c: c.execute(
                "SELECT at, client, role, member, what FROM access_log ORDER BY id").fetchall())
            clock.now = T0 + timedelta(days=181)
            expired = await privacy.sweep()
            left = await store.read(lambda c: c.execute("SELECT client, at FROM access_log").fetchall())
            summaries = [e for e in await store.read(outbox.pending) if e.type == ACCESS_SUMMARY]
            return first, again, second, rows, expired, left, summaries, store.secret
        finally:
            await privacy.stop()
            await store.stop()

    first, again, second, rows, expired, left, summaries, key = run(main())
    assert [r[1:] for r in rows] == [
        ("associate-1", "associate", keys.pseudonym(key, "M-1001"), "GET /v1/members/{member_id}"),
        ("associate-1", "associate", keys.pseudonym(key, "M-1001"), "feed:member.arrived"),
        ("associate-1", "associate", keys.pseudonym(key, "M-2002"), "feed:member.arrived"),
        ("kiosk-1", "kiosk", keys.pseudonym(key, "M-1001"), "feed:member.attached"),
        ("admin-1", "admin", keys.pseudonym(key, "M-3003"), "GET /v1/members"),
    ]
    assert rows[0][0] == T0.isoformat() and rows[-1][0] == (T0 + timedelta(days=100)).isoformat()
    assert again.summary is None
    assert [s.data for s in summaries] == [first.summary, second.summary]
    one = AccessSummary.model_validate(first.summary)
    assert one.reads == 4 and one.first == one.last == T0
    assert [(c.client, c.role, c.reads, c.members, c.what) for c in one.clients] == [
        ("associate-1", "associate", 3, 2, {"GET /v1/members/{member_id}": 1, "feed:member.arrived": 2}),
        ("kiosk-1", "kiosk", 1, 1, {"feed:member.attached": 1})]
    assert AccessSummary.model_validate(second.summary).reads == 1
    assert not any(m in json.dumps([s.data for s in summaries]) for m in ("M-1001", "M-2002", "M-3003", "p1-"))
    assert expired.access_deleted == 4 and left == [("admin-1", (T0 + timedelta(days=100)).isoformat())]


def test_an_unsummarised_read_outlives_its_retention_until_a_summary_counted_it(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock, access_log_days=0)
        try:
            await store.write(lambda tx: tx.execute(
                "INSERT INTO access_log (at, client, role, member, what) VALUES (?, 'pad-1', 'associate', 'p1-x', 'GET')",
                ((T0 - timedelta(days=400)).isoformat(),)))
            await store.write(lambda tx: tx.execute("UPDATE meta SET value = 0 WHERE key = 'privacy_summary_id'"))
            report = await privacy.sweep()
            left = await store.read(lambda c: c.execute("SELECT count(*) FROM access_log").fetchone()[0])
            return report, left
        finally:
            await store.stop()

    report, left = run(main())
    assert report.summary is not None and report.summary["reads"] == 1  # counted first, then deleted
    assert report.access_deleted == 1 and left == 0


def _version_10(path: Path) -> sqlite3.Connection:
    """A store database as agents of schema 10 left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:10]:
        conn.execute("BEGIN")
        if callable(step):
            step(conn)
        else:
            for statement in step:
                conn.execute(statement)
        conn.execute("COMMIT")
    conn.execute("PRAGMA user_version = 10")
    return conn


def test_schema_11_from_version_10_hashes_codes_and_dates_the_acks(tmp_path):
    conn = _version_10(tmp_path / "store.db")
    lines = json.dumps([{"sku": "TOTE-CANVAS", "qty": 1}])
    for order_id, code, status in (("WEB-1", "111111", "ready"), ("WEB-2", "222222", "collected")):
        conn.execute("INSERT INTO orders (order_id, pickup_code, member_id, lines, status, received_at, updated_at) "
                     "VALUES (?, ?, 'M-1001', ?, ?, '2026-10-01T00:00:00+00:00', '2026-10-01T00:00:00+00:00')",
                     (order_id, code, lines, status))
    conn.execute("UPDATE meta SET value = 7 WHERE key = 'last_seq'")
    conn.execute("UPDATE meta SET value = 5 WHERE key = 'acked_seq'")
    before = datetime.now(timezone.utc)

    assert migrate(conn) == 10
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 11

    key = (tmp_path / keys.KEY_FILE).read_bytes()
    assert len(key) == 32 and (tmp_path / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600
    rows = dict(conn.execute("SELECT order_id, pickup_code FROM orders").fetchall())
    assert rows == {"WEB-1": keys.code_hash(key, "WEB-1", "111111"), "WEB-2": ""}
    assert conn.execute("SELECT order_id, status_seq FROM orders ORDER BY order_id").fetchall() == [
        ("WEB-1", None), ("WEB-2", 7)]
    [(seq, at)] = conn.execute("SELECT seq, at FROM acks").fetchall()
    assert seq == 5 and datetime.fromisoformat(at) >= before  # retention counts from the upgrade
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'privacy_%'").fetchall())
    assert meta == {"privacy_swept_seq": 0, "privacy_summary_id": 0, "privacy_placed_seq": 0}
    conn.close()

    async def main():
        store = Store(tmp_path / "store.db")
        await store.start()
        try:
            ok = await store.write(lambda tx: orders.set_status(
                tx, "WEB-1", orders.StatusIn(status="collected", pickup_code="111111"), "pad-1"))
            return ok, store.secret
        finally:
            await store.stop()

    ok, secret = run(main())
    assert ok.changed and secret == key


def test_a_store_opened_with_another_key_is_refused(tmp_path):
    async def open_once():
        store = Store(tmp_path / "store.db")
        await store.start()
        await store.stop()

    run(open_once())
    (tmp_path / keys.KEY_FILE).unlink()  # lost: a new one would not check the stored codes
    with pytest.raises(StoreError, match="privacy.key is not the key this store database was used with"):
        run(open_once())


def test_the_feed_records_a_read_for_each_client_that_sees_a_member_unmasked():
    from edge_agent.bus import EventBus
    from edge_agent.feed import Feed
    from edge_core.bus import BusEvent

    reads: list[tuple] = []

    async def main():
        feed = Feed(EventBus())
        feed.on_read = lambda *read: reads.append(read)
        pad, _ = feed.connect(Role.ASSOCIATE, "associate-1", None, None)
        console, _ = feed.connect(Role.CONSOLE, "console-1", None, None)
        kiosk, _ = feed.connect(Role.KIOSK, "kiosk-1", None, None)
        await feed.handle(BusEvent("member.arrived", {"member_id": "M-1001", "tier": "gold"}, id=1))
        await feed.handle(BusEvent("member.attached", {"station": "kiosk-1", "member_id": "M-1001"}, id=2))
        await feed.handle(BusEvent("scan", {"station": "kiosk-2", "kind": "member", "ok": True,
                                            "fields": {"member_id": "M-2002"}}, id=3))
        await feed.handle(BusEvent("order.status", {"order_id": "WEB-1", "member_id": None}, id=4))
        await feed.handle(BusEvent("stock.low", {"sku": "TOTE-CANVAS"}, id=5))
        return console.queue.qsize(), [console.queue.get_nowait() for _ in range(console.queue.qsize())]

    seen_by_console, console_events = run(main())
    assert sorted(reads) == [  # clients are offered an event in no particular order
        ("associate-1", Role.ASSOCIATE, "M-1001", "feed:member.arrived"),
        ("associate-1", Role.ASSOCIATE, "M-1001", "feed:member.attached"),
        ("associate-1", Role.ASSOCIATE, "M-2002", "feed:scan"),
        ("kiosk-1", Role.KIOSK, "M-1001", "feed:member.attached"),
    ]
    # The console saw the scan and the order masked, and is not counted as having read anyone.
    assert seen_by_console == 3 and all("M-2002" not in json.dumps(e.data) for e in console_events)


def test_acks_within_a_minute_share_one_row_and_retention_counts_from_its_first(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock, retention_days=1)
        try:
            first, second, third = [await _sell(store) for _ in range(3)]
            await _ack(store, first["seq"], T0)
            await _ack(store, second["seq"], T0 + timedelta(seconds=59))
            await _ack(store, first["seq"], T0 + timedelta(seconds=70))  # again: nothing changes
            await _ack(store, third["seq"], T0 + timedelta(seconds=61))
            rows = await store.read(lambda c: c.execute("SELECT seq, at FROM acks ORDER BY seq").fetchall())
            clock.now = T0 + timedelta(days=1, seconds=30)
            report = await privacy.sweep()
            left = await store.read(lambda c: c.execute("SELECT seq FROM acks").fetchall())
            return first, second, third, rows, report, left
        finally:
            await store.stop()

    first, second, third, rows, report, left = run(main())
    assert rows == [(second["seq"], T0.isoformat()), (third["seq"], (T0 + timedelta(seconds=61)).isoformat())]
    assert report.sales == 2 and report.swept_to == second["seq"]  # the third's ack is a day old only at 1 d 61 s
    assert left == [(third["seq"],)]


def test_the_privacy_section_has_defaults_and_errors_with_lines():
    from edge_agent.config import parse
    from edge_core.errors import ConfigError

    base = "store:\n  id: store-001\n  name: Demo\n"
    assert parse(base).privacy == PrivacyConfig(retention_days=30, access_log_days=180, sweep_interval=3600)
    assert parse(base + "privacy:\n  # retention_days: 7\n").privacy == PrivacyConfig()  # every key commented out
    assert parse(base + "privacy:\n  retention_days: 0.5\n").privacy.retention_days == 0.5
    with pytest.raises(ConfigError) as err:
        parse(base + "privacy:\n  retention_days: -1\n  keep_forever: true\n", "devices.yaml")
    problems = "\n".join(err.value.problems)
    assert "devices.yaml:5:" in problems and "retention_days" in problems
    assert "devices.yaml:6:" in problems and "keep_forever" in problems


def test_printed_documents_naming_members_go_after_printings_own_retention(tmp_path):
    async def main():
        store = await _store(tmp_path)
        clock = Clock(T0)
        privacy = _privacy(store, clock)
        try:
            for job, state, finished in (("old-done", "done", T0 - timedelta(days=8)),
                                         ("new-done", "done", T0 - timedelta(days=6)),
                                         ("old-failed", "failed", T0 - timedelta(days=31)),
                                         ("new-failed", "failed", T0 - timedelta(days=8)),
                                         ("queued", "queued", None)):
                await store.write(lambda tx: tx.execute(
                    "INSERT INTO print_jobs (id, device, kind, data, state, created_at, finished_at) "
                    "VALUES (?, 'printer-1', 'sale_receipt', ?, ?, ?, ?)",
                    (job, json.dumps({"member_id": "M-1001"}), state, (T0 - timedelta(days=40)).isoformat(),
                     finished.isoformat() if finished else None)))
            report = await privacy.sweep()
            left = await store.read(lambda c: [r[0] for r in c.execute("SELECT id FROM print_jobs ORDER BY seq")])
            return report, left
        finally:
            await store.stop()

    report, left = run(main())
    assert report.print_jobs_deleted == 2 and left == ["new-done", "new-failed", "queued"]
