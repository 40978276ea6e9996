"""The hub's database: SQLite by default, PostgreSQL by URL, one interface.

``open_db(url)`` takes ``sqlite:///relative.db``, ``sqlite:////abs/hub.db``,
a bare file path, or ``postgresql://user@host/db`` (psycopg 3). Work happens
in ``with db.transaction() as tx:`` blocks; the hub commits a whole group of
batches in one of them and acknowledges nothing before the commit returns.

Tables: ``events`` (primary key ``(store, seq)``: a resend is a no-op),
``stores`` (per store: ``contiguous``, the acknowledged seq; ``high``, the
highest seq held; counters; last status and health), ``gaps`` (holes below
``high``, closed when ``contiguous`` passes them), ``commands`` (sent by the
CLI and the console, answered on ``cmd/res``) and ``rejected`` (quarantine
of refused payloads); schema.py has them all, with the console's tables. SQL is kept to what both dialects run: ``?`` placeholders are
rewritten to ``%s`` for psycopg, ``ON CONFLICT`` for upserts, TEXT for JSON
and ISO-8601 UTC times.

Two workers may share one database. Each ingest takes the store's row lock
first (SQLite: ``BEGIN IMMEDIATE`` locks the file; PostgreSQL: ``SELECT ...
FOR UPDATE``, stores in sorted order so that two workers never deadlock), so
a store's contiguous seq is computed by one transaction at a time.
"""

from __future__ import annotations

import fcntl
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
from sync.hub.schema import SCHEMA, SCHEMA_VERSION

DEFAULT_DB = "sqlite:///hub.db"
_WALK_CHUNK = 1000


