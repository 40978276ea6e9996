"""Outbox rows: events waiting for the hub's acknowledgement."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from edge_agent.store import codec
# The event type is the wire's (sync/events.py); re-exported here, where the store's code looks for it.
from sync.events import OutboxEvent as OutboxEvent
from sync.events import Priority as Priority

# Events stored once, in their business record: the outbox row's data is
# NULL and the event's data is the ``event`` of the record's body, in the
# table named here, in the row with the same seq. A record is never changed
# after it is written, so a resent event carries the same data.
RECORDS = {"retail.sale.completed": "sales", "retail.return.accepted": "returns"}


def from_row(row: sqlite3.Row | tuple) -> OutboxEvent:
    """An event from ``seq, id, type, time, priority, data[, record body]`` as stored."""
    seq, id_, type_, time, priority, data, *record = row
    if data is None:
        if not record or record[0] is None:
            raise LookupError(f"outbox event {seq} ({type_}) has lost its record in {RECORDS.get(type_)!r}")
        event = codec.unpack(record[0])["event"]
    else:
        event = codec.unpack(data)
    return OutboxEvent(seq, codec.uuid_text(id_), type_, time, event, priority)


def _pending_sql() -> str:
    tables = sorted(set(RECORDS.values()))
    joins = "".join(f" LEFT JOIN {table} ON o.data IS NULL AND {table}.seq = o.seq" for table in tables)
    bodies = ", ".join(f"{table}.body" for table in tables) or "NULL"
    return (f"SELECT o.seq, o.id, o.type, o.time, o.priority, o.data, coalesce({bodies}, NULL) "
            f"FROM outbox o{joins} WHERE o.seq > ? ORDER BY o.seq LIMIT ?")


_PENDING = _pending_sql()


def pending(conn: sqlite3.Connection, after_seq: int = 0, limit: int = 1000) -> list[OutboxEvent]:
    """Unacknowledged events with ``seq > after_seq``, in seq order, with their data."""
    return [from_row(r) for r in conn.execute(_PENDING, (after_seq, limit))]


def depth(conn: sqlite3.Connection) -> int:
    """How many events wait for the hub."""
    return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]


def oldest_time(conn: sqlite3.Connection) -> str | None:
    """Time of the oldest unacknowledged event, or None."""
    row = conn.execute("SELECT time FROM outbox ORDER BY seq LIMIT 1").fetchone()
    return row[0] if row else None


def acked_seq(conn: sqlite3.Connection) -> int:
    """The highest seq the hub has acknowledged (events up to it are deleted)."""
    return conn.execute("SELECT value FROM meta WHERE key = 'acked_seq'").fetchone()[0]


def acknowledge(conn: sqlite3.Connection, seq: int, at: str | None = None) -> tuple[int, int]:
    """Forget events up to ``seq`` (inside a write); returns (events, bytes) freed.

    When (``at``, ISO-8601 UTC, default now) is kept in ``acks``: the retention
    of the personal data in these events' records counts from it
    (edge_agent/privacy.py). Acks within ``ACK_GRAIN`` of the last row move
    that row's seq up instead of adding one (a busy store is acknowledged
    many times a minute): retention then counts from up to a minute before
    the ack, which is nothing against days, and the table stays small.
    """
    n, data = conn.execute(
        "SELECT count(*), coalesce(sum(length(data)), 0) FROM outbox WHERE seq <= ?", (seq,)
    ).fetchone()
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
    conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'acked_seq'", (seq,))
    moment = datetime.fromisoformat(at) if at else datetime.now(timezone.utc)
    last = conn.execute("SELECT seq, at FROM acks ORDER BY seq DESC LIMIT 1").fetchone()
    if last is not None and seq <= last[0]:
        pass  # acknowledged before: its first time stands
    elif last is not None and moment - datetime.fromisoformat(last[1]) < ACK_GRAIN:
        conn.execute("UPDATE acks SET seq = ? WHERE seq = ?", (seq, last[0]))
    else:
        conn.execute("INSERT INTO acks (seq, at) VALUES (?, ?)", (seq, moment.isoformat()))
    return n, data + n * ROW_OVERHEAD


ACK_GRAIN = timedelta(minutes=1)


DROPPED_TYPE = "retail.telemetry.dropped"
# What a row costs beyond its data: the seq, id (16 bytes), type, time and
# b-tree overhead; measured close enough for a budget. The data of an event
# kept in its record counts with the record, not here.
ROW_OVERHEAD = 90


def usage(conn: sqlite3.Connection) -> tuple[int, int]:
    """(events, approximate bytes) the outbox holds."""
    n, data = conn.execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM outbox").fetchone()
    return n, data + n * ROW_OVERHEAD


def drop_telemetry(conn: sqlite3.Connection, bytes_to_free: int, chunk: int = 1000) -> tuple[int, int]:
    """Turn the oldest telemetry events into small tombstones until ``bytes_to_free``
    are freed (inside a write); returns (events dropped, bytes freed).

    A tombstone keeps its seq and id, so the hub still sees a gapless sequence,
    and says what was dropped instead of the event itself.
    """
    dropped = freed = 0
    while freed < bytes_to_free:
        rows = conn.execute(
            "SELECT seq, type, length(data) FROM outbox WHERE priority = ? AND type != ? ORDER BY seq LIMIT ?",
            (Priority.TELEMETRY, DROPPED_TYPE, chunk),
        ).fetchall()
        if not rows:
            break
        for seq, type_, size in rows:
            tomb = codec.pack({"dropped_type": type_, "reason": "outbox budget reached"})
            conn.execute("UPDATE outbox SET type = ?, data = ? WHERE seq = ?", (DROPPED_TYPE, tomb, seq))
            dropped += 1
            freed += max(0, size - len(tomb))
            if freed >= bytes_to_free:
                break
    return dropped, freed
