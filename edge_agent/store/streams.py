"""The store's event streams: one per run of the store database.

The outbox numbers events with one local ``seq`` for the life of the
database file (sales and returns keep it as their record's key). On the
wire an event is named by ``(stream, seq in that stream)`` instead: each
run of the store (each ``Store.start()`` of a database that then numbers
an event) opens a stream with a random id, and its events are seq 1, 2, ...
of that stream. A stream is appended to by one process only, and never
again once that process ends.

That makes a store's history unambiguous however the database is copied:
a replaced PC starts a new database and so a new stream; a backup restored
onto a PC, or a disk cloned to a second PC, holds a prefix of the streams
the hub already has (identical event for event) and numbers every new
event in a stream of its own. Nothing is renumbered: a stream is a range
of local seqs, ``(base, next stream's base]``, kept in the ``streams``
table (``id``, ``base``).

Events numbered before streams existed belong to the legacy stream ``""``
(base 0); on the wire they carry no ``stream`` attribute, as before.
"""

from __future__ import annotations

import bisect
import sqlite3
from dataclasses import dataclass

LEGACY = ""


@dataclass(frozen=True, slots=True)
class Stream:
    """One stream: its id and the local seq just before its first event."""

    id: str
    base: int


class Streams:
    """The streams of one database, by base; immutable (the store swaps in a new one)."""

    __slots__ = ("_list", "_bases", "_by_id")

    def __init__(self, streams: list[Stream]):
        self._list = sorted(streams, key=lambda s: s.base)
        self._bases = [s.base for s in self._list]
        self._by_id = {s.id: s for s in self._list}

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> "Streams":
        """Every stream of the database."""
        return cls([Stream(i, int(b)) for i, b in conn.execute("SELECT id, base FROM streams ORDER BY base")])

    def added(self, stream: Stream) -> "Streams":
        """A copy with ``stream`` appended (its base above every other)."""
        return Streams([*self._list, stream])

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self):
        return iter(self._list)

    def get(self, id: str) -> Stream | None:
        """The stream with this id, or None."""
        return self._by_id.get(id)

    def locate(self, seq: int) -> tuple[Stream, int]:
        """``(stream, seq in the stream)`` of a local seq."""
        i = bisect.bisect_left(self._bases, seq) - 1
        if i < 0:
            raise LookupError(f"local seq {seq} belongs to no stream")
        s = self._list[i]
        return s, seq - s.base

    def end(self, stream: Stream, last_seq: int) -> int:
        """The local seq of the stream's last event (``last_seq`` is the database's)."""
        i = self._bases.index(stream.base)
        return self._list[i + 1].base if i + 1 < len(self._list) else last_seq

    def previous(self, stream: Stream) -> tuple[Stream, int] | None:
        """The stream before ``stream`` and the seq (in it) of its last event, or None for the first."""
        i = self._bases.index(stream.base)
        if i == 0:
            return None
        prev = self._list[i - 1]
        return prev, stream.base - prev.base