def now_iso() -> str:
    """Aware UTC now as ISO-8601; every time the hub writes has this form, so text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class StoreRow:
    """One line of ``edge-hub stores``."""

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


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole in a store's seq: ``first..last`` missing, seen at ``opened_at``."""

    store: str
    first: int
    last: int
    opened_at: str
    closed_at: str | None = None


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

    def ingest(self, store: str, rows: Sequence[EventRow]) -> IngestResult:
        """Store a batch (sorted by seq) exactly once; return the store's new contiguous seq."""
        now = self.now
        contiguous, high = self._lock_store(store)
        result = IngestResult(store, contiguous)
        if not rows:
            return result
        existing: dict[int, str] = {}
        if rows[0].seq <= high:  # else nothing of the batch can be stored yet: skip the lookup
            existing = dict(self._x(
                "SELECT seq, id FROM events WHERE store = ? AND seq BETWEEN ? AND ?",
                (store, rows[0].seq, rows[-1].seq)).fetchall())
        fresh = [r for r in rows if r.seq not in existing]
        for r in rows:
            if r.seq in existing:
                result.duplicates += 1
                if existing[r.seq] != r.id:
                    result.conflicts.append((r.seq, existing[r.seq], r.id))
        if fresh:
            self._db._executemany(
                "INSERT INTO events (store, seq, id, type, time, event, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, seq) DO NOTHING",
                [(store, r.seq, r.id, r.type, r.time, r.event, now) for r in fresh])
            result.inserted = len(fresh)
            seqs = [r.seq for r in fresh]
            result.gaps_opened = new_gaps(high, seqs)
            if result.gaps_opened:
                self._db._executemany(
                    "INSERT INTO gaps (store, first_seq, last_seq, opened_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (store, first_seq) DO NOTHING",
                    [(store, a, b, now) for a, b in result.gaps_opened])
            new_high = max(high, seqs[-1])
            if seqs[0] == contiguous + 1:
                if seqs[-1] - seqs[0] == len(seqs) - 1 and seqs[-1] == new_high:
                    result.contiguous = seqs[-1]  # the usual case: the batch extends the run, nothing beyond
                else:
                    result.contiguous = self._walk(store, contiguous)
            if result.contiguous > contiguous and high > contiguous:
                result.gaps_closed = self._close_gaps(store, result.contiguous, now)
            self._x("UPDATE stores SET contiguous = ?, high = ?, events = events + ?, conflicts = conflicts + ?, "
                    "last_event_at = ? WHERE store = ?",
                    (result.contiguous, new_high, len(fresh), len(result.conflicts), now, store))
        elif result.conflicts:
            self._x("UPDATE stores SET conflicts = conflicts + ? WHERE store = ?", (len(result.conflicts), store))
        return result

    def _lock_store(self, store: str) -> tuple[int, int]:
        """The store's row, created if new, and locked until the commit: its contiguous and high seq.

        One statement: the upsert's DO UPDATE locks the row in PostgreSQL as
        ``SELECT ... FOR UPDATE`` would (SQLite's whole-file lock is already held).
        """
        row = self._x("INSERT INTO stores (store) VALUES (?) ON CONFLICT (store) DO UPDATE SET store = excluded.store "
                      "RETURNING contiguous, high", (store,)).fetchone()
        return int(row[0]), int(row[1])

    def _walk(self, store: str, contiguous: int) -> int:
        while True:
            seqs = [s for (s,) in self._x(
                "SELECT seq FROM events WHERE store = ? AND seq > ? ORDER BY seq LIMIT ?",
                (store, contiguous, _WALK_CHUNK)).fetchall()]
            moved = advance(contiguous, seqs)
            if len(seqs) < _WALK_CHUNK or moved != seqs[-1]:
                return moved
            contiguous = moved

    def _close_gaps(self, store: str, contiguous: int, now: str) -> list[tuple[int, int]]:
        closed = [(int(a), int(b)) for a, b in self._x(
            "SELECT first_seq, last_seq FROM gaps WHERE store = ? AND closed_at IS NULL AND last_seq <= ?",
            (store, contiguous)).fetchall()]
        if closed:
            self._x("UPDATE gaps SET closed_at = ? WHERE store = ? AND closed_at IS NULL AND last_seq <= ?",
                    (now, store, contiguous))
        return closed

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
        found = self._x("SELECT store, first_seq, last_seq, opened_at FROM gaps "
                        "WHERE closed_at IS NULL AND reported = 0 AND opened_at < ?", (opened_before,)).fetchall()
        out = []
        for store, a, b, at in found:
            cur = self._x("UPDATE gaps SET reported = 1 WHERE store = ? AND first_seq = ? AND reported = 0", (store, a))
            if cur.rowcount == 1:
                out.append(Gap(store, int(a), int(b), at))
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

    def open(self) -> "HubDB":
        """Connect and create the tables if they are missing."""
        try:
            self._conn = self._connect()
            with self.transaction():
                if self._schema_lock_sql:
                    self._execute(self._schema_lock_sql)
                for stmt in SCHEMA:
                    self._execute(stmt)
                self._execute("INSERT INTO hub_meta (key, value) VALUES ('schema_version', ?) "
                              "ON CONFLICT (key) DO NOTHING", (SCHEMA_VERSION,))
        except self._errors as err:
            raise HubDBError(f"cannot open the hub database {self.url}: {err}") from err
        return self

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
            "s.health_at, s.rejected, s.conflicts FROM stores s ORDER BY s.store")
        return [StoreRow(*r) for r in rows]

    def store(self, store: str) -> StoreRow | None:
        """One store's line, or None."""
        return next((r for r in self.stores() if r.store == store), None)

    def gaps(self, store: str) -> list[Gap]:
        """Every gap of a store, open or closed, by first seq."""
        rows = self._query("SELECT store, first_seq, last_seq, opened_at, closed_at FROM gaps "
                           "WHERE store = ? ORDER BY first_seq", (store,))
        return [Gap(r[0], int(r[1]), int(r[2]), r[3], r[4]) for r in rows]

    def event_ids(self, store: str) -> dict[int, str]:
        """seq -> event id of every event held for a store."""
        return {int(s): i for s, i in self._query("SELECT seq, id FROM events WHERE store = ? ORDER BY seq", (store,))}

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

    def _begin_sql(self) -> str:
        return "BEGIN"

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

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
