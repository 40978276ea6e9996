"""A hub worker that starts beside others storing events: its open makes no DDL once the schema is made.

On PostgreSQL even ``CREATE INDEX IF NOT EXISTS`` takes a lock on its table, so
a worker starting while another held ``gaps`` and wanted ``events`` died with
``deadlock detected``. Here a real transaction holds both tables as an ingest
does (uncommitted rows in ``events`` and ``gaps``) while a second HubDB opens;
the open must finish without ever waiting on a lock (pg_stat_activity), and a
schema whose text changed (a table added) is still made.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from sync.hub import db as hubdb
from sync.hub.db import open_db


def _lock_waiters(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [q for (q,) in conn.execute("SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND datname = current_database()").fetchall()]


def test_a_worker_opening_beside_an_ingest_in_progress_takes_no_table_lock(postgres_url):
    open_db(postgres_url).close()  # the first worker made the schema
    with psycopg.connect(postgres_url) as busy:  # an ingest in progress: rows in events and gaps, uncommitted
        busy.execute("INSERT INTO events (store, stream, seq, id, type, event, received_at) "
                     "VALUES ('s1', '', 5, 'e5', 't', '{}', '2026-12-07T10:00:00+00:00')")
        busy.execute("INSERT INTO gaps (store, stream, first_seq, last_seq, opened_at) "
                     "VALUES ('s1', '', 1, 4, '2026-12-07T10:00:00+00:00')")
        opened = threading.Event()
        failed: list[BaseException] = []

        def start() -> None:
            try:
                open_db(postgres_url).close()
            except BaseException as err:  # noqa: BLE001 - reported below
                failed.append(err)
            opened.set()

        threading.Thread(target=start, daemon=True).start()
        # Either it opens, or it waits on a lock held by the ingest: the bug, seen without a deadline.
        while not opened.wait(0.05):
            waiting = _lock_waiters(postgres_url)
            if waiting:
                busy.rollback()  # let it go, then fail
                opened.wait()
                pytest.fail(f"the opening worker waited for a table lock: {waiting}")
        assert failed == []
        busy.rollback()


def test_a_changed_schema_is_made_on_open(postgres_url, monkeypatch):
    open_db(postgres_url).close()
    extra = "CREATE TABLE IF NOT EXISTS added_later (k TEXT PRIMARY KEY)"
    monkeypatch.setattr(hubdb, "SCHEMA", (*hubdb.SCHEMA, extra))
    db = open_db(postgres_url)
    try:
        assert db.query("SELECT count(*) FROM added_later") == [(0,)]
    finally:
        db.close()
