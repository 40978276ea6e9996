"""Outbox rows: events waiting for the hub's acknowledgement."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


class Priority:
    """Business events are never dropped; telemetry may be, oldest first."""

    BUSINESS = 0
    TELEMETRY = 1


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event as stored: ``seq`` and ``id`` never change once assigned."""

    seq: int
    id: str
    type: str
    time: str
    data: dict[str, Any]
    priority: int = Priority.BUSINESS

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple) -> "OutboxEvent":
        seq, id_, type_, time, priority, data = row
        return cls(seq, id_, type_, time, json.loads(data), priority)


def pending(conn: sqlite3.Connection, after_seq: int = 0, limit: int = 1000) -> list[OutboxEvent]:
    """Unacknowledged events with ``seq > after_seq``, in seq order."""
    rows = conn.execute(
        "SELECT seq, id, type, time, priority, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    return [OutboxEvent.from_row(r) for r in rows]


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


def acknowledge(conn: sqlite3.Connection, seq: int) -> tuple[int, int]:
    """Forget events up to ``seq`` (inside a write); returns (events, bytes) freed."""
    n, data = conn.execute(
        "SELECT count(*), coalesce(sum(length(data)), 0) FROM outbox WHERE seq <= ?", (seq,)
    ).fetchone()
    conn.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
    conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'acked_seq'", (seq,))
    return n, data + n * ROW_OVERHEAD


DROPPED_TYPE = "retail.telemetry.dropped"
# What a row costs beyond its data: the seq, id (36 bytes plus its index
# entry), type, time and b-tree overhead; measured close enough for a budget.
ROW_OVERHEAD = 160


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
            tomb = json.dumps({"dropped_type": type_, "reason": "outbox budget reached"})
            conn.execute("UPDATE outbox SET type = ?, data = ? WHERE seq = ?", (DROPPED_TYPE, tomb, seq))
            dropped += 1
            freed += max(0, size - len(tomb))
            if freed >= bytes_to_free:
                break
    return dropped, freed
