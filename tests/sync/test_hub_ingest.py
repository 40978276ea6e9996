"""The hub's ingest arithmetic and its SQLite database, without MQTT."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from sync.hub.broker import parse_broker_url
from sync.hub.db import SQLiteHubDB, open_db
from sync.hub.errors import BatchRejected, BrokerURLError, DBDriverMissing, HubDBError
from sync.hub.ingest import advance, new_gaps, parse_batch
from sync.hub.schema import SCHEMA_VERSION


def event(store: str, seq: int | None, id_: str | None = None, **extra) -> dict:
    ev = {"specversion": "1.0", "id": id_ or f"{store}-{seq}", "source": f"edge/{store}",
          "type": "retail.sale.completed", "time": "2024-11-11T10:00:00+08:00",
          "datacontenttype": "application/json", "data": {"total": "1.00"}, **extra}
    if seq is not None:
        ev["seq"] = seq
    return ev


def batch(store: str, seqs, **kw) -> bytes:
    return json.dumps([event(store, s, **kw) for s in seqs]).encode()


def rows(store: str, seqs, **kw):
    return parse_batch(store, batch(store, seqs, **kw))


@pytest.fixture
def db(db_url: str):
    d = open_db(db_url)
    yield d
    d.close()


# Pure arithmetic -----------------------------------------------------------------

def test_advance_stops_at_the_first_hole():
    assert advance(0, [1, 2, 3]) == 3
    assert advance(2, [3, 4, 6, 7]) == 4
    assert advance(2, [4, 5]) == 2
    assert advance(5, [1, 2, 6]) == 6  # seqs at or below contiguous are ignored
    assert advance(0, []) == 0


def test_new_gaps_are_holes_above_the_highest_seq_held():
    assert new_gaps(0, [1, 2]) == []
    assert new_gaps(2, [5, 6]) == [(3, 4)]
    assert new_gaps(2, [5, 7, 10]) == [(3, 4), (6, 6), (8, 9)]
    assert new_gaps(6, [3, 4]) == []  # filling an old hole opens none


# Parsing: a bad batch is refused whole -------------------------------------------------

def test_parse_sorts_by_seq_and_keeps_the_whole_event():
    got = rows("store-a", [3, 1, 2])
    assert [r.seq for r in got] == [1, 2, 3]
    assert json.loads(got[0].event)["data"] == {"total": "1.00"}
    assert got[0].id == "store-a-1" and got[0].type == "retail.sale.completed"


def test_a_single_event_object_is_a_batch_of_one():
    assert [r.seq for r in parse_batch("store-a", json.dumps(event("store-a", 7)).encode())] == [7]


@pytest.mark.parametrize("payload, reason", [
    (b"not json", "json"),
    (b"\xff\xfe", "json"),
    (b"[]", "schema"),
    (b'[{"specversion": "1.0"}]', "schema"),
    (batch("store-b", [1]), "source"),
    (json.dumps([event("store-a", 1), event("store-a", None)]).encode(), "seq"),
    (json.dumps([event("store-a", 1), event("store-a", 1, id_="other")]).encode(), "seq"),
    (json.dumps([event("store-a", 0)]).encode(), "schema"),
    (b"[" * 100_000, "json"),
])
def test_bad_batches_are_refused_with_a_reason(payload, reason):
    with pytest.raises(BatchRejected) as err:
        parse_batch("store-a", payload)
    assert err.value.reason == reason


def test_an_oversized_payload_is_refused_before_parsing():
    with pytest.raises(BatchRejected) as err:
        parse_batch("store-a", b"x" * 101, max_bytes=100)
    assert err.value.reason == "size"


def test_one_foreign_event_refuses_the_whole_batch(db):
    mixed = json.dumps([event("store-a", 1), event("store-b", 2)]).encode()
    with pytest.raises(BatchRejected):
        parse_batch("store-a", mixed)
    assert db.event_count() == 0


def test_the_same_event_twice_in_a_batch_is_kept_once():
    ev = event("store-a", 1)
    assert len(parse_batch("store-a", json.dumps([ev, ev]).encode())) == 1


# Database ---------------------------------------------------------------------------------

def test_contiguous_advances_over_a_filled_gap(db):
    assert db.ingest("store-a", rows("store-a", [1, 2])).contiguous == 2
    res = db.ingest("store-a", rows("store-a", [5, 6]))
    assert (res.contiguous, res.gaps_opened) == (2, [(3, 4)])
    assert [(g.first, g.last, g.closed_at) for g in db.gaps("store-a")] == [(3, 4, None)]
    assert db.store("store-a").open_gaps == 1
    res = db.ingest("store-a", rows("store-a", [3, 4]))
    assert (res.contiguous, res.gaps_closed) == (6, [(3, 4)])
    assert db.gaps("store-a")[0].closed_at is not None
    assert db.store("store-a").open_gaps == 0
    assert sorted(db.event_ids("store-a")) == [1, 2, 3, 4, 5, 6]


def test_a_partly_filled_gap_advances_only_to_the_next_hole(db):
    db.ingest("store-a", rows("store-a", [1]))
    db.ingest("store-a", rows("store-a", [5]))
    assert db.ingest("store-a", rows("store-a", [2, 3])).contiguous == 3
    assert db.store("store-a").open_gaps == 1
    assert db.ingest("store-a", rows("store-a", [4])).contiguous == 5


def test_a_long_run_beyond_a_gap_is_walked_in_chunks(db):
    db.ingest("store-a", rows("store-a", range(2, 2600)))
    assert db.ingest("store-a", rows("store-a", [1])).contiguous == 2599


def test_duplicates_are_ignored_and_reacknowledged(db):
    db.ingest("store-a", rows("store-a", [1, 2, 3]))
    res = db.ingest("store-a", rows("store-a", [2, 3, 4]))
    assert (res.contiguous, res.inserted, res.duplicates, res.conflicts) == (4, 1, 2, [])
    res = db.ingest("store-a", rows("store-a", [1, 2]))
    assert (res.contiguous, res.inserted, res.duplicates) == (4, 0, 2)
    assert db.store("store-a").events == 4


def test_a_reused_seq_with_another_id_is_a_conflict_kept_whole_and_the_first_stays(db):
    db.ingest("store-a", rows("store-a", [1, 2]))
    imposter = parse_batch("store-a", json.dumps([event("store-a", 2, id_="imposter")]).encode())
    res = db.ingest("store-a", imposter)
    assert res.conflicts == [(2, "store-a-2", "imposter")]
    assert res.contiguous == 2
    assert db.event_ids("store-a")[2] == "store-a-2"
    assert db.store("store-a").conflicts == 1
    # Kept whole, and an identity issue to alert on; the same imposter again is not counted twice.
    [kept] = db.conflicts("store-a")
    assert (kept["seq"], kept["id"], kept["kept_id"]) == (2, "imposter", "store-a-2")
    assert json.loads(kept["event"])["data"] == {"total": "1.00"}
    assert db.ingest("store-a", imposter).conflicts == []
    assert db.store("store-a").conflicts == 1
    [issue] = db.identity_issues("store-a")
    assert (issue.code, issue.subject, issue.cleared_at) == ("stream_conflict", "(legacy)", None)
    assert "imposter" in issue.detail and db.store("store-a").identity == 1


STREAM_A, STREAM_B, STREAM_C = (str(uuid.UUID(int=i)) for i in (1, 2, 3))


def srows(store: str, stream: str, seqs, prev: tuple[str, int] | None = None):
    evs = [event(store, s, id_=f"{stream[-4:]}-{s}", stream=stream) for s in seqs]
    if prev is not None and seqs and seqs[0] == 1:
        evs[0].update(prevstream=prev[0], prevseq=prev[1])
    return parse_batch(store, json.dumps(evs).encode())


def test_each_stream_has_its_own_seq_space_and_ack(db):
    assert db.ingest("store-a", srows("store-a", STREAM_A, [1, 2, 3])).contiguous == 3
    # A restart: the next run's stream starts at 1 again, naming where the first ended.
    res = db.ingest("store-a", srows("store-a", STREAM_B, [1, 2], prev=(STREAM_A, 3)))
    assert (res.stream, res.contiguous, res.inserted, res.conflicts, res.identity) == (STREAM_B, 2, 2, [], [])
    assert [(s.stream, s.contiguous, s.events, s.prev_stream, s.successor) for s in db.streams("store-a")] == [
        (STREAM_A, 3, 3, None, STREAM_B), (STREAM_B, 2, 2, STREAM_A, None)]
    row = db.store("store-a")
    assert (row.stream, row.contiguous, row.events, row.streams, row.conflicts, row.identity) == (
        STREAM_B, 2, 5, 2, 0, 0)
    assert [(s, q) for s, q, _, _ in db.store_events("store-a")] == [
        (STREAM_A, 1), (STREAM_A, 2), (STREAM_A, 3), (STREAM_B, 1), (STREAM_B, 2)]


def test_a_batch_holds_one_stream_and_chain_attributes_only_on_a_first_event():
    mixed = [event("s", 1, stream=STREAM_A), event("s", 2, id_="x", stream=STREAM_B)]
    with pytest.raises(BatchRejected) as err:
        parse_batch("s", json.dumps(mixed).encode())
    assert err.value.reason == "stream"
    late = [event("s", 2, stream=STREAM_B, prevstream=STREAM_A, prevseq=3)]
    with pytest.raises(BatchRejected):
        parse_batch("s", json.dumps(late).encode())
    with pytest.raises(BatchRejected):
        parse_batch("s", json.dumps([event("s", 1, stream="not a stream id!")]).encode())
    for prevseq in (0, 2**63, 2**70):  # a stream ends at seq 1 or later, within BIGINT
        with pytest.raises(BatchRejected):
            parse_batch("s", json.dumps([event("s", 1, stream=STREAM_B, prevstream=STREAM_A,
                                               prevseq=prevseq)]).encode())


def test_the_end_of_a_stream_its_successor_names_is_a_gap_until_it_arrives(db):
    db.ingest("store-a", srows("store-a", STREAM_A, [1, 2]))
    db.ingest("store-a", srows("store-a", STREAM_B, [1], prev=(STREAM_A, 5)))
    assert [(g.stream, g.first, g.last, g.closed_at) for g in db.gaps("store-a")] == [(STREAM_A, 3, 5, None)]
    assert db.ingest("store-a", srows("store-a", STREAM_A, [3, 4, 5])).contiguous == 5
    assert [g.closed_at is not None for g in db.gaps("store-a")] == [True]
    assert db.identity_issues("store-a") == []


def test_a_database_that_went_back_is_noticed_and_loses_nothing(db):
    # A backup taken at seq 2 of stream A; the PC went on to seq 4, then the backup was restored.
    db.ingest("store-a", srows("store-a", STREAM_A, [1, 2, 3, 4]))
    res = db.ingest("store-a", srows("store-a", STREAM_B, [1, 2], prev=(STREAM_A, 2)))
    assert res.contiguous == 2 and res.inserted == 2
    [issue] = db.identity_issues("store-a")
    assert (issue.code, issue.subject) == ("database_restored", STREAM_A)
    assert "2 events of" in issue.detail and "No event is lost" in issue.detail
    # A second copy of the same database continuing stream A too: counted again.
    db.ingest("store-a", srows("store-a", STREAM_C, [1], prev=(STREAM_A, 4)))
    [issue] = db.identity_issues("store-a")
    assert issue.count == 2 and STREAM_B in issue.detail and STREAM_C in issue.detail
    assert db.store("store-a").events == 7 and db.store("store-a").conflicts == 0


def test_two_streams_announced_in_turn_are_two_agents_as_each_worker_sees_them():
    from sync.hub.service import _Turns

    turns = _Turns()
    assert turns.announce("store-a", STREAM_A) is None
    assert turns.announce("store-a", STREAM_A) is None  # a reconnect of the same run
    assert turns.announce("store-a", STREAM_B) is None  # a restart, or a new PC: not a duplicate
    assert turns.announce("store-a", STREAM_A) == STREAM_B  # the first run again: two agents
    assert turns.announce("store-a", STREAM_B) == STREAM_A
    assert turns.announce("store-b", STREAM_B) is None  # stores do not share turns
    # Two workers see the same statuses, in the order they were sent, but not at the same time:
    # a worker that lags behind a restart (A, then B) sees no turn.
    w1, w2 = _Turns(), _Turns()
    for stream in (STREAM_A, STREAM_B, STREAM_C):
        assert w1.announce("store-c", stream) is None
    for stream in (STREAM_A, STREAM_B, STREAM_C):
        assert w2.announce("store-c", stream) is None


def test_a_duplicate_is_recorded_counted_and_cleared_once_quiet(db):
    with db.transaction() as tx:
        tx.announce("store-a", STREAM_A)
        tx.announce("store-a", STREAM_B)
        tx.duplicate("store-a", (STREAM_A, STREAM_B))
        tx.duplicate("store-a", (STREAM_B, STREAM_A))
    assert [(s.stream, s.superseded_at is not None) for s in db.streams("store-a")] == [
        (STREAM_A, True), (STREAM_B, False)]
    [issue] = db.identity_issues("store-a")
    assert (issue.code, issue.subject, issue.count) == ("duplicate_store", "store-a", 2)
    with db.transaction() as tx:
        assert tx.clear_duplicates("0000") == []  # seen since
        assert tx.clear_duplicates("9999") == ["store-a"]
        assert tx.clear_duplicates("9999") == []
    assert db.identity_issues("store-a", open_only=True) == []
    assert db.identity_issues("store-a")[0].cleared_at is not None


def test_a_version_1_database_is_migrated_to_the_legacy_stream(tmp_path: Path):
    import sqlite3

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE hub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO hub_meta VALUES ('schema_version', '1');
        CREATE TABLE stores (store TEXT PRIMARY KEY, contiguous BIGINT NOT NULL DEFAULT 0,
            high BIGINT NOT NULL DEFAULT 0, events BIGINT NOT NULL DEFAULT 0, conflicts BIGINT NOT NULL DEFAULT 0,
            rejected BIGINT NOT NULL DEFAULT 0, last_event_at TEXT, status TEXT, status_version TEXT,
            status_since TEXT, status_at TEXT, health TEXT, health_at TEXT);
        CREATE TABLE events (store TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
            time TEXT, event TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (store, seq));
        CREATE TABLE gaps (store TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
            opened_at TEXT NOT NULL, closed_at TEXT, reported INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (store, first_seq));
        CREATE INDEX gaps_open ON gaps (closed_at, opened_at);
        INSERT INTO stores (store, contiguous, high, events, last_event_at) VALUES ('store-a', 2, 4, 3, 't');
        INSERT INTO events VALUES ('store-a', 1, 'e1', 't', NULL, '{}', 't'), ('store-a', 2, 'e2', 't', NULL, '{}', 't'),
            ('store-a', 4, 'e4', 't', NULL, '{}', 't');
        INSERT INTO gaps VALUES ('store-a', 3, 3, 't', NULL, 0);
    """)
    conn.close()
    db = open_db(f"sqlite:///{path}")
    try:
        assert db.event_ids("store-a") == {1: "e1", 2: "e2", 4: "e4"}
        assert [(g.stream, g.first, g.closed_at) for g in db.gaps("store-a")] == [("", 3, None)]
        row = db.store("store-a")
        assert (row.stream, row.contiguous, row.streams) == ("", 2, 1)
        # The legacy stream goes on: an old agent's next event closes the gap and moves the ack.
        assert db.ingest("store-a", rows("store-a", [3])).contiguous == 4
        assert db.query("SELECT value FROM hub_meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    finally:
        db.close()


def test_stores_do_not_share_a_seq_space(db):
    db.ingest("store-a", rows("store-a", [1, 2]))
    assert db.ingest("store-b", rows("store-b", [1])).contiguous == 1
    assert [r.store for r in db.stores()] == ["store-a", "store-b"]


def test_a_failed_transaction_stores_nothing(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.ingest("store-a", rows("store-a", [1, 2]))
            raise RuntimeError("crash before commit")
    assert db.event_count() == 0
    assert db.ingest("store-a", rows("store-a", [1])).contiguous == 1


def test_restart_keeps_contiguous_and_gaps(db_url: str):
    url = db_url
    d = open_db(url)
    d.ingest("store-a", rows("store-a", [1, 2, 4]))
    d.close()
    d = open_db(url)
    assert d.ingest("store-a", rows("store-a", [2])).contiguous == 2
    assert d.store("store-a").open_gaps == 1
    assert d.ingest("store-a", rows("store-a", [3])).contiguous == 4
    d.close()


def test_gaps_are_reported_once(db):
    db.ingest("store-a", rows("store-a", [1, 4]))
    with db.transaction() as tx:
        assert [(g.first, g.last) for g in tx.report_gaps("9999")] == [(2, 3)]
    with db.transaction() as tx:
        assert tx.report_gaps("9999") == []


def test_status_health_commands_and_quarantine(db):
    with db.transaction() as tx:
        tx.set_status("store-a", "online", "1.2.3", "2024-11-11T02:00:00+00:00")
        tx.set_health("store-a", '{"outbox_depth": 3}')
        tx.command_sent("c1", "store-a", "printer-1", "test_page", "{}")
        tx.count_rejected("store-a")
        tx.quarantine("store-a", "json", "not JSON", b"\x00garbage")
    sh = db.status_health("store-a")
    assert (sh["status"], sh["status_version"], json.loads(sh["health"])) == ("online", "1.2.3", {"outbox_depth": 3})
    assert db.command("c1")["state"] == "sent"
    with db.transaction() as tx:
        tx.command_result("c1", "store-a", False, None, "paper out")
        tx.set_status("store-a", "offline", None, "2024-11-11T03:00:00+00:00")
    assert (db.command("c1")["state"], db.command("c1")["error"]) == ("error", "paper out")
    assert db.command("c1")["device"] == "printer-1"
    row = db.store("store-a")
    assert (row.status, row.rejected) == ("offline", 1)
    assert db.rejected("store-a") == [("json", "not JSON", 8)]


def test_two_connections_share_one_database(db_url: str):
    a, b = open_db(db_url), open_db(db_url)
    a.ingest("store-a", rows("store-a", [2]))
    assert b.ingest("store-a", rows("store-a", [1])).contiguous == 2
    a.close()
    b.close()


# URLs -------------------------------------------------------------------------------------

def test_database_urls(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = open_db("sqlite:///rel.db")
    assert isinstance(d, SQLiteHubDB) and (tmp_path / "rel.db").exists()
    d.close()
    d = open_db(str(tmp_path / "bare.db"))
    assert (tmp_path / "bare.db").exists()
    d.close()
    with pytest.raises(HubDBError):
        open_db("mysql://x/y")
    with pytest.raises(HubDBError):
        open_db("sqlite://")


def test_a_seq_beyond_bigint_is_refused():
    with pytest.raises(BatchRejected) as err:
        rows("store-a", [2**63])
    assert err.value.reason == "seq"


def test_postgres_without_psycopg_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed: import raises ImportError
    with pytest.raises(DBDriverMissing, match=r"psycopg\[binary\]") as err:
        open_db("postgresql://hub:secret@db/hub")
    assert "secret" not in str(err.value)


def test_broker_urls():
    b = parse_broker_url("mqtt://127.0.0.1:1884")
    assert (b.host, b.port, b.tls) == ("127.0.0.1", 1884, False)
    assert parse_broker_url("mqtts://hub.example.com").port == 8883
    b = parse_broker_url("mqtt://hub:pa%40ss@h")
    assert (b.username, b.password, str(b)) == ("hub", "pa@ss", "mqtt://hub@h:1883")
    for bad in ("http://h:1883", "mqtt://:1883", "mqtt://h:99999", "mqtt://h:1883/x", "h:1883"):
        with pytest.raises(BrokerURLError):
            parse_broker_url(bad)
    with pytest.raises(BrokerURLError) as err:
        parse_broker_url("ftp://u:secret@h")
    assert "secret" not in str(err.value)


def test_event_ids_are_uuids_in_practice():
    # The contract's ids are UUIDs; the hub stores whatever string the agent sent.
    ev = event("store-a", 1, id_=str(uuid.uuid4()))
    assert parse_batch("store-a", json.dumps(ev).encode())[0].id == ev["id"]
