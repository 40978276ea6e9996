"""How long the hub keeps raw events, and how it lets go of them: storage that stays bounded.

A chain of 1,000 stores at 100,000 events a day adds 36 billion rows a
year to ``events``. The policy: raw events are kept ``days`` whole days
(UTC) after the day the hub received them; a purge removes every event
received before ``cutoff(now, days)``, midnight UTC ``days`` days before
today, and nothing received at or after it. What the hub's consumers read
stays: ``stores``, ``streams``, ``gaps``, ``conflicts``, ``identity``,
``commands`` and the console's tables are never purged, and the events
of ``KEEP_TYPES`` (the access summaries ``edge-hub privacy`` reports) are
copied into ``events_kept`` in the purge's own transaction. The console and
``edge-hub stores`` read no raw event: their counts (events, acked seq,
gaps, conflicts) are the counters in ``stores`` and ``streams``, so no
per-day aggregate is needed for them.

PostgreSQL: ``events`` is range-partitioned by the day of ``received_at``
(schema.py EVENTS_POSTGRES). ``ensure_partitions`` makes today's partition
and the next ``AHEAD_DAYS`` days' at start-up and on every tick of the
timer; an event no partition covers goes to ``events_default``, so an
insert never fails (a later partition for its day takes it out of the
default in the transaction that makes the partition). A purge drops whole
partitions whose day ended before the cutoff (``DROP TABLE``, no ``DELETE``,
no dead rows to vacuum), each in its own transaction: the partition is
locked against writes, its ``KEEP_TYPES`` rows copied out and counted,
then dropped; the drop waits for the parent's lock at most ``LOCK_TIMEOUT``
(ingest transactions are short; a purge that cannot get it tries again at
the next tick rather than making every ingest queue behind it). Old rows
in the default partition go by batched ``DELETE``. A database of schema
version 2 keeps its table: it becomes the partition of everything received
before tomorrow (db.py ``_events_aside``/``_events_ready``), dropped whole
once all of it is past the cutoff.

SQLite (one store's hub, the demo) has no partitions: a purge deletes in
batches of ``BATCH`` rows, one short write transaction each, so ingest
waits at most one batch. Rows are visited in rowid order, which is the
order they were received in (one writer at a time stamps ``received_at``
at the start of its transaction); the walk stops after the first batch
holding no event past the policy, so it reads one batch of younger events
and needs no index on ``received_at`` for the ingest to maintain.

Exactly once without a unique key. A unique index on a partitioned table
must include the partition key, so ``(store, stream, seq)`` is no longer
unique on PostgreSQL and ``ON CONFLICT`` cannot dedupe. It never had to:
db.py ``Tx.ingest`` takes the store's row lock first and looks the batch's
positions up under it, so two workers ingesting one store (a shared
subscription) run one after the other and the second sees what the first
committed. A purged event may come back (an outbox resending after an
outage, a database restored from a backup): a seq at or below its stream's
``contiguous`` that is not held any more was held and purged, so it is a
duplicate, neither stored again nor a gap, and ``stores.resent_purged``
counts it. Whether it was the same event or another one at the same
position (a conflict) cannot be told once the row is gone. An event above
``contiguous`` (its stream has had a hole for ``days`` days) is purged like
any other; the store still holds it unacknowledged and sends it again, and
it is stored again.

``RetentionTimer`` runs the above in ``edge-hub run`` on its own
connection every ``every_s`` seconds; ``edge-hub retention`` runs it once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sync.hub.db import HubDB, PostgresHubDB, Tx, open_db
from sync.hub.errors import HubDBError
from sync.topics import ACCESS_SUMMARY

log = logging.getLogger(__name__)

KEEP_TYPES = (ACCESS_SUMMARY,)  # read by edge-hub privacy (db.py access_summaries) long after the events go
AHEAD_DAYS = 3
BATCH = 5000
LOCK_TIMEOUT = "5s"
KEEP_PURGE_LOG = timedelta(days=400)
DEFAULT_EVERY_S = 3600.0
_COLS = "store, stream, seq, id, type, time, event, received_at"
_DAILY = re.compile(r"^events_(\d{8})$")
_PARTITIONS_LOCK = "SELECT pg_advisory_xact_lock(7248)"  # one worker at a time makes or drops partitions


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of ``events`` (PostgreSQL): received_at from ``lo`` (None: no lower bound) to ``hi``."""

    name: str
    lo: str | None
    hi: str | None
    default: bool = False


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one purge did: events received before ``cutoff`` left (``removed``), ``kept`` of them copied to
    ``events_kept``, ``partitions`` dropped whole."""

    cutoff: str
    removed: int
    kept: int
    partitions: tuple[str, ...] = ()


def cutoff(now: datetime, days: int) -> datetime:
    """Midnight UTC ``days`` days before ``now``'s day: events received before it are past the policy."""
    if days < 1:
        raise ValueError(f"retention of {days} days: keep events at least 1 day")
    day = now.astimezone(timezone.utc).date() - timedelta(days=days)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


