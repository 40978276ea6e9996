"""The hub's database: SQLite by default, PostgreSQL by URL, one interface.

``open_db(url)`` takes ``sqlite:///relative.db``, ``sqlite:////abs/hub.db``,
a bare file path, or ``postgresql://user@host/db`` (psycopg 3). Work happens
in ``with db.transaction() as tx:`` blocks; the hub commits a whole group of
batches in one of them and acknowledges nothing before the commit returns.

Tables: ``events`` (one row per ``(store, stream, seq)``: a resend is a
no-op; partitioned by day on PostgreSQL and purged after a retention
policy, see retention.py), ``streams`` (per run of a store's database: ``contiguous``, the
acknowledged seq; ``high``, the highest seq held; its place in the chain of
the store's streams), ``stores`` (per store: counters, the latest stream's
figures, last status and health), ``gaps`` (holes below ``high``, closed
when ``contiguous`` passes them), ``conflicts`` (an event that came for a
position holding another one: kept whole), ``identity`` (what the hub
noticed: conflicts, a database restored or copied, two agents running as
one store), ``commands`` (sent by the CLI and the console, answered on
``cmd/res``) and ``rejected`` (quarantine of refused payloads); schema.py
has them all, with the console's tables.

Identity. A stream's first event names the stream before it and where that
one ended. A stream continued by two streams, or that the hub holds past
the end its successor names, was continued by two copies of one database:
``database_restored`` (no event is lost: each copy's events are in its own
stream). A status announcing a stream after another stream of the store was
announced after it is two agents running at once: ``duplicate_store``,
cleared when no such turn was seen for a while. SQL is kept to what both dialects run: ``?`` placeholders are
rewritten to ``%s`` for psycopg, ``ON CONFLICT`` for upserts, TEXT for JSON
and ISO-8601 UTC times.

Two workers may share one database. Each ingest takes the store's row lock
first (SQLite: ``BEGIN IMMEDIATE`` locks the file; PostgreSQL: ``SELECT ...
FOR UPDATE``, stores in sorted order so that two workers never deadlock), so
a store's contiguous seq is computed by one transaction at a time, and the
lookup that dedupes a batch sees every event another worker committed for
the store: exactly once rests on that lock, not on a unique key, which a
table partitioned by time cannot have on ``(store, stream, seq)``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sync.hub.errors import DBDriverMissing, HubDBError
from sync.hub.ingest import EventRow, IngestResult, advance, new_gaps
from sync.hub.schema import EVENTS_POSTGRES, EVENTS_SQLITE, SCHEMA, SCHEMA_VERSION
from sync.topics import ACCESS_SUMMARY

DEFAULT_DB = "sqlite:///hub.db"
_WALK_CHUNK = 1000


def now_iso() -> str:
    """Aware UTC now as ISO-8601; every time the hub writes has this form, so text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class StoreRow:
    """One line of ``edge-hub stores``: ``contiguous`` and ``high`` of ``stream``, the stream that
    last brought new events; ``events``, gaps and conflicts of them all."""

    store: str
    status: str | None
    since: str | None
    contiguous: int
    high: int
    events: int
    open_gaps: int
    health_at: str | None
    rejected: int
    conflicts: int
    stream: str | None = None
    streams: int = 0
    identity: int = 0  # open identity issues (identity table, not cleared)


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One stream of a store."""

    store: str
    stream: str
    contiguous: int
    high: int
    events: int
    first_at: str
    last_event_at: str | None
    prev_stream: str | None
    prev_seq: int | None
    successor: str | None
    end_seq: int | None
    announced_at: str | None
    superseded_at: str | None


@dataclass(frozen=True, slots=True)
class IdentityIssue:
    """Something the hub noticed about a store's identity (schema.py ``identity``)."""

    store: str
    code: str
    subject: str
    detail: str
    first_at: str
    last_at: str
    count: int
    cleared_at: str | None


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole in a store's seq: ``first..last`` missing, seen at ``opened_at``."""

    store: str
    first: int
    last: int
    opened_at: str
    closed_at: str | None = None
    stream: str = ""


