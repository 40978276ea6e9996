"""Retention of the hub's raw events (sync/hub/retention.py) on SQLite and on a real PostgreSQL, without MQTT.

Times are set through the transaction's ``now`` (what ``received_at`` gets)
and the purge's injected ``now``; the timer runs on a short interval with an
injected clock, and every wait on it is on a condition with a timeout.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sync.hub import cli, retention
from sync.hub.db import HubDB, PostgresHubDB, open_db
from sync.hub.errors import HubDBError
from sync.hub.ingest import IngestResult, parse_batch
from sync.hub.schema import SCHEMA_VERSION
from sync.topics import ACCESS_SUMMARY

DAYS = 7


def event(store: str, seq: int, id_: str | None = None, type_: str = "retail.sale.completed",
          stream: str | None = None) -> dict:
    data = {"total": "1.00"} if type_ != ACCESS_SUMMARY else {
        "first": f"2026-01-01T00:00:{seq % 60:02d}+00:00", "last": "2026-01-01T01:00:00+00:00", "reads": 2,
        "clients": [{"client": "till-1", "role": "cashier", "reads": 2, "members": 1, "what": {"card": 2}}]}
    return {"specversion": "1.0", "id": id_ or f"{store}-{seq}", "source": f"edge/{store}", "type": type_,
            "time": "2026-01-01T10:00:00+00:00", "seq": seq, "data": data, **({"stream": stream} if stream else {})}


def rows(store: str, seqs, **kw):
    return parse_batch(store, json.dumps([event(store, s, **kw) for s in seqs]).encode())


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def ingest_at(db: HubDB, when: datetime, store: str, seqs, **kw) -> IngestResult:
    """Ingest as if the hub received the batch at ``when``."""
    with db.transaction() as tx:
        tx.now = iso(when)
        return tx.ingest(store, rows(store, seqs, **kw))


def held(db: HubDB, store: str) -> list[int]:
    return sorted(int(s) for (s,) in db.query("SELECT seq FROM events WHERE store = ?", (store,)))


def day_partitions(db: HubDB, *days: datetime) -> None:
    """PostgreSQL: the partitions of these (past) days, as a hub running then would have made them."""
    for d in days:
        with db.transaction() as tx:
            retention.ensure_partitions(tx, d, ahead=0)


@pytest.fixture
def db(db_url: str):
    d = open_db(db_url)
    yield d
    d.close()


NOW = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
CUT = retention.cutoff(NOW, DAYS)


def test_the_cutoff_is_midnight_utc_days_before_today():
    assert retention.cutoff(datetime(2026, 12, 7, 23, 59, tzinfo=timezone.utc), 7) == datetime(
        2026, 11, 30, tzinfo=timezone.utc)
    assert retention.cutoff(datetime(2026, 12, 8, 1, 0, tzinfo=timezone(timedelta(hours=8))), 1) == datetime(
        2026, 12, 6, tzinfo=timezone.utc)  # 01:00 at +08:00 is the 7th in UTC
    with pytest.raises(ValueError):
        retention.cutoff(NOW, 0)


def test_events_older_than_the_policy_leave_and_nothing_younger_does(db):
    if isinstance(db, PostgresHubDB):
        # Two days with their own partitions; the oldest day has none (its events are in the default).
        day_partitions(db, CUT - timedelta(days=1), CUT)
    ingest_at(db, CUT - timedelta(days=10), "store-a", [1, 2, 3])
    ingest_at(db, CUT - timedelta(milliseconds=1), "store-a", [4, 5])
    ingest_at(db, CUT, "store-a", [6, 7])
    ingest_at(db, NOW - timedelta(days=1), "store-a", [8])
    ingest_at(db, NOW, "store-b", [1, 2])
    before = [(r.store, r.contiguous, r.events) for r in db.stores()]

    result = retention.purge(db, DAYS, NOW, batch=2)  # small batches: the default partition / SQLite in steps

    assert (result.removed, result.cutoff) == (5, CUT.date().isoformat())
    assert held(db, "store-a") == [6, 7, 8] and held(db, "store-b") == [1, 2]
    assert [(r.store, r.contiguous, r.events) for r in db.stores()] == before == [("store-a", 8, 8), ("store-b", 2, 2)]
    if isinstance(db, PostgresHubDB):
        day = (CUT - timedelta(days=1)).strftime("%Y%m%d")
        assert result.partitions == (f"events_{day}",)  # dropped whole, not emptied
        with db.transaction() as tx:
            names = [p.name for p in retention.partitions(tx)]
        assert f"events_{day}" not in names and f"events_{CUT:%Y%m%d}" in names and "events_default" in names
    assert db.query("SELECT cutoff, removed FROM purges") == [(CUT.date().isoformat(), 5)]
    # A second purge finds nothing more.
    assert retention.purge(db, DAYS, NOW).removed == 0
    assert held(db, "store-a") == [6, 7, 8]


def test_a_resend_of_a_purged_event_is_a_duplicate_and_opens_no_gap(db):
    ingest_at(db, CUT - timedelta(days=2), "store-a", [1, 2, 3, 4, 5])
    assert retention.purge(db, DAYS, NOW).removed == 5
    # The outbox resends after an outage (or a restored backup does): all held once, purged since.
    r = db.ingest("store-a", rows("store-a", [3, 4, 5, 6]))
    assert (r.contiguous, r.inserted, r.duplicates, r.gaps_opened) == (6, 1, 3, [])
    # Another event at a purged position cannot be told from the one that was there: a duplicate too.
    r = db.ingest("store-a", rows("store-a", [2], id_="another-event"))
    assert (r.contiguous, r.inserted, r.duplicates, r.conflicts) == (6, 0, 1, [])
    assert held(db, "store-a") == [6]
    assert db.store("store-a").open_gaps == 0 and db.store("store-a").events == 6
    assert db.query("SELECT resent_purged FROM stores WHERE store = 'store-a'") == [(4,)]
    # A held event is still checked as before: a different id at a held position is a conflict.
    r = db.ingest("store-a", rows("store-a", [6], id_="other-6"))
    assert (r.duplicates, [c[0] for c in r.conflicts]) == (1, [6])


def test_access_summaries_outlive_the_purge_for_the_privacy_report(db, db_url, capsys):
    ingest_at(db, CUT - timedelta(days=3), "store-a", [1, 2])
    ingest_at(db, CUT - timedelta(days=3), "store-a", [3], type_=ACCESS_SUMMARY)
    ingest_at(db, NOW, "store-a", [4], type_=ACCESS_SUMMARY)
    result = retention.purge(db, DAYS, NOW)
    assert (result.removed, result.kept) == (3, 1)
    assert held(db, "store-a") == [4]
    assert len(db.access_summaries("store-a")) == 2
    assert cli.main(["privacy", "store-a", "--db", db_url]) == 0
    assert "4 reads in 2 summaries" in capsys.readouterr().out


def test_edge_hub_stores_counts_stay_right_on_the_bounded_tables(db, db_url, capsys):
    ingest_at(db, CUT - timedelta(days=1), "store-a", [1, 2, 3, 5])  # a gap at 4
    ingest_at(db, NOW, "store-a", [6])
    db.ingest("store-a", rows("store-a", [1], id_="conflict-1"))  # kept aside before the purge
    assert retention.purge(db, DAYS, NOW).removed == 4
    assert cli.main(["stores", "--db", db_url]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("store-a"))
    # STREAMS ACKED EVENTS OPEN-GAPS CONFLICTS: from stores/streams/gaps/conflicts, none purged.
    assert line.split()[3:8] == ["1", "3", "5", "1", "1"]
    assert len(db.conflicts("store-a")) == 1
    # The gap closes when its event comes, though the events around it are gone. Seq 5, above the ack
    # and past the policy, went too: the store never had it acknowledged, so its outbox sends it again.
    assert db.ingest("store-a", rows("store-a", [4])).contiguous == 4
    assert db.store("store-a").open_gaps == 0
    r = db.ingest("store-a", rows("store-a", [5, 6]))
    assert (r.contiguous, r.inserted, r.duplicates) == (6, 1, 1)
    assert held(db, "store-a") == [4, 5, 6]


def test_sqlite_purges_in_short_batches_and_ingest_goes_on_between_them(tmp_path: Path):
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    other = open_db(f"sqlite:///{tmp_path}/hub.db")
    try:
        for n in range(10):
            ingest_at(db, CUT - timedelta(days=1), "store-a", range(n * 100 + 1, n * 100 + 101))
        transactions, interleaved = [], []
        real = db.transaction

        def counted():
            transactions.append(1)
            # Another worker's ingest between two batches: it gets the write lock each time.
            interleaved.append(other.ingest("store-b", rows("store-b", [len(interleaved) + 1])).contiguous)
            return real()

        db.transaction = counted  # type: ignore[method-assign]
        assert retention.purge(db, DAYS, NOW, batch=100).removed == 1000
        assert len(transactions) >= 10
        assert interleaved == list(range(1, len(transactions) + 1))
        assert held(db, "store-a") == [] and db.store("store-b").contiguous == len(transactions)
    finally:
        db.close()
        other.close()


def test_sqlite_purge_walks_past_younger_events_a_clock_step_put_among_old_ones(tmp_path: Path):
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    try:
        ingest_at(db, CUT - timedelta(days=1), "store-a", [1, 2])
        ingest_at(db, NOW, "store-a", [3])
        ingest_at(db, CUT - timedelta(days=1), "store-a", [4, 5])  # the clock went back a week, then forward
        ingest_at(db, NOW, "store-a", [6, 7, 8, 9, 10])
        assert retention.purge(db, DAYS, NOW, batch=3).removed == 4
        assert held(db, "store-a") == [3, 6, 7, 8, 9, 10]
    finally:
        db.close()


def wait_until(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)  # polling interval of a condition, not a synchronization
    return got


def test_the_timer_purges_on_its_own_as_days_pass(db, db_url):
    clock = [NOW]
    ingest_at(db, NOW - timedelta(days=1), "store-a", [1, 2])
    ingest_at(db, NOW, "store-a", [3])
    timer = retention.RetentionTimer(db_url, DAYS, every_s=0.05, clock=lambda: clock[0])
    timer.start()
    try:
        wait_until("three ticks", lambda: timer.ticks >= 3)
        assert held(db, "store-a") == [1, 2, 3]  # nothing past the policy yet
        clock[0] = NOW + timedelta(days=DAYS)  # yesterday's events are now past it, today's not
        wait_until("yesterday's events purged", lambda: held(db, "store-a") == [3])
        clock[0] = NOW + timedelta(days=DAYS + 1)
        wait_until("today's events purged", lambda: held(db, "store-a") == [])
        if isinstance(db, PostgresHubDB):
            # The days ahead of the clock got their partitions on the timer's ticks.
            ahead = (clock[0] + timedelta(days=retention.AHEAD_DAYS)).strftime("%Y%m%d")
            with db.transaction() as tx:
                assert f"events_{ahead}" in [p.name for p in retention.partitions(tx)]
    finally:
        timer.stop()
    assert db.store("store-a").events == 3


def test_a_failing_pass_is_logged_once_and_the_timer_goes_on(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, "sync.hub.retention")
    url = f"sqlite:///{tmp_path}/hub.db"
    open_db(url).close()
    timer = retention.RetentionTimer(url, DAYS, every_s=0.02)
    timer.start()
    try:
        wait_until("a pass", lambda: timer.ticks >= 1)
        real = timer._db.transaction

        def broken():
            raise HubDBError("disk full")

        timer._db.transaction = broken  # type: ignore[method-assign, union-attr]
        wait_until("failed passes", lambda: timer.failures >= 3)
        ticks = timer.ticks
        timer._db.transaction = real  # type: ignore[method-assign, union-attr]
        wait_until("working again", lambda: timer.ticks > ticks and "retention: working again" in caplog.text)
        assert caplog.text.count("disk full") == 1
    finally:
        timer.stop()


def test_two_workers_ingesting_one_store_at_once_store_each_event_once(db_url):
    """Two connections (two hub workers on a shared subscription) take the same batches in different
    orders at once; without the row lock the lookup would let both insert on partitioned PostgreSQL."""
    n = 600
    batches = [list(range(a, min(a + 7, n + 1))) for a in range(1, n + 1, 5)]  # overlapping: each seq twice
    results: list[list[IngestResult]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(i: int) -> None:
        d = open_db(db_url)
        try:
            order = batches[:]
            random.Random(i).shuffle(order)
            start.wait()
            for b in order:
                results[i].append(d.ingest("store-a", rows("store-a", b)))
        except BaseException as err:  # reported by the main thread
            errors.append(err)
        finally:
            d.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = open_db(db_url)
    try:
        assert db.query("SELECT seq, count(*) FROM events GROUP BY seq HAVING count(*) > 1") == []
        assert held(db, "store-a") == list(range(1, n + 1))
        assert sum(r.inserted for rs in results for r in rs) == n
        row = db.store("store-a")
        assert (row.contiguous, row.events, row.open_gaps) == (n, n, 0)
    finally:
        db.close()


def test_a_version_2_postgres_table_becomes_a_partition_and_keeps_every_row(postgres_url):
    import psycopg

    old = iso(NOW - timedelta(days=30))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO hub_meta VALUES ('schema_version', '2')")
        conn.execute("""CREATE TABLE stores (store TEXT PRIMARY KEY, contiguous BIGINT NOT NULL DEFAULT 0,
            high BIGINT NOT NULL DEFAULT 0, events BIGINT NOT NULL DEFAULT 0, conflicts BIGINT NOT NULL DEFAULT 0,
            rejected BIGINT NOT NULL DEFAULT 0, last_event_at TEXT, status TEXT, status_version TEXT,
            status_since TEXT, status_at TEXT, health TEXT, health_at TEXT, stream TEXT, live_stream TEXT,
            streams BIGINT NOT NULL DEFAULT 0)""")
        conn.execute("""CREATE TABLE streams (store TEXT NOT NULL, stream TEXT NOT NULL,
            contiguous BIGINT NOT NULL DEFAULT 0, high BIGINT NOT NULL DEFAULT 0, events BIGINT NOT NULL DEFAULT 0,
            first_at TEXT NOT NULL, last_event_at TEXT, prev_stream TEXT, prev_seq BIGINT, successor TEXT,
            end_seq BIGINT, announced_at TEXT, superseded_at TEXT, PRIMARY KEY (store, stream))""")
        conn.execute("""CREATE TABLE events (store TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL,
            id TEXT NOT NULL, type TEXT NOT NULL, time TEXT, event TEXT NOT NULL, received_at TEXT NOT NULL,
            PRIMARY KEY (store, stream, seq))""")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO events VALUES ('store-a', 's1', %s, %s, 't', NULL, '{}', %s)",
                            [(s, f"e{s}", old if s <= 500 else iso(NOW)) for s in range(1, 1001)])
        conn.execute("INSERT INTO streams (store, stream, contiguous, high, events, first_at) "
                     "VALUES ('store-a', 's1', 1000, 1000, 1000, %s)", (old,))
        conn.execute("INSERT INTO stores (store, contiguous, high, events, stream, streams) "
                     "VALUES ('store-a', 1000, 1000, 1000, 's1', 1)")
    db = open_db(postgres_url)
    try:
        assert db.query("SELECT value FROM hub_meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
        assert db.query("SELECT relkind FROM pg_class WHERE relname = 'events'") == [("p",)]
        assert db.event_ids("store-a", "s1") == {s: f"e{s}" for s in range(1, 1001)}
        tomorrow = (NOW + timedelta(days=1)).strftime("%Y%m%d")
        with db.transaction() as tx:
            parts = {p.name: p for p in retention.partitions(tx)}
        assert parts[f"events_before_{tomorrow}"].lo is None
        # Dedupe and the ack go on over the old rows; new days get partitions of their own.
        # (The old rows hold ids e999 and e1000: these events are conflicts, checked against the old table.)
        r = db.ingest("store-a", rows("store-a", [999, 1000, 1001], stream="s1"))
        assert (r.contiguous, r.inserted, r.duplicates, [c[0] for c in r.conflicts]) == (1001, 1, 2, [999, 1000])
        with db.transaction() as tx:
            tx.now = iso(NOW + timedelta(days=2))
            tx.ingest("store-a", rows("store-a", [1002], stream="s1"))
        assert db.query("SELECT tableoid::regclass::text FROM events WHERE seq = 1002") == [
            (f"events_{NOW + timedelta(days=2):%Y%m%d}",)]
        # The old table is dropped whole once all of it is past the policy.
        assert retention.purge(db, DAYS, NOW).removed == 0
        result = retention.purge(db, DAYS, NOW + timedelta(days=DAYS + 1))
        assert result.partitions == (f"events_before_{tomorrow}",) and result.removed == 1001
        assert held(db, "store-a") == [1002] and len(db.conflicts("store-a")) == 2
    finally:
        db.close()
    reopened = open_db(postgres_url)  # opening again changes nothing
    assert held(reopened, "store-a") == [1002]
    reopened.close()


def test_an_event_for_a_day_without_a_partition_lands_in_the_default_and_moves_to_its_day(postgres_url):
    db = open_db(postgres_url)
    try:
        later = NOW + timedelta(days=retention.AHEAD_DAYS + 5)
        with db.transaction() as tx:
            tx.now = iso(later)
            tx.ingest("store-a", rows("store-a", [1, 2]))
        assert db.query("SELECT DISTINCT tableoid::regclass::text FROM events") == [("events_default",)]
        with db.transaction() as tx:
            made = retention.ensure_partitions(tx, later, ahead=0)
        assert made == [f"events_{later:%Y%m%d}"]
        assert db.query("SELECT DISTINCT tableoid::regclass::text FROM events") == [(made[0],)]
        assert held(db, "store-a") == [1, 2]
    finally:
        db.close()


def test_the_retention_command_purges_once_and_reports(db, db_url, capsys):
    ingest_at(db, datetime.now(timezone.utc) - timedelta(days=DAYS + 2), "store-a", [1, 2])
    ingest_at(db, datetime.now(timezone.utc), "store-a", [3])
    assert cli.main(["retention", "--db", db_url]) == 0
    assert "events held: 3" in capsys.readouterr().out
    assert cli.main(["retention", "--db", db_url, "--days", str(DAYS)]) == 0
    out = capsys.readouterr().out
    assert "purged 2 events received before" in out and "events held: 1" in out
    assert cli.main(["retention", "--db", db_url, "--days", "0"]) == 2