# PostgreSQL partitions -------------------------------------------------------------------------------

def partitions(tx: Tx) -> list[Partition]:
    """The partitions of ``events``, by lower bound (the default last)."""
    out = []
    for name, bound in tx.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass").fetchall():
        if bound == "DEFAULT":
            out.append(Partition(name, None, None, default=True))
            continue
        m = re.search(r"FROM \((MINVALUE|'[^']*')\) TO \((MAXVALUE|'[^']*')\)", bound)
        if m is None:
            raise HubDBError(f"partition {name} of events has a bound this hub does not know: {bound}")
        lo, hi = (None if v.endswith("VALUE") else v.strip("'") for v in m.groups())
        out.append(Partition(name, lo, hi))
    return sorted(out, key=lambda p: (p.default, p.lo or ""))


def _day_partition(tx: Tx, day: date) -> str:
    """Make the partition of ``day``, taking that day's events out of the default partition."""
    name, lo, hi = f"events_{day:%Y%m%d}", day.isoformat(), (day + timedelta(days=1)).isoformat()
    # Held until the commit: an insert into the default for this day between the move and the attach
    # would fail the attach.
    tx.execute("LOCK TABLE events_default IN ACCESS EXCLUSIVE MODE")
    tx.execute(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    tx.execute(f'WITH moved AS (DELETE FROM events_default WHERE received_at COLLATE "C" >= ? '
               f'AND received_at COLLATE "C" < ? RETURNING {_COLS}) '
               f"INSERT INTO {name} ({_COLS}) SELECT {_COLS} FROM moved", (lo, hi))
    tx.execute(f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')")
    return name


def ensure_partitions(tx: Tx, now: datetime, ahead: int = AHEAD_DAYS) -> list[str]:
    """Make the partitions of ``now``'s day and the ``ahead`` days after it that no partition covers yet."""
    tx.execute(_PARTITIONS_LOCK)
    ranges = [(p.lo or "", p.hi) for p in partitions(tx) if not p.default]
    today = now.astimezone(timezone.utc).date()
    made = []
    for day in (today + timedelta(days=i) for i in range(ahead + 1)):
        lo, hi = day.isoformat(), (day + timedelta(days=1)).isoformat()
        if not any(a < hi and (b is None or lo < b) for a, b in ranges):
            made.append(_day_partition(tx, day))
    return made


def attach_old_events(tx: Tx, table: str, now: datetime) -> str:
    """An unpartitioned events table (schema version 2) becomes the partition of everything received before
    tomorrow, or before the day after its newest row if that is later; renamed after that bound."""
    tomorrow = now.astimezone(timezone.utc).date() + timedelta(days=1)
    newest = tx.execute(f'SELECT max(received_at COLLATE "C") FROM {table}').fetchone()[0]
    hi = max(tomorrow, date.fromisoformat(newest[:10]) + timedelta(days=1)) if newest else tomorrow
    tx.execute(f"ALTER TABLE events ATTACH PARTITION {table} FOR VALUES FROM (MINVALUE) TO ('{hi.isoformat()}')")
    name = f"events_before_{hi:%Y%m%d}"
    tx.execute(f"ALTER TABLE {table} RENAME TO {name}")
    return name


# Purge ---------------------------------------------------------------------------------------------------

def purge(db: HubDB, days: int, now: datetime, batch: int = BATCH) -> PurgeResult:
    """Remove every event received before ``cutoff(now, days)``, keeping ``KEEP_TYPES`` in ``events_kept``."""
    cut = cutoff(now, days).date().isoformat()
    if isinstance(db, PostgresHubDB):
        dropped, removed, kept = _drop_partitions(db, cut)
        more, more_kept = _delete_default(db, cut, batch)
        result = PurgeResult(cut, removed + more, kept + more_kept, tuple(dropped))
    else:
        removed, kept = _delete_sqlite(db, cut, batch)
        result = PurgeResult(cut, removed, kept)
    with db.transaction() as tx:
        if result.removed:
            tx.execute("INSERT INTO purges (at, cutoff, removed, kept, partitions) VALUES (?, ?, ?, ?, ?)",
                       (_iso(now), cut, result.removed, result.kept, " ".join(result.partitions)))
        tx.execute("DELETE FROM purges WHERE at < ?", (_iso(now - KEEP_PURGE_LOG),))
    return result


def _keep_sql(source: str, where: str) -> str:
    return (f"INSERT INTO events_kept ({_COLS}) SELECT {_COLS} FROM {source} WHERE {where} AND type IN "
            f"({', '.join('?' for _ in KEEP_TYPES)}) ON CONFLICT (store, stream, seq) DO NOTHING")


def _drop_partitions(db: HubDB, cut: str) -> tuple[list[str], int, int]:
    """Drop each day's partition that ended at or before ``cut``, one transaction each."""
    with db.transaction() as tx:
        old = [p for p in partitions(tx) if not p.default and p.hi is not None and p.hi <= cut]
    dropped, removed, kept = [], 0, 0
    for p in old:
        with db.transaction() as tx:
            tx.execute(_PARTITIONS_LOCK)
            tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            tx.execute(f"LOCK TABLE {p.name} IN SHARE MODE")  # no write lands in it between the count and the drop
            kept += tx.execute(_keep_sql(p.name, "true"), KEEP_TYPES).rowcount
            removed += int(tx.execute(f"SELECT count(*) FROM {p.name}").fetchone()[0])
            tx.execute(f"DROP TABLE {p.name}")
        dropped.append(p.name)
    return dropped, removed, kept


def _delete_default(db: HubDB, cut: str, batch: int) -> tuple[int, int]:
    """Old events in the default partition (received while no partition covered their day), in batches."""
    removed = kept = 0
    while True:
        with db.transaction() as tx:
            n, k = tx.execute(
                f'WITH gone AS (DELETE FROM events_default WHERE ctid IN (SELECT ctid FROM events_default '
                f'WHERE received_at COLLATE "C" < ? LIMIT ?) RETURNING {_COLS}), '
                f"k AS ({_keep_sql('gone', 'true')} RETURNING 1) "
                "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM k)", (cut, batch, *KEEP_TYPES)).fetchone()
        removed, kept = removed + int(n), kept + int(k)
        if n < batch:
            return removed, kept


def _delete_sqlite(db: HubDB, cut: str, batch: int) -> tuple[int, int]:
    """Delete in rowid (= received) order, ``batch`` rows per write transaction, until a batch has nothing to
    delete (a clock stepped back leaves some younger rows among the old: the walk goes past them)."""
    removed = kept = 0
    after = 0
    while True:
        with db.transaction() as tx:
            got = tx.execute("SELECT rowid, received_at FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                             (after, batch)).fetchall()
            old = sum(1 for _, at in got if at < cut)
            if old:
                span = (after, got[-1][0], cut)
                kept += tx.execute(_keep_sql("events", "rowid > ? AND rowid <= ? AND received_at < ?"),
                                   (*span, *KEEP_TYPES)).rowcount
                removed += tx.execute("DELETE FROM events WHERE rowid > ? AND rowid <= ? AND received_at < ?",
                                      span).rowcount
        if not old or len(got) < batch:
            return removed, kept
        after = got[-1][0]


# The timer of `edge-hub run` ----------------------------------------------------------------------------

class RetentionTimer:
    """Every ``every_s`` seconds, on its own connection: make the coming days' partitions (PostgreSQL) and,
    with ``days``, purge. The first tick comes at start. ``clock`` is injectable for tests."""

    def __init__(self, url: str, days: int | None, every_s: float = DEFAULT_EVERY_S,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        if days is not None:
            cutoff(clock(), days)  # a bad policy fails here, not in the thread
        self.url = url
        self.days = days
        self.every_s = every_s
        self.clock = clock
        self.ticks = 0  # passes that worked
        self.failures = 0  # passes that failed (logged once until one works again)
        self.last: PurgeResult | None = None
        self._db: HubDB | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Open the connection (HubDBError if it cannot) and start ticking."""
        self._db = open_db(self.url)
        self._thread = threading.Thread(target=self._run, name="hub-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the tick under way, and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self) -> None:
        while True:
            try:
                self.tick()
                if self._failing:
                    log.info("retention: working again")
                    self._failing = False
            except HubDBError as err:
                self.failures += 1
                if not self._failing:
                    log.error("retention: %s (trying again every %g s)", err, self.every_s)
                    self._failing = True
            if self._stop.wait(self.every_s):
                return

    def tick(self) -> PurgeResult | None:
        """One pass: partitions ahead, then the purge."""
        assert self._db is not None, "start() first"
        now = self.clock()
        if isinstance(self._db, PostgresHubDB):
            with self._db.transaction() as tx:
                made = ensure_partitions(tx, now)
            if made:
                log.info("retention: made partitions %s", ", ".join(made))
        result = None
        if self.days is not None:
            result = self.last = purge(self._db, self.days, now)
            if result.removed:
                log.info("retention: %d events received before %s purged (%d kept for reports%s)", result.removed,
                         result.cutoff, result.kept,
                         f"; dropped {', '.join(result.partitions)}" if result.partitions else "")
        self.ticks += 1
        return result


def status(db: HubDB) -> dict[str, Any]:
    """What the hub holds: events, the oldest one, events kept, resends of purged events, the last purges,
    and on PostgreSQL the partitions with their sizes."""
    held, oldest = db.query("SELECT count(*), min(received_at) FROM events")[0]
    out: dict[str, Any] = {
        "events": int(held), "oldest": oldest,
        "kept": int(db.query("SELECT count(*) FROM events_kept")[0][0]),
        "resent_purged": {s: int(n) for s, n in db.query(
            "SELECT store, resent_purged FROM stores WHERE resent_purged > 0 ORDER BY store")},
        "purges": [dict(zip(("at", "cutoff", "removed", "kept", "partitions"), r)) for r in db.query(
            "SELECT at, cutoff, removed, kept, partitions FROM purges ORDER BY at DESC LIMIT 5")],
    }
    if isinstance(db, PostgresHubDB):
        with db.transaction() as tx:
            parts = partitions(tx)
        out["partitions"] = [{"name": p.name, "from": p.lo, "to": p.hi, "default": p.default,
                              "events": int(db.query(f"SELECT count(*) FROM {p.name}")[0][0])} for p in parts]
    return out
