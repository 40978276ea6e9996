"""The agent's SQLite store with group commit.

One writer thread owns the only write connection. Writers submit a function;
the writer takes every request waiting in its queue, runs each inside its own
SAVEPOINT of a single transaction, commits once with ``synchronous=FULL``
(one fsync for the whole group), and only then resolves each writer's future.
A writer therefore hears "done" only after its data is on disk, and 32
concurrent writers share fsyncs instead of queueing for 32 of them.

Outbox ``seq`` numbers are assigned by the writer inside the same
transaction as the business write; a request that fails rolls back to its
savepoint and gives its numbers back, so seq stays gapless.

Reads go through a small pool of read-only connections (WAL lets them run
beside the writer) so that the event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.errors import StoreClosed, StoreError
from edge_agent.store import codec, keys
from edge_agent.store import outbox as outbox_rows
from edge_agent.store.migrations import migrate
from edge_agent.store.outbox import OutboxEvent, Priority
from edge_agent.store.streams import Stream, Streams
from edge_core.bus import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()



def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): Unix milliseconds, then 74 random bits.

    Ids that grow with time land at the right edge of an index instead of on
    a random page (the sales table's sale id index): fewer page splits, a
    denser file. ``uuid.uuid7`` arrives only in Python 3.14.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the agent's pragmas: WAL, synchronous=FULL, foreign keys."""
    # Read connections are used by one pool thread each but closed by stop(),
    # from another thread, after the pool has shut down.
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=not readonly)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: in WAL mode the WAL is fsynced at every commit, so a commit
        # that returned survives power loss, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


class Tx:
    """What a write function receives: the connection, inside a transaction,
    and ``emit`` to add an outbox event in that same transaction."""

    def __init__(self, store: "Store", conn: sqlite3.Connection):
        self._store = store
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run one statement in the transaction."""
        return self.conn.execute(sql, params)

    @property
    def secret(self) -> bytes:
        """The store's key (store/keys.py): for pseudonyms and pickup code hashes."""
        return self._store.secret

    def emit(self, type: str, data: dict[str, Any], priority: int = Priority.BUSINESS) -> OutboxEvent:
        """Append an event to the outbox; its seq is the store's next, assigned now.

        For the types in ``outbox.RECORDS`` the outbox keeps no copy of
        ``data``: the caller writes the record, with this event's seq and
        ``{"event": data, ...}`` as its body, in the same transaction.
        """
        seq = self._store._last_seq + 1
        event_id = uuid7()
        event = OutboxEvent(seq, str(event_id), type, utcnow().isoformat(), data, priority)
        packed = None if type in outbox_rows.RECORDS else codec.pack(data)
        self.conn.execute(
            "INSERT INTO outbox (seq, id, type, time, priority, data) VALUES (?, ?, ?, ?, ?, ?)",
            (event.seq, event_id.bytes, event.type, event.time, priority, packed),
        )
        self._store._last_seq = seq
        self._store.outbox_bytes += len(packed or b"") + outbox_rows.ROW_OVERHEAD
        return event


@dataclass
class StoreStats:
    """Counters for /metrics and the benchmarks."""

    commits: int = 0
    writes: int = 0
    failed_writes: int = 0
    largest_group: int = 0


@dataclass(slots=True)
class _Request:
    fn: Callable[[Tx], Any]
    # submit(): a concurrent Future (any thread). write()/emit(): an asyncio
    # Future and its loop, resolved by one call_soon_threadsafe per group:
    # one wake-up of the loop per commit instead of one per writer, which
    # keeps groups full (bench/README.md has the figures).
    future: "Future | asyncio.Future"
    loop: asyncio.AbstractEventLoop | None = None
    # One INSERT: SQLite undoes a failed statement by itself, no SAVEPOINT needed.
    single: bool = False


def _claim(req: _Request) -> bool:
    """True if the request is still wanted (its caller has not given up)."""
    if req.loop is None:
        return req.future.set_running_or_notify_cancel()
    return not req.future.cancelled()  # a cross-thread read; cancel() runs in the loop


