"""The hub worker's cheap paths (sync/hub/service.py, sync/hub/ingest.py) against the plain ones they stand for.

A group of batches stored by ``ingest_group`` must leave the database as
``Tx.ingest`` one batch at a time does, on SQLite and on a real PostgreSQL;
a batch parsed in one pass as the two-step parse does; an ack written out
as the ``Ack`` model would; and the hand-over from paho's thread stays bounded.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from sync.hub import ingest
from sync.hub.db import open_db
from sync.hub.errors import BatchRejected
from sync.hub.ingest import parse_batch
from sync.hub.service import _Events, _Incoming, _Intake, ack_payload, ingest_group
from sync.topics import Ack

STREAM = "s1-aaaa"


def event(store: str, seq: int, stream: str | None = STREAM, id_: str | None = None, **extra) -> dict:
    ev = {"specversion": "1.0", "id": id_ or f"{store}-{stream}-{seq}", "source": f"edge/{store}",
          "type": "retail.sale.completed", "time": "2026-01-01T10:00:00+08:00", "seq": seq,
          "data": {"total": "1.00", "lines": [{"sku": "A", "qty": 1}]}, **extra}
    if stream:
        ev["stream"] = stream
    return ev


def batch(store: str, seqs, **kw) -> bytes:
    return json.dumps([event(store, s, **kw) for s in seqs]).encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_urls(request, tmp_path: Path) -> tuple[str, str]:
    """Two fresh, empty hub databases of one dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    return request.getfixturevalue("postgres_server").database(), request.getfixturevalue("postgres_server").database()


# Before the group: what each store already holds (store, stream, seqs).
HISTORY = [
    ("fast-1", STREAM, [1, 2, 3]),
    ("gap-2", STREAM, [1, 2, 5]),        # holds 5 above a hole: high > contiguous
    ("dup-4", STREAM, [1, 2, 3]),
    ("fast-5", STREAM, [1, 2, 3]),
    ("hole-6", STREAM, [1]),
    ("legacy-7", None, [1, 2]),
]
# The group, in arrival order.
GROUP = [
    ("fast-1", STREAM, [4]),
    ("gap-2", STREAM, [3, 4]),           # closes the hole
    ("new-3", STREAM, [1, 2]),           # a store (and stream) the hub does not know yet
    ("dup-4", STREAM, [3, 4]),           # a resend of 3 with 4
    ("fast-5", STREAM, [4, 5]),
    ("fast-5", STREAM, [6, 7, 8]),       # the same store again in the group, right after
    ("hole-6", STREAM, [2]),
    ("hole-6", STREAM, [4]),             # leaves a hole: the whole store goes the plain way
    ("legacy-7", None, [3]),
    ("fast-1", STREAM, [5, 6]),
]
FAST = {"fast-1", "fast-5", "legacy-7"}


def _ops() -> list[tuple[str, int, Any]]:
    ops: list[tuple[str, int, Any]] = [(store, i, _Events(store, parse_batch(store, batch(store, seqs, stream=stream))))
                                       for i, (store, stream, seqs) in enumerate(GROUP)]
    # A message refused for its topic is keyed by the topic: no store of that name comes of it.
    ops.append(("edge/no such store!/events", len(ops), lambda tx: None))
    return sorted(ops, key=lambda op: (op[0], op[1]))  # as HubService._process sorts them


def _tables(db) -> dict[str, list[tuple]]:
    return {
        "events": db.query("SELECT store, stream, seq, id, type, time, event FROM events ORDER BY store, stream, seq"),
        "streams": db.query("SELECT store, stream, contiguous, high, events, end_seq FROM streams "
                            "ORDER BY store, stream"),
        "stores": db.query("SELECT store, stream, contiguous, high, events, conflicts, streams, resent_purged "
                           "FROM stores ORDER BY store"),
        "gaps": db.query("SELECT store, stream, first_seq, last_seq, closed_at IS NULL FROM gaps "
                         "ORDER BY store, stream, first_seq"),
    }


def test_a_group_stored_at_once_leaves_what_one_batch_at_a_time_leaves(db_urls):
    grouped, plain = (open_db(url) for url in db_urls)
    try:
        for db in (grouped, plain):
            for store, stream, seqs in HISTORY:
                db.ingest(store, parse_batch(store, batch(store, seqs, stream=stream)))
        ops = _ops()
        with grouped.transaction() as tx:
            stored = ingest_group(tx, ops)
            got = [stored[i] if i in stored else op(tx) for i, (_, _, op) in enumerate(ops)]
        with plain.transaction() as tx:
            want = [op(tx) for _, _, op in ops]
        got, want = [r for r in got if r is not None], [r for r in want if r is not None]
        assert {ops[i][0] for i in stored} == FAST  # the cheap path was taken, and only where it may be
        assert [(r.store, r.stream, r.contiguous, r.inserted, r.duplicates, r.gaps_opened, r.gaps_closed)
                for r in got] == [(r.store, r.stream, r.contiguous, r.inserted, r.duplicates, r.gaps_opened,
                                   r.gaps_closed) for r in want]
        assert _tables(grouped) == _tables(plain)
        assert grouped.store("fast-5").contiguous == 8 and grouped.store("fast-1").contiguous == 6
        assert grouped.store("hole-6").contiguous == 2 and grouped.store("gap-2").contiguous == 5
    finally:
        grouped.close()
        plain.close()