class Tx:
    """One open transaction; every method runs inside it, the commit comes when the block ends."""

    def __init__(self, db: "HubDB"):
        self._db = db
        # One time for everything the transaction writes: it all becomes durable at one
        # commit, and formatting a time per batch was a tenth of the hub's ingest work.
        self.now = now_iso()

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db._execute(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders) in this transaction; the driver's cursor."""
        return self._db._execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters in this transaction."""
        self._db._executemany(sql, rows)

    # Events ------------------------------------------------------------------

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> None:
        """Add event rows ``(store, stream, seq, id, type, time, event, received_at)`` as they are: the
        caller holds the stores' locks and knows that none of them is held yet (PostgreSQL: COPY)."""
        self._db._insert_events(rows)

    def ingest_extending(self, stores: Sequence[str],
                         batches: dict[str, list[tuple[int, Sequence[EventRow]]]]) -> dict[int, IngestResult]:
        """Store the batches that only extend their stream, every store at once; by the caller's index.

        One statement each (not five per batch): lock every store of ``stores``
        (the group's, events or not, sorted: the ops that follow only lock a
        row held already, so two workers take row locks in one order and never
        deadlock), read the streams of the stores in ``batches``, insert the
        events, move the streams' and stores' counters. A store goes this way
        only when each of its batches starts right after the stream's contiguous
        seq, holds no hole, and nothing is held beyond (``high`` equals
        ``contiguous``), in one stream that the hub knows already and that no
        later stream ended: then ``ingest`` would do exactly this, without
        duplicates, gaps, conflicts or chains to look at. Any other store's
        batches are not in the answer: the caller gives them to ``ingest``.
        """
        if not batches:
            return {}
        locked = sorted(stores)
        self.execute(f"INSERT INTO stores (store) VALUES {', '.join(['(?)'] * len(locked))} "
                     "ON CONFLICT (store) DO UPDATE SET store = excluded.store", locked)
        names = sorted(batches)
        known = {(st, sm): (int(c), int(h), e) for st, sm, c, h, e in self.execute(
            "SELECT store, stream, contiguous, high, end_seq FROM streams "
            f"WHERE store IN ({', '.join(['?'] * len(names))})", names).fetchall()}
        done: dict[int, IngestResult] = {}
        events: list[tuple[Any, ...]] = []
        moved: list[tuple[str, str, int, int]] = []  # store, stream, contiguous, events added
        for store in names:
            mine = batches[store]
            stream = mine[0][1][0].stream
            contiguous, high, end_seq = known.get((store, stream), (-1, -2, None))
            if contiguous != high or (end_seq is not None and end_seq > contiguous):
                continue
            results, seq = {}, contiguous
            for i, rows in mine:
                if rows[0].stream != stream or rows[0].prev is not None or rows[0].seq != seq + 1 \
                        or rows[-1].seq - rows[0].seq != len(rows) - 1:
                    break
                seq = rows[-1].seq
                results[i] = IngestResult(store, seq, stream, inserted=len(rows))
            else:
                for _, rows in mine:
                    events += [(store, stream, r.seq, r.id, r.type, r.time, r.event, self.now) for r in rows]
                moved.append((store, stream, seq, seq - contiguous))
                done.update(results)
        if events:
            self.insert_events(events)  # PostgreSQL: COPY
            # One statement per table for all the streams (executemany is one statement per row to
            # PostgreSQL; a VALUES list of four parameters a stream is parsed once).
            values = ", ".join(["(?, ?, ?, ?)"] * len(moved))
            params = [x for m in moved for x in m] + [self.now]
            self.execute(f"WITH v (store, stream, seq, n) AS (VALUES {values}) UPDATE streams SET contiguous = v.seq, "
                         "high = v.seq, events = streams.events + v.n, last_event_at = ? FROM v "
                         "WHERE streams.store = v.store AND streams.stream = v.stream", params)
            self.execute(f"WITH v (store, stream, seq, n) AS (VALUES {values}) UPDATE stores SET stream = v.stream, "
                         "contiguous = v.seq, high = v.seq, events = stores.events + v.n, last_event_at = ? FROM v "
                         "WHERE stores.store = v.store", params)
        return done

    def ingest(self, store: str, rows: Sequence[EventRow]) -> IngestResult:
        """Store a batch (one stream, sorted by seq) exactly once; return the stream's new contiguous seq."""
        now = self.now
        stream = rows[0].stream if rows else ""
        self._lock_store(store)
        contiguous, high, end_seq, new_stream = self._stream_row(store, stream)
        result = IngestResult(store, contiguous, stream)
        if not rows:
            return result
        existing: dict[int, str] = {}
        if rows[0].seq > high:  # the usual case: nothing of the batch can be held yet, skip the lookup
            fresh = list(rows)
        else:
            # Under the store's row lock: no other transaction adds to this stream until the commit, so
            # what the lookup does not find is not held (PostgreSQL has no unique key on events to lean on).
            existing = dict(self._x(
                "SELECT seq, id FROM events WHERE store = ? AND stream = ? AND seq BETWEEN ? AND ?",
                (store, stream, rows[0].seq, rows[-1].seq)).fetchall())
            fresh = self._sort_out(store, rows, existing, contiguous, result)
        if rows[0].prev is not None and rows[0].seq == 1 and existing.get(1, rows[0].id) == rows[0].id:
            # (Not from an event that conflicts with the stream's first: its claims are not the stream's.)
            self._chain(store, stream, rows[0].prev, result)
        if fresh:
            self._db._executemany(
                "INSERT INTO events (store, stream, seq, id, type, time, event, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(store, stream, r.seq, r.id, r.type, r.time, r.event, now) for r in fresh])
            result.inserted = len(fresh)
            seqs = [r.seq for r in fresh]
            result.gaps_opened = new_gaps(high, seqs)
            if result.gaps_opened:
                self._db._executemany(
                    "INSERT INTO gaps (store, stream, first_seq, last_seq, opened_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (store, stream, first_seq) DO NOTHING",
                    [(store, stream, a, b, now) for a, b in result.gaps_opened])
            new_high = max(high, seqs[-1])
            if seqs[0] == contiguous + 1:
                if seqs[-1] - seqs[0] == len(seqs) - 1 and seqs[-1] == new_high:
                    result.contiguous = seqs[-1]  # the usual case: the batch extends the run, nothing beyond
                else:
                    result.contiguous = self._walk(store, stream, contiguous)
            # A gap lies below high, or up to the end a later stream named for this one.
            if result.contiguous > contiguous and (high > contiguous or (end_seq or 0) > contiguous):
                result.gaps_closed = self._close_gaps(store, stream, result.contiguous, now)
            self._x("UPDATE streams SET contiguous = ?, high = ?, events = events + ?, last_event_at = ? "
                    "WHERE store = ? AND stream = ?", (result.contiguous, new_high, len(fresh), now, store, stream))
            self._x("UPDATE stores SET stream = ?, contiguous = ?, high = ?, events = events + ?, "
                    "conflicts = conflicts + ?, streams = streams + ?, last_event_at = ? WHERE store = ?",
                    (stream, result.contiguous, new_high, len(fresh), len(result.conflicts), int(new_stream), now,
                     store))
        elif result.conflicts or new_stream:
            self._x("UPDATE stores SET conflicts = conflicts + ?, streams = streams + ? WHERE store = ?",
                    (len(result.conflicts), int(new_stream), store))
        return result

    def _sort_out(self, store: str, rows: Sequence[EventRow], existing: dict[int, str], contiguous: int,
                  result: IngestResult) -> list[EventRow]:
        """The rows of a batch not held yet; the others are duplicates (and conflicts, when the id differs).

        A seq at or below ``contiguous`` that the lookup did not find was held and purged since
        (retention.py): a duplicate, never stored again nor a gap. Whether it was the same event
        cannot be told any more; ``stores.resent_purged`` counts these.
        """
        fresh, purged = [], 0
        for r in rows:
            kept = existing.get(r.seq)
            if kept is not None:
                result.duplicates += 1
                if kept != r.id:
                    self._conflict(store, r, kept, result)
            elif r.seq <= contiguous:
                purged += 1
            else:
                fresh.append(r)
        if purged:
            result.duplicates += purged
            self._x("UPDATE stores SET resent_purged = resent_purged + ? WHERE store = ?", (purged, store))
        return fresh

    def _lock_store(self, store: str) -> None:
        """The store's row, created if new, and locked until the commit.

        The upsert's DO UPDATE locks the row in PostgreSQL as ``SELECT ... FOR
        UPDATE`` would (SQLite's whole-file lock is already held): one
        transaction at a time works on a store's streams.
        """
        self._x("INSERT INTO stores (store) VALUES (?) ON CONFLICT (store) DO UPDATE SET store = excluded.store",
                (store,))

    def _stream_row(self, store: str, stream: str) -> tuple[int, int, int | None, bool]:
        """The stream's contiguous and high seq, its end if a later stream named it, and whether
        its row is new (created now)."""
        row = self._x("SELECT contiguous, high, end_seq FROM streams WHERE store = ? AND stream = ?",
                      (store, stream)).fetchone()
        if row is not None:
            return int(row[0]), int(row[1]), None if row[2] is None else int(row[2]), False
        self._x("INSERT INTO streams (store, stream, first_at) VALUES (?, ?, ?)", (store, stream, self.now))
        return 0, 0, None, True

    def _conflict(self, store: str, row: EventRow, kept: str, result: IngestResult) -> None:
        """Another event at a position already held: keep it whole, count it once, say so."""
        cur = self._x("INSERT INTO conflicts (store, stream, seq, id, kept_id, type, event, received_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, stream, seq, id) DO NOTHING",
                      (store, row.stream, row.seq, row.id, kept, row.type, row.event, self.now))
        if cur.rowcount != 1:
            return  # the same conflicting event again (a resend): kept and counted already
        result.conflicts.append((row.seq, kept, row.id))
        name = row.stream or "(legacy)"
        detail = (f"seq {row.seq} of stream {name} came with event {row.id} ({row.type}) while the hub holds "
                  f"{kept} there; the second event is kept in the conflicts table, not in the events")
        result.identity.append(("stream_conflict", name, detail))
        self.identity(store, "stream_conflict", name, detail)

    def _chain(self, store: str, stream: str, prev: tuple[str, int], result: IngestResult) -> None:
        """A stream's first event names the stream before it: link them, and notice a fork."""
        prev_stream, prev_seq = prev
        self._x("UPDATE streams SET prev_stream = ?, prev_seq = ? WHERE store = ? AND stream = ? "
                "AND prev_stream IS NULL", (prev_stream, prev_seq, store, stream))
        row = self._x("SELECT high, successor, end_seq FROM streams WHERE store = ? AND stream = ?",
                      (store, prev_stream)).fetchone()
        if row is None:  # the earlier stream's events have not come yet (or never will)
            self._x("INSERT INTO streams (store, stream, first_at) VALUES (?, ?, ?)", (store, prev_stream, self.now))
            self._x("UPDATE stores SET streams = streams + 1 WHERE store = ?", (store,))
            high, successor, end_seq = 0, None, None
        else:
            high, successor, end_seq = int(row[0]), row[1], row[2]
        if successor is None:
            self._x("UPDATE streams SET successor = ?, end_seq = ? WHERE store = ? AND stream = ?",
                    (stream, prev_seq, store, prev_stream))
        fork = None
        if successor is not None and successor != stream:
            fork = (f"streams {successor} (after seq {end_seq}) and {stream} (after seq {prev_seq}) both continue "
                    f"stream {prev_stream}: two copies of the store's database went on")
        elif high > prev_seq:
            fork = (f"stream {stream} continues stream {prev_stream} after seq {prev_seq}, but the hub holds that "
                    f"stream up to seq {high}")
        if fork is not None:
            detail = (f"{fork}. The store's database was restored from a backup or copied: the "
                      f"{max(0, high - prev_seq)} events of {prev_stream} after seq {prev_seq} are here but not in "
                      "the database now in use, so its stock counts and points lack them. No event is lost.")
            result.identity.append(("database_restored", prev_stream, detail))
            self.identity(store, "database_restored", prev_stream, detail)
        elif high < prev_seq and successor is None:
            # The earlier stream ended at prev_seq: what the hub lacks of it is a gap like any other.
            self._x("INSERT INTO gaps (store, stream, first_seq, last_seq, opened_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (store, stream, first_seq) DO NOTHING", (store, prev_stream, high + 1, prev_seq,
                                                                         self.now))

    def _walk(self, store: str, stream: str, contiguous: int) -> int:
        while True:
            seqs = [s for (s,) in self._x(
                "SELECT seq FROM events WHERE store = ? AND stream = ? AND seq > ? ORDER BY seq LIMIT ?",
                (store, stream, contiguous, _WALK_CHUNK)).fetchall()]
            moved = advance(contiguous, seqs)
            if len(seqs) < _WALK_CHUNK or moved != seqs[-1]:
                return moved
            contiguous = moved

    def _close_gaps(self, store: str, stream: str, contiguous: int, now: str) -> list[tuple[int, int]]:
        closed = [(int(a), int(b)) for a, b in self._x(
            "SELECT first_seq, last_seq FROM gaps WHERE store = ? AND stream = ? AND closed_at IS NULL "
            "AND last_seq <= ?", (store, stream, contiguous)).fetchall()]
        if closed:
            self._x("UPDATE gaps SET closed_at = ? WHERE store = ? AND stream = ? AND closed_at IS NULL "
                    "AND last_seq <= ?", (now, store, stream, contiguous))
        return closed

    # Identity -----------------------------------------------------------------------

    def identity(self, store: str, code: str, subject: str, detail: str) -> None:
        """Record (or count again) an identity issue; a cleared one is raised anew."""
        self._x("INSERT INTO identity (store, code, subject, detail, first_at, last_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (store, code, subject) DO UPDATE SET detail = excluded.detail, "
                "last_at = excluded.last_at, count = identity.count + 1, cleared_at = NULL, "
                "first_at = CASE WHEN identity.cleared_at IS NULL THEN identity.first_at "
                "ELSE excluded.first_at END",
                (store, code, subject[:200], detail[:2000], self.now, self.now))

    def announce(self, store: str, stream: str) -> None:
        """A status names the stream this run of the store numbers in: record it as the store's live
        stream (and the one before as superseded). Whether two runs take turns is the worker's call
        (service.py ``_Turns``): each worker sees a store's statuses in the order they were sent."""
        self._lock_store(store)
        live = self._x("SELECT live_stream FROM stores WHERE store = ?", (store,)).fetchone()[0]
        row = self._x("SELECT 1 FROM streams WHERE store = ? AND stream = ?", (store, stream)).fetchone()
        if row is None:
            self._x("INSERT INTO streams (store, stream, first_at, announced_at) VALUES (?, ?, ?, ?)",
                    (store, stream, self.now, self.now))
            self._x("UPDATE stores SET streams = streams + 1 WHERE store = ?", (store,))
        else:
            self._x("UPDATE streams SET announced_at = ? WHERE store = ? AND stream = ?", (self.now, store, stream))
        if live != stream:
            if live is not None:
                self._x("UPDATE streams SET superseded_at = ? WHERE store = ? AND stream = ?", (self.now, store, live))
            self._x("UPDATE stores SET live_stream = ? WHERE store = ?", (stream, store))

    def duplicate(self, store: str, streams: tuple[str, str]) -> None:
        """Two runs of the store announce themselves in turn: two agents run as the store."""
        self.identity(store, "duplicate_store", store,
                      f"two agents run as store {store} at once: streams {streams[0]} and {streams[1]} announce "
                      "themselves in turn (a second PC with a copy of devices.yaml?); their events are all kept, "
                      "each in its own stream, but only one of them should run")

    def close_identity(self, store: str, code: str, subject: str | None = None) -> int:
        """Staff have looked at an issue that never clears by itself (a conflict, a restore): close
        it (``cleared_at``); it opens again if the hub sees it again. Returns how many were open."""
        sql = "UPDATE identity SET cleared_at = ? WHERE store = ? AND code = ? AND cleared_at IS NULL"
        params: list[Any] = [self.now, store, code]
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        return self._x(sql, params).rowcount

    def clear_duplicates(self, quiet_before: str) -> list[str]:
        """Stores whose duplicate_store issue was not seen again since ``quiet_before``: cleared now."""
        # One statement that re-checks last_at: a turn another worker recorded meanwhile keeps it open.
        rows = self._x("UPDATE identity SET cleared_at = ? WHERE code = 'duplicate_store' AND cleared_at IS NULL "
                       "AND last_at < ? RETURNING store", (self.now, quiet_before)).fetchall()
        return sorted(s for (s,) in rows)

    # Status, health, commands, quarantine -----------------------------------------

    def set_status(self, store: str, state: str, version: str | None, since: str) -> None:
        """The store's last status (``online``/``offline``) and since when.

        Offline after offline keeps the first time: the Will carries no time, so
        the retained offline status that a restarted hub receives again must not
        make a store that died yesterday look offline for a minute.
        """
        self._x("INSERT INTO stores (store, status, status_version, status_since, status_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (store) DO UPDATE SET status = excluded.status, status_version = excluded.status_version, "
                "status_since = CASE WHEN stores.status = 'offline' AND excluded.status = 'offline' "
                "THEN stores.status_since ELSE excluded.status_since END, status_at = excluded.status_at",
                (store, state, version, since, now_iso()))

    def set_health(self, store: str, snapshot_json: str) -> None:
        """The store's last health snapshot (JSON text) and when it came."""
        self._x("INSERT INTO stores (store, health, health_at) VALUES (?, ?, ?) "
                "ON CONFLICT (store) DO UPDATE SET health = excluded.health, health_at = excluded.health_at",
                (store, snapshot_json, now_iso()))

    def command_sent(self, id: str, store: str, device: str, action: str, args_json: str) -> None:
        """Record a command as sent (state ``sent``)."""
        self._x("INSERT INTO commands (id, store, device, action, args, sent_at, state) VALUES (?, ?, ?, ?, ?, ?, 'sent') "
                "ON CONFLICT (id) DO NOTHING", (id, store, device, action, args_json, now_iso()))

    def command_result(self, id: str, store: str, ok: bool, result_json: str | None, error: str | None) -> None:
        """Record the answer to a command (state ``ok`` or ``error``), known or not."""
        self._x("INSERT INTO commands (id, store, state, result, error, answered_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state, result = excluded.result, "
                "error = excluded.error, answered_at = excluded.answered_at",
                (id, store, "ok" if ok else "error", result_json, error, now_iso()))

    def count_rejected(self, store: str) -> None:
        """Count one refused payload of a store."""
        self._x("INSERT INTO stores (store, rejected) VALUES (?, 1) "
                "ON CONFLICT (store) DO UPDATE SET rejected = stores.rejected + 1", (store,))

    def quarantine(self, store: str, reason: str, detail: str, payload: bytes, keep: int = 4096) -> None:
        """Keep what a refused payload looked like: reason, size and its first ``keep`` bytes."""
        head = payload[:keep].decode("utf-8", errors="replace").replace("\x00", "\\0")
        self._x("INSERT INTO rejected (store, received_at, reason, detail, size, head) VALUES (?, ?, ?, ?, ?, ?)",
                (store, now_iso(), reason, detail[:1000], len(payload), head))

    def report_gaps(self, opened_before: str) -> list[Gap]:
        """Open gaps older than ``opened_before`` not reported yet; marks them reported (once per gap)."""
        found = self._x("SELECT store, stream, first_seq, last_seq, opened_at FROM gaps "
                        "WHERE closed_at IS NULL AND reported = 0 AND opened_at < ?", (opened_before,)).fetchall()
        out = []
        for store, stream, a, b, at in found:
            cur = self._x("UPDATE gaps SET reported = 1 WHERE store = ? AND stream = ? AND first_seq = ? "
                          "AND reported = 0", (store, stream, a))
            if cur.rowcount == 1:
                out.append(Gap(store, int(a), int(b), at, stream=stream))
        return out


class HubDB(ABC):
    """The hub's database; subclasses give the connection and the dialect."""

    for_update = ""
    placeholder = "?"
    _schema_lock_sql = ""

    def __init__(self, url: str):
        self.url = url
        self._conn: Any = None

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection in autocommit mode (transactions are begun explicitly)."""

    @abstractmethod
    def _begin_sql(self) -> str:
        """The statement that opens a write transaction."""

    @property
    @abstractmethod
    def _errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exceptions, mapped to HubDBError."""

    # Version 1 to 2 (streams): the old events and gaps tables step aside for the new ones.
    _v1_renames: tuple[str, ...] = (
        "ALTER TABLE events RENAME TO events_v1", "ALTER TABLE gaps RENAME TO gaps_v1",
        "DROP INDEX IF EXISTS gaps_open", "ALTER TABLE stores ADD COLUMN stream TEXT",
        "ALTER TABLE stores ADD COLUMN live_stream TEXT",
        "ALTER TABLE stores ADD COLUMN streams BIGINT NOT NULL DEFAULT 0")

    def open(self) -> "HubDB":
        """Connect, create the tables if they are missing, bring an older schema up to date."""
        try:
            self._conn = self._connect()
            with self.transaction() as tx:
                if self._schema_lock_sql:
                    self._execute(self._schema_lock_sql)
                self._execute(SCHEMA[0])  # hub_meta
                row = self._execute("SELECT value FROM hub_meta WHERE key = 'schema_version'").fetchone()
                found = row[0] if row else None
                if found is not None and int(found) > int(SCHEMA_VERSION):
                    raise HubDBError(f"the hub database {self.url} has schema version {found}, newer than this "
                                     f"hub's {SCHEMA_VERSION}: run the newer hub")
                digest = hashlib.sha256("\n".join((*SCHEMA, *self._events_schema)).encode()).hexdigest()
                made = self._execute("SELECT value FROM hub_meta WHERE key = 'schema_sha256'").fetchone()
                if found == SCHEMA_VERSION and made is not None and made[0] == digest:
                    # Made by this very schema text: no DDL. On PostgreSQL even CREATE INDEX IF NOT EXISTS
                    # locks its table, and a worker starting beside others storing events deadlocked with
                    # them (gaps, then events). A table added to the schema changes the text: made below.
                    self._events_ready(tx)
                    return self
                if found == "1":
                    for stmt in self._v1_renames:
                        self._execute(stmt)
                self._events_aside()
                # Schema 3's config_results kept one answer per version: it steps aside, its rows come back
                # as the answers of no known stream ("", an agent from before streams in its answer).
                old_results = self._has_column("config_results", "store") and not self._has_column(
                    "config_results", "stream")
                if old_results:
                    self._table_aside("config_results", "config_results_v3")
                for stmt in (*SCHEMA, *self._events_schema):
                    self._execute(stmt)
                if old_results:
                    self._execute("INSERT INTO config_results (store, version, stream, ok, state, errors, reason, "
                                  "in_force_version, in_force_sha256, at, received_at) SELECT store, version, '', ok, "
                                  "state, errors, reason, in_force_version, in_force_sha256, at, received_at "
                                  "FROM config_results_v3")
                    self._execute("DROP TABLE config_results_v3")
                if not self._has_column("device_alerts", "stream"):  # made by schema 1: seq alone ordered
                    self._execute("ALTER TABLE device_alerts ADD COLUMN stream TEXT")
                if not self._has_column("stores", "resent_purged"):  # made by schema 1 or 2
                    self._execute("ALTER TABLE stores ADD COLUMN resent_purged BIGINT NOT NULL DEFAULT 0")
                self._events_ready(tx)
                if found == "1":
                    self._migrate_v1(tx.now)
                self._execute("INSERT INTO hub_meta (key, value) VALUES ('schema_version', ?), ('schema_sha256', ?) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (SCHEMA_VERSION, digest))
        except self._errors as err:
            raise HubDBError(f"cannot open the hub database {self.url}: {err}") from err
        return self

    def _has_column(self, table: str, column: str) -> bool:
        return any(r[1] == column for r in self._execute(f"PRAGMA table_info({table})").fetchall())

    _events_schema: tuple[str, ...] = EVENTS_SQLITE

    def _table_aside(self, table: str, new: str) -> None:
        """Rename ``table`` to ``new`` (its primary key's index follows it on SQLite)."""
        self._execute(f"ALTER TABLE {table} RENAME TO {new}")

    def _events_aside(self) -> None:
        """Before the schema: move an ``events`` table of an older layout out of the way (PostgreSQL)."""

    def _events_ready(self, tx: Tx) -> None:
        """After the schema: what ``events`` needs before the first insert (PostgreSQL: its partitions)."""

    def _migrate_v1(self, now: str) -> None:
        """Version 1's events and gaps become the legacy stream "" of their store."""
        self._execute("INSERT INTO events (store, stream, seq, id, type, time, event, received_at) "
                      "SELECT store, '', seq, id, type, time, event, received_at FROM events_v1")
        self._execute("INSERT INTO gaps (store, stream, first_seq, last_seq, opened_at, closed_at, reported) "
                      "SELECT store, '', first_seq, last_seq, opened_at, closed_at, reported FROM gaps_v1")
        self._execute("INSERT INTO streams (store, stream, contiguous, high, events, first_at, last_event_at) "
                      "SELECT store, '', contiguous, high, events, coalesce(last_event_at, ?), last_event_at "
                      "FROM stores WHERE high > 0", (now,))
        self._execute("UPDATE stores SET stream = '', streams = 1 WHERE high > 0")
        self._execute("DROP TABLE events_v1")
        self._execute("DROP TABLE gaps_v1")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(sql), params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(self._sql(sql), rows)

    def _insert_events(self, rows: Sequence[Sequence[Any]]) -> None:
        self._executemany("INSERT INTO events (store, stream, seq, id, type, time, event, received_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction; commits when the block ends, rolls back on any error."""
        if self._conn is None:
            raise HubDBError("the hub database is not open")
        with self._write_lock():
            yield from self._transaction()

    def _write_lock(self) -> Any:
        """Held around each write transaction; a database that locks well by itself needs none."""
        return nullcontext()

    def _transaction(self) -> Iterator[Tx]:
        try:
            self._conn.execute(self._begin_sql())
            try:
                yield Tx(self)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except self._errors as err:
            try:
                self._conn.execute("ROLLBACK")
            except self._errors:
                pass  # no transaction left to roll back: the error ended it
            raise HubDBError(f"hub database {self.url}: {err}") from err

    # Reads and one-shot writes ----------------------------------------------------

    def ingest(self, store: str, rows: Sequence[EventRow]) -> IngestResult:
        """One batch in its own transaction (the service groups several per transaction instead)."""
        with self.transaction() as tx:
            return tx.ingest(store, rows)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._execute(sql, params).fetchall()
        except self._errors as err:
            raise HubDBError(f"hub database {self.url}: {err}") from err

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read outside any transaction (``?`` placeholders)."""
        return self._query(sql, params)

    def stores(self) -> list[StoreRow]:
        """Every store the hub has heard from, by id."""
        rows = self._query(
            "SELECT s.store, s.status, s.status_since, s.contiguous, s.high, s.events, "
            "(SELECT count(*) FROM gaps g WHERE g.store = s.store AND g.closed_at IS NULL), "
            "s.health_at, s.rejected, s.conflicts, s.stream, s.streams, "
            "(SELECT count(*) FROM identity i WHERE i.store = s.store AND i.cleared_at IS NULL) "
            "FROM stores s ORDER BY s.store")
        return [StoreRow(*r[:11], int(r[11]), int(r[12])) for r in rows]

    def store(self, store: str) -> StoreRow | None:
        """One store's line, or None."""
        return next((r for r in self.stores() if r.store == store), None)

    def gaps(self, store: str) -> list[Gap]:
        """Every gap of a store, open or closed, by first seq."""
        rows = self._query("SELECT store, first_seq, last_seq, opened_at, closed_at, stream FROM gaps "
                           "WHERE store = ? ORDER BY stream, first_seq", (store,))
        return [Gap(r[0], int(r[1]), int(r[2]), r[3], r[4], r[5]) for r in rows]

    def event_ids(self, store: str, stream: str = "") -> dict[int, str]:
        """seq -> event id of every event held for one stream of a store (the legacy stream by default)."""
        return {int(s): i for s, i in self._query(
            "SELECT seq, id FROM events WHERE store = ? AND stream = ? ORDER BY seq", (store, stream))}

    def store_events(self, store: str) -> list[tuple[str, int, str, str]]:
        """(stream, seq, id, type) of every event held for a store: streams in the order the hub first
        saw them, each in seq order."""
        return [(s, int(q), i, t) for s, q, i, t in self._query(
            "SELECT e.stream, e.seq, e.id, e.type FROM events e JOIN streams s ON s.store = e.store AND "
            "s.stream = e.stream WHERE e.store = ? ORDER BY s.first_at, e.stream, e.seq", (store,))]

    def access_summaries(self, store: str) -> list[dict[str, Any]]:
        """The data of every ``retail.privacy.access_summary`` a store sent (sync/topics.py AccessSummary),
        oldest first: how often its clients read members' data, without any member."""
        rows = self._query("SELECT event FROM events WHERE store = ? AND type = ? UNION ALL "
                           "SELECT event FROM events_kept WHERE store = ? AND type = ?",  # what purges kept
                           (store, ACCESS_SUMMARY, store, ACCESS_SUMMARY))
        return sorted((json.loads(r[0])["data"] for r in rows), key=lambda d: (d.get("first") or "", d.get("last") or ""))

    def streams(self, store: str) -> list[StreamRow]:
        """Every stream of a store, in the order the hub first saw them."""
        cols = ("store, stream, contiguous, high, events, first_at, last_event_at, prev_stream, prev_seq, "
                "successor, end_seq, announced_at, superseded_at")
        return [StreamRow(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), *r[5:8],
                          None if r[8] is None else int(r[8]), r[9], None if r[10] is None else int(r[10]), *r[11:])
                for r in self._query(f"SELECT {cols} FROM streams WHERE store = ? ORDER BY first_at, stream",
                                     (store,))]

    def identity_issues(self, store: str | None = None, *, open_only: bool = False) -> list[IdentityIssue]:
        """What the hub noticed about stores' identities, newest first."""
        where, params = [], []
        if store is not None:
            where.append("store = ?")
            params.append(store)
        if open_only:
            where.append("cleared_at IS NULL")
        sql = ("SELECT store, code, subject, detail, first_at, last_at, count, cleared_at FROM identity"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY last_at DESC")
        return [IdentityIssue(*r[:6], int(r[6]), r[7]) for r in self._query(sql, params)]

    def conflicts(self, store: str) -> list[dict[str, Any]]:
        """The events kept aside because their position held another event, oldest first, whole."""
        cols = ("stream", "seq", "id", "kept_id", "type", "event", "received_at")
        return [dict(zip(cols, r)) for r in self._query(
            f"SELECT {', '.join(cols)} FROM conflicts WHERE store = ? ORDER BY received_at, stream, seq", (store,))]

    def event_count(self) -> int:
        """Events held, all stores."""
        return int(self._query("SELECT count(*) FROM events")[0][0])

    def command(self, id: str) -> dict[str, Any] | None:
        """A command's row as a dict, or None."""
        cols = ("id", "store", "device", "action", "args", "sent_at", "state", "result", "error", "answered_at")
        rows = self._query(f"SELECT {', '.join(cols)} FROM commands WHERE id = ?", (id,))
        return dict(zip(cols, rows[0])) if rows else None

    def status_health(self, store: str) -> dict[str, Any] | None:
        """A store's last status and health as stored, or None."""
        cols = ("status", "status_version", "status_since", "status_at", "health", "health_at")
        rows = self._query(f"SELECT {', '.join(cols)} FROM stores WHERE store = ?", (store,))
        return dict(zip(cols, rows[0])) if rows else None

    def rejected(self, store: str) -> list[tuple[str, str, int]]:
        """(reason, detail, size) of the quarantined payloads of a store, oldest first."""
        return [(r[0], r[1], int(r[2])) for r in self._query(
            "SELECT reason, detail, size FROM rejected WHERE store = ? ORDER BY received_at", (store,))]


class SQLiteHubDB(HubDB):
    """SQLite in WAL mode with ``synchronous=FULL``: a commit that returned survives power loss."""

    def __init__(self, path: str | Path, url: str | None = None):
        super().__init__(url or f"sqlite:///{path}")
        self.path = Path(path)
        self._lock_fd: int | None = None

    def _connect(self) -> sqlite3.Connection:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One worker thread uses the connection, but the service opens and closes
        # it from another; the DB object is never used by two threads at once.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        # Two hub processes may share the file: wait for the other's commit instead of failing.
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        # "Durable at the hub" is what an ack promises: FULL fsyncs the WAL at every commit.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _begin_sql(self) -> str:
        return "BEGIN IMMEDIATE"  # take the write lock now, not at the first write: no upgrade deadlock

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """An flock on ``<db>.lock`` around each write transaction.

        Two hub processes on one SQLite file queue for its write lock. SQLite's
        own busy handler polls for it with sleeps of 1 to 100 ms, so under
        contention a worker sleeps while the lock is free; flock wakes the
        waiter the moment the holder commits (measured in
        bench/bench_hub_scale.py: two workers went from slower than one to
        faster). SQLite's lock still guards the file against anything else.
        """
        if self._lock_fd is None:
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the database and the lock file."""
        super().close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)


class PostgresHubDB(HubDB):
    """PostgreSQL through psycopg 3 (``pip install 'psycopg[binary]'``)."""

    for_update = " FOR UPDATE"
    placeholder = "%s"
    # PostgreSQL names a table's primary key index after the table, and keeps the name on a rename.
    _v1_renames = ("ALTER INDEX events_pkey RENAME TO events_v1_pkey", "ALTER INDEX gaps_pkey RENAME TO gaps_v1_pkey",
                   *HubDB._v1_renames)
    # Two workers starting at once on a fresh database would race on CREATE TABLE IF NOT EXISTS.
    _schema_lock_sql = "SELECT pg_advisory_xact_lock(7247)"

    def __init__(self, url: str):
        super().__init__(url)
        try:
            import psycopg
        except ImportError as err:
            raise DBDriverMissing(
                f"{_redact(url)} needs psycopg 3, which is not installed: pip install 'psycopg[binary]'") from err
        self._psycopg = psycopg

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, autocommit=True)

    _events_schema = EVENTS_POSTGRES

    def _events_aside(self) -> None:
        """Version 2's unpartitioned ``events`` steps aside as ``events_v2``; ``_events_ready`` attaches it."""
        row = self._execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('events')").fetchone()
        if row is not None and row[0] == "r":
            self._execute("ALTER TABLE events RENAME TO events_v2")
            self._execute("ALTER INDEX IF EXISTS events_pkey RENAME TO events_v2_pkey")

    def _table_aside(self, table: str, new: str) -> None:
        """Rename ``table`` to ``new``, and its primary key's index, whose name the new table wants."""
        self._execute(f"ALTER TABLE {table} RENAME TO {new}")
        self._execute(f"ALTER INDEX IF EXISTS {table}_pkey RENAME TO {new}_pkey")

    def _events_ready(self, tx: Tx) -> None:
        """Version 2's table becomes the partition of everything before tomorrow (no row is copied:
        PostgreSQL checks the bound in one read and indexes it for the lookup); then today's
        partition and the next days' are made (retention.py)."""
        from sync.hub import retention  # retention.py builds on this module

        now = datetime.fromisoformat(tx.now)
        if self._execute("SELECT to_regclass('events_v2')").fetchone()[0] is not None:
            retention.attach_old_events(tx, "events_v2", now)
        retention.ensure_partitions(tx, now)

    def _has_column(self, table: str, column: str) -> bool:
        return bool(self._execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                                  "AND table_name = ? AND column_name = ?", (table, column)).fetchall())

    def _begin_sql(self) -> str:
        return "BEGIN"

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

    def _insert_events(self, rows: Sequence[Sequence[Any]]) -> None:
        # COPY: executemany sends one statement per row, even pipelined.
        with self._conn.cursor() as cur, cur.copy(
                "COPY events (store, stream, seq, id, type, time, event, received_at) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error,)


def _redact(url: str) -> str:
    import re

    return re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


def open_db(url: str) -> HubDB:
    """The database for a URL (``sqlite:///path``, a bare path, ``postgresql://...``), opened."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresHubDB(url).open()
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        if not path.startswith("/") or path == "/":
            raise HubDBError(f"database URL {url!r}: write sqlite:///relative/hub.db or sqlite:////absolute/hub.db")
        return SQLiteHubDB(path[1:], url).open()
    if "://" in url:
        raise HubDBError(f"database URL {_redact(url)!r}: use sqlite:///FILE or postgresql://USER@HOST/DB")
    return SQLiteHubDB(url, f"sqlite:///{url}").open()