def _resolve(outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """Runs in the event loop: hand each writer its result."""
    for fut, result, err in outcomes:
        if fut.cancelled():
            continue
        if err is None:
            fut.set_result(result)
        else:
            fut.set_exception(err)


def _hand_back(outcomes: list[tuple[_Request, Any, BaseException | None]]) -> None:
    """Resolve concurrent futures here, asyncio ones with one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for req, result, err in outcomes:
        if req.loop is not None:
            by_loop.setdefault(req.loop, []).append((req.future, result, err))
        elif err is None:
            req.future.set_result(result)
        else:
            req.future.set_exception(err)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:
            log.warning("store: %d write(s) committed after their event loop closed", len(items))


def lock_data_dir(data_dir: Path) -> int:
    """Take the data directory for this process (an flock on ``agent.lock`` held until exit): the
    agent and ``edge-agent drain`` never work on one store database at once. StoreError if taken."""
    import fcntl

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as err:
        raise StoreError(f"cannot use the data directory {data_dir}: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise StoreError(f"another process (a running edge-agent, or edge-agent drain) uses {data_dir}") from err
    return fd


class Store:
    """SQLite store at ``path``; ``start()`` opens and migrates, ``stop()`` drains and closes."""

    def __init__(self, path: Path | str, *, max_group: int = 256, readers: int = 2):
        self.path = Path(path)
        self.max_group = max_group
        self.readers = readers
        self.stats = StoreStats()
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._listeners: list[Callable[[int], None]] = []
        self._last_seq = 0
        # This run's stream (streams.py): its id is known from the start (the link announces
        # it), its row is written with the first event it numbers.
        self.stream_id = str(uuid.uuid4())
        self._stream_base: int | None = None  # last_seq at start; None once the stream is saved
        # The last seq numbered before this run: every stream but this run's ends at or below it
        # (the writer moves last_seq on before this run's stream is known to readers).
        self.run_base = 0
        self.streams = Streams([])
        # Approximate bytes the outbox holds: counted at start, added to by
        # emit, taken from by whoever deletes rows (the hub link).
        self.outbox_bytes = 0
        # The store's key (store/keys.py), read or made by start() beside the database.
        self.secret = b""
        self._closed = True

    # Life cycle ------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, run migrations, start the writer thread."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the data directory {self.path.parent}: {err.strerror}") from err
        ready: Future = Future()
        self._thread = threading.Thread(target=self._writer, args=(ready,), name="store-writer", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(ready)
        self._read_pool = ThreadPoolExecutor(self.readers, thread_name_prefix="store-read")
        self._closed = False

    async def stop(self) -> None:
        """Finish every submitted write, then close all connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
        with self._read_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    @property
    def writer_alive(self) -> bool:
        """False once the writer thread has died; the watchdog reads this."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_seq(self) -> int:
        """The highest seq committed (or being committed) so far."""
        return self._last_seq

    # Writes ----------------------------------------------------------------

    def submit(self, fn: Callable[[Tx], T]) -> "Future[T]":
        """Queue ``fn`` for the next group commit; usable from any thread."""
        if self._closed:
            raise StoreClosed("the store is stopped")
        fut: Future = Future()
        self._queue.put(_Request(fn, fut))
        return fut

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a transaction; returns once the commit is on disk."""
        return await self._write(fn, single=False)

    async def emit(self, type: str, data: dict[str, Any], priority: int = Priority.BUSINESS) -> OutboxEvent:
        """Durably append one event to the outbox and return it with its seq."""
        if type in outbox_rows.RECORDS:
            # Its data lives in its record, which only a write function can add.
            raise ValueError(f"{type} is stored with its {outbox_rows.RECORDS[type]} record: use Store.write")
        return await self._write(lambda tx: tx.emit(type, data, priority), single=True)

    async def _write(self, fn: Callable[[Tx], T], *, single: bool) -> T:
        if self._closed:
            raise StoreClosed("the store is stopped")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(_Request(fn, fut, loop, single))
        return await fut

    def add_commit_listener(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(last_seq)`` from the writer thread after each commit."""
        self._listeners.append(callback)

    # Reads -----------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with a read-only connection in the read pool."""
        if self._read_pool is None:
            raise StoreClosed("the store is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._read, fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, readonly=True)
            with self._read_lock:
                self._read_conns.append(conn)
        try:
            return fn(conn)
        except sqlite3.Error as err:
            raise StoreError(f"read failed: {err}") from err

    # The writer thread -----------------------------------------------------

    def _writer(self, ready: Future) -> None:
        try:
            key_path = self.path.parent / keys.KEY_FILE
            self.secret = keys.load_or_create(key_path)
            conn = connect(self.path)
            migrate(conn)
            keys.check(conn, self.secret, key_path)
            self._last_seq = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
            self.streams = Streams.load(conn)
            self._stream_base = self.run_base = self._last_seq
            self.outbox_bytes = outbox_rows.usage(conn)[1]
        except Exception as err:  # noqa: BLE001 - handed to start() which raises it
            ready.set_exception(StoreError(f"cannot open {self.path}: {err}"))
            return
        ready.set_result(None)
        tx = Tx(self, conn)
        try:
            while True:
                group = [self._queue.get()]
                while len(group) < self.max_group:
                    try:
                        group.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in group)
                requests = [item for item in group if isinstance(item, _Request)]
                if requests:
                    self._commit_group(conn, tx, requests)
                if stop:
                    # Writes queued behind the stop marker still get committed.
                    rest = []
                    while True:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(item, _Request):
                            rest.append(item)
                    if rest:
                        self._commit_group(conn, tx, rest)
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, tx: Tx, requests: list[_Request]) -> None:
        start_seq = self._last_seq
        streams_before = self.streams
        outcomes: list[tuple[_Request, Any, BaseException | None]] = []
        started: list[_Request] = []
        reached = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for reached, req in enumerate(requests, 1):
                if not _claim(req):
                    continue  # the caller gave up before we started: nothing to undo
                started.append(req)
                before = self._last_seq
                if not req.single:
                    conn.execute("SAVEPOINT w")
                try:
                    result = req.fn(tx)
                except Exception as err:  # noqa: BLE001 - the error goes back to its caller
                    if not req.single:
                        conn.execute("ROLLBACK TO w")
                        conn.execute("RELEASE w")
                    elif not conn.in_transaction:
                        raise  # SQLite dropped the whole transaction: the group fails
                    self._last_seq = before
                    outcomes.append((req, None, err))
                else:
                    if not req.single:
                        conn.execute("RELEASE w")
                    outcomes.append((req, result, None))
            if self._last_seq != start_seq:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (self._last_seq,))
                if self._stream_base is not None:
                    # The run's first event: its stream is saved with it. Known to readers
                    # before the commit, so that no reader sees an event outside its stream.
                    conn.execute("INSERT INTO streams (id, base, started_at) VALUES (?, ?, ?)",
                                 (self.stream_id, self._stream_base, utcnow().isoformat()))
                    self.streams = self.streams.added(Stream(self.stream_id, self._stream_base))
            conn.execute("COMMIT")
            if self.streams is not streams_before:
                self._stream_base = None
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._last_seq = start_seq
            self.streams = streams_before
            failure = StoreError(f"commit failed, nothing of this write was kept: {err}")
            failure.__cause__ = err
            log.error("store: %s", failure)
            # Every request of the group fails, the ones not reached yet too:
            # left pending, their callers would wait for ever.
            failed = started + [r for r in requests[reached:] if _claim(r)]
            self.stats.failed_writes += len(failed)
            _hand_back([(r, None, failure) for r in failed])
            return
        self.stats.commits += 1
        self.stats.largest_group = max(self.stats.largest_group, len(outcomes))
        for _, _, err in outcomes:
            if err is None:
                self.stats.writes += 1
            else:
                self.stats.failed_writes += 1
        _hand_back(outcomes)
        if self._last_seq != start_seq:
            for callback in self._listeners:
                callback(self._last_seq)