def test_a_group_of_nothing_but_other_messages_is_left_alone(db_urls):
    db = open_db(db_urls[0])
    try:
        with db.transaction() as tx:
            assert ingest_group(tx, [("store-a", 0, lambda tx: None)]) == {}
        assert db.stores() == []
    finally:
        db.close()


# Parsing -------------------------------------------------------------------------

PAYLOADS = [
    batch("store-a", [1, 2, 3]),
    batch("store-a", [1], stream=None),
    json.dumps(event("store-a", 1)).encode(),                       # one event, not in a list
    json.dumps([event("store-a", 1, data={"x": float("nan")})]).encode(),  # NaN: json.loads takes it
    b'[{"specversion":"1.0","id":"a","id":"b","source":"edge/store-a","type":"t","seq":1}]',  # a key twice
    json.dumps([event("store-a", 1, id_="\ud800")]).encode(),       # a lone surrogate
    b"[]",
    b"[1, 2",
    b"\xff\xfe[]",
    json.dumps([event("store-a", 1)] * 3).encode(),                 # over max_events below
    json.dumps([event("store-b", 1)]).encode(),                     # another store's source
    json.dumps([{**event("store-a", 1), "seq": 0}]).encode(),
    json.dumps([event("store-a", 1), event("store-a", 1, id_="other")]).encode(),
    json.dumps([event("store-a", 1, prevstream="s0-bbbb", prevseq=9)]).encode(),
    b"[" + b"[" * 5000 + b"]" * 5000 + b"]",
]


def _outcome(payload: bytes):
    try:
        return parse_batch("store-a", payload, max_events=2)
    except BatchRejected as err:
        return ("refused", err.reason, str(err))


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_a_batch_parsed_in_one_pass_is_what_the_two_step_parse_makes_of_it(payload, monkeypatch):
    fast = _outcome(payload)
    monkeypatch.setattr(ingest, "_decode_fast", lambda payload, max_events: None)
    assert fast == _outcome(payload)


def test_the_one_pass_parse_takes_the_common_batch():
    assert ingest._decode_fast(batch("store-a", [1, 2]), 10) is not None
    assert ingest._decode_fast(b"[1, 2", 10) is None


# Acks and the hand-over ------------------------------------------------------------

@pytest.mark.parametrize("stream", ["", STREAM])
def test_an_ack_written_out_is_the_ack_model(stream):
    time = "2026-01-01T02:00:00.123+00:00"
    payload = ack_payload(42, stream, time)
    assert Ack.model_validate_json(payload) == Ack(seq=42, stream=stream or None, time=time)
    assert json.loads(payload) == json.loads(Ack(seq=42, stream=stream or None, time=time).model_dump_json(
        exclude_none=True)) | {"time": time}


def _msg(mid: int) -> _Incoming:
    return _Incoming("edge/store-a/events", b"[]", mid, 1, 1)


def test_the_hand_over_holds_no_more_than_its_limit():
    intake = _Intake(3)
    assert all(intake.put(_msg(m), timeout=1) for m in range(3))
    assert not intake.put(_msg(3), timeout=0.05)  # full: the network thread waits, then gives up
    assert [m.mid for m in intake.take(2, timeout=1)] == [0, 1]
    assert intake.put(_msg(3), timeout=0.05)
    assert [m.mid for m in intake.take(10, timeout=1)] == [2, 3]


def test_the_hand_over_wakes_a_waiting_put_when_the_worker_takes():
    intake = _Intake(1)
    assert intake.put(_msg(0), timeout=1)
    done = threading.Event()
    putter = threading.Thread(target=lambda: intake.put(_msg(1), timeout=30) and done.set(), daemon=True)
    putter.start()
    assert [m.mid for m in intake.take(1, timeout=1)] == [0]
    assert done.wait(30)
    assert [m.mid for m in intake.take(1, timeout=1)] == [1]


def test_a_closed_hand_over_takes_nothing_more_and_gives_out_the_rest():
    intake = _Intake(5)
    intake.put(_msg(0), timeout=1)
    intake.close()
    assert not intake.put(_msg(1), timeout=1)
    assert [m.mid for m in intake.take(5, timeout=1)] == [0]
    assert intake.take(5, timeout=30) == []  # closed and empty: no wait


def test_event_rows_go_in_byte_for_byte_whatever_they_hold(db_urls):
    # PostgreSQL takes the group's rows by COPY: its text format has its own escapes (tab, newline,
    # backslash, \N for null); what comes back must be what went in.
    from sync.hub.db import open_db

    db = open_db(db_urls[0])
    tricky = ['{"note":"tab\\there","nl":"a\\nb","bs":"\\\\N","raw":"\t\\n\\r"}', '{"u":"caf\u00e9 \u4e2d\u6587 \U0001f600"}',
              '{"empty":""}', '{"q":"\\"quoted\\" \\\\."}']
    rows = [("s1", "st", i + 1, f"id-{i}", "t\tx", None if i % 2 else "2026-12-07T10:00:00+00:00", ev,
             "2026-12-07T10:00:00+00:00") for i, ev in enumerate(tricky)]
    try:
        with db.transaction() as tx:
            tx.insert_events(rows)
        back = db.query("SELECT store, stream, seq, id, type, time, event, received_at FROM events ORDER BY seq")
        assert [tuple(r) for r in back] == rows
    finally:
        db.close()
