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


def acknowledge(conn: sqlite3.Connection, seq: int) -> int:
    """Forget events up to ``seq`` (inside a write); returns how many were deleted."""
    deleted = conn.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
    conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'acked_seq'", (seq,))
    return deleted
