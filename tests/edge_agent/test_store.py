"""The local store: migrations, durability settings, seq rules, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from edge_agent.errors import StoreClosed, StoreError
from edge_agent.store import Store
from edge_agent.store.migrations import SCHEMA_VERSION
from edge_agent.store.outbox import pending


def run(coro):
    return asyncio.run(coro)


async def _started(path: Path) -> Store:
    store = Store(path)
    await store.start()
    return store


def test_start_migrates_and_sets_wal_and_full_sync(tmp_path):
    async def main():
        store = await _started(tmp_path / "s.db")
        mode = await store.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        await store.stop()
        return mode

    assert run(main()) == "wal"
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "outbox", "products", "barcodes", "sales"} <= tables


def test_writer_connection_uses_synchronous_full(tmp_path):
    from edge_agent.store.db import connect

    conn = connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_seq_starts_at_1_and_survives_restart(tmp_path):
    async def main():
        store = await _started(tmp_path / "s.db")
        seqs = [(await store.emit("t", {"i": i})).seq for i in range(3)]
        await store.stop()
        store = await _started(tmp_path / "s.db")
        seqs.append((await store.emit("t", {"i": 3})).seq)
        events = await store.read(pending)
        await store.stop()
        return seqs, events

    seqs, events = run(main())
    assert seqs == [1, 2, 3, 4]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [e.data["i"] for e in events] == [0, 1, 2, 3]
    assert len({e.id for e in events}) == 4


def test_failed_write_gives_its_seq_back_and_keeps_nothing(tmp_path):
    def emit_then_fail(tx):
        tx.emit("t", {"doomed": True})
        tx.execute("INSERT INTO meta (key, value) VALUES ('x', 1)")
        raise ValueError("business rule failed")

    async def main():
        store = await _started(tmp_path / "s.db")
        a = await store.emit("t", {"n": 1})
        with pytest.raises(ValueError):
            await store.write(emit_then_fail)
        b = await store.emit("t", {"n": 2})
        rows = await store.read(lambda c: c.execute("SELECT key FROM meta WHERE key = 'x'").fetchall())
        events = await store.read(pending)
        await store.stop()
        return a, b, rows, events

    a, b, rows, events = run(main())
    assert (a.seq, b.seq) == (1, 2)  # no gap where the failed write was
    assert rows == []
    assert [e.data for e in events] == [{"n": 1}, {"n": 2}]


def test_a_failing_writer_does_not_spoil_its_group(tmp_path):
    async def main():
        store = await _started(tmp_path / "s.db")

        def bad(tx):
            tx.emit("t", {"bad": True})
            raise RuntimeError("boom")

        results = await asyncio.gather(
            *[store.emit("t", {"i": i}) if i % 5 else store.write(bad) for i in range(40)],
            return_exceptions=True,
        )
        events = await store.read(pending)
        stats = store.stats
        await store.stop()
        return results, events, stats

    results, events, stats = run(main())
    good = [r for r in results if not isinstance(r, Exception)]
    assert sum(isinstance(r, RuntimeError) for r in results) == 8
    assert sorted(e.seq for e in good) == list(range(1, 33))
    assert [e.seq for e in events] == list(range(1, 33))
    assert all("bad" not in e.data for e in events)
    assert stats.largest_group > 1  # concurrent writers shared commits


def test_concurrent_writers_share_commits(tmp_path):
    async def main():
        store = await _started(tmp_path / "s.db")
        await asyncio.gather(*[store.emit("t", {"i": i}) for i in range(320)])
        stats = store.stats
        await store.stop()
        return stats

    stats = run(main())
    assert stats.writes == 320
    assert stats.commits < 320 // 4


def test_stop_commits_what_was_submitted_and_refuses_more(tmp_path):
    async def main():
        store = await _started(tmp_path / "s.db")
        futures = [store.submit(lambda tx, i=i: tx.emit("t", {"i": i})) for i in range(50)]
        await store.stop()
        assert all(f.done() and f.exception() is None for f in futures)
        with pytest.raises(StoreClosed):
            store.submit(lambda tx: None)
        store = await _started(tmp_path / "s.db")
        n = await store.read(lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0])
        await store.stop()
        return n

    assert run(main()) == 50


def test_commit_listener_hears_the_last_seq(tmp_path):
    heard: list[int] = []

    async def main():
        store = await _started(tmp_path / "s.db")
        store.add_commit_listener(heard.append)
        await store.emit("t", {})
        await store.write(lambda tx: tx.execute("SELECT 1"))  # no event: no call
        await store.emit("t", {})
        await store.stop()

    run(main())
    assert heard == [1, 2]


def test_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()

    async def main():
        await Store(tmp_path / "s.db").start()

    with pytest.raises(StoreError, match="newer than this agent"):
        run(main())


def test_unwritable_location_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("")

    async def main():
        await Store(tmp_path / "file" / "s.db").start()

    with pytest.raises(StoreError, match="cannot create the data directory"):
        run(main())


def test_a_group_that_breaks_its_transaction_fails_every_request_and_hangs_none(tmp_path):
    import threading

    entered, gate = threading.Event(), threading.Event()

    def hold(tx):  # keeps the writer busy so that the next requests form one group
        entered.set()
        gate.wait(5)

    def break_tx(tx):
        tx.conn.execute("ROLLBACK")  # a write function that ends the transaction it was given

    async def main():
        store = await _started(tmp_path / "s.db")
        first = store.submit(hold)
        assert await asyncio.to_thread(entered.wait, 5)
        doomed = [store.write(break_tx), store.emit("t", {"i": 1}), store.emit("t", {"i": 2})]
        tasks = [asyncio.ensure_future(d) for d in doomed]
        await asyncio.sleep(0)  # let the tasks enqueue behind the held group
        gate.set()
        await asyncio.wrap_future(first)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        after = await store.emit("t", {"i": 3})
        await store.stop()
        return results, after

    results, after = run(main())
    assert all(isinstance(r, StoreError) for r in results), results
    assert after.seq == 1  # nothing of the failed group was kept or numbered


def test_each_run_numbers_its_events_in_a_stream_of_its_own(tmp_path):
    from sync.link import _batches

    async def run_once(n: int) -> tuple[str, list]:
        store = await _started(tmp_path / "s.db")
        for i in range(n):
            await store.emit("retail.stock.adjusted", {"i": i})
        stream, streams = store.stream_id, store.streams
        await store.stop()
        return stream, streams

    first, _ = run(run_once(3))
    idle, _ = run(run_once(0))  # a run that numbers nothing leaves no stream behind
    second, streams = run(run_once(2))
    assert len({first, idle, second}) == 3
    assert [(s.id, s.base) for s in streams] == [(first, 0), (second, 3)]
    assert [(s.id, n) for s, n in map(streams.locate, range(1, 6))] == [
        (first, 1), (first, 2), (first, 3), (second, 1), (second, 2)]
    assert streams.previous(streams.get(second))[0].id == first

    async def wire() -> list:
        store = await _started(tmp_path / "s.db")
        events = await store.read(lambda c: pending(c, 0, 100))
        await store.stop()
        return _batches(events, 1 << 20, "edge/store-test", store.streams)

    # On the wire a batch never spans two streams; the second stream's first event names the first's end.
    batches = run(wire())
    assert [(last, count) for last, count, _ in batches] == [(3, 3), (5, 2)]
    import json
    second_batch = json.loads(batches[1][2])
    assert [(e["stream"], e["seq"]) for e in second_batch] == [(second, 1), (second, 2)]
    assert (second_batch[0]["prevstream"], second_batch[0]["prevseq"]) == (first, 3)
    assert "prevstream" not in second_batch[1]


def test_events_from_before_streams_are_the_legacy_stream(tmp_path):
    async def main():
        store = await _started(tmp_path / "s.db")
        await store.emit("retail.stock.adjusted", {})
        await store.stop()

    run(main())
    db = sqlite3.connect(tmp_path / "s.db")  # as a database from before streams had it
    db.execute("DELETE FROM streams")
    db.execute("PRAGMA user_version = 9")
    db.execute("DROP TABLE streams")
    for statement in ("DROP TABLE acks", "DROP TABLE access_log", "DROP INDEX orders_status_seq",  # from 11 on
                      "ALTER TABLE orders DROP COLUMN status_seq", "ALTER TABLE orders DROP COLUMN member_pseudonym",
                      "DELETE FROM meta WHERE key LIKE 'privacy_%'",
                      "DROP TABLE paired_clients", "DROP TABLE pairing_codes",  # from 12 on
                      "ALTER TABLE labels DROP COLUMN zone",
                      "DROP TABLE unpaired_clients"):  # from 13 on
        db.execute(statement)
    db.commit()
    db.close()

    async def again():
        store = await _started(tmp_path / "s.db")
        await store.emit("retail.stock.adjusted", {})
        streams = store.streams
        await store.stop()
        return streams

    streams = run(again())
    assert [(s.id, s.base) for s in streams][0] == ("", 0)
    assert streams.locate(1)[0].id == "" and streams.locate(2) == (streams.get(streams.locate(2)[0].id), 1)
