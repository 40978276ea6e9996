"""What the hub does with an uplink batch, without MQTT or a database.

``parse_batch`` turns the payload of ``edge/{store}/events`` into rows or
refuses the whole batch (BatchRejected); ``advance`` and ``new_gaps`` are
the arithmetic of the acknowledgement: the hub acknowledges the highest
``seq`` up to which it holds every event of the store's stream, never past
a hole. A batch holds the events of one stream (sync/topics.py: streams);
events without ``stream`` are the legacy stream ``""``.

Policy for a bad batch: all or nothing. One bad event (no ``seq``, another
store's ``source``, not a CloudEvent) refuses the whole batch, because
storing its good neighbours could only move the acknowledgement up to the
bad event, and the agent resends the batch as a unit anyway. The only thing
kept of a refused batch is a quarantine record (db.py ``rejected``: reason,
size and the first bytes), written at most once per store and reason per
rate-limit window, so that an operator can see what the store sends.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sync.hub.errors import BatchRejected
from pydantic import TypeAdapter, ValidationError

from sync.topics import CloudEvent, PayloadError, StoreTopics, decode_events

MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_EVENTS = 10_000
MAX_SEQ = 2**63 - 1  # BIGINT in both databases


class EventRow(NamedTuple):
    """One event as the hub stores it; ``event`` is the whole CloudEvent as JSON.

    A NamedTuple, not a frozen dataclass: one is made per event, and a frozen
    dataclass's ``__init__`` cost 3 µs of it against 0.5."""

    seq: int
    id: str
    type: str
    time: str | None
    event: str
    stream: str = ""
    # On a stream's first event: the stream before it and that stream's last seq.
    prev: tuple[str, int] | None = None


@dataclass(slots=True)
class IngestResult:
    """What storing one batch did; ``contiguous`` is the value to acknowledge."""

    store: str
    contiguous: int
    stream: str = ""
    inserted: int = 0
    duplicates: int = 0
    # (seq, id kept, id of the other event, stored whole in ``conflicts``) for a position
    # that came with another event id
    conflicts: list[tuple[int, str, str]] = field(default_factory=list)
    # What the batch showed about the store's identity: (code, subject, detail)
    identity: list[tuple[str, str, str]] = field(default_factory=list)
    gaps_opened: list[tuple[int, int]] = field(default_factory=list)
    gaps_closed: list[tuple[int, int]] = field(default_factory=list)


# The stream attributes an event does not have are left out of the stored JSON, not written as null.
_UNSET_STREAM = {(True, True): {"stream", "prevstream", "prevseq"}, (False, True): {"prevstream", "prevseq"},
                 (True, False): {"stream"}, (False, False): set()}


@functools.lru_cache(maxsize=4096)
def store_topics(store: str) -> StoreTopics:
    """StoreTopics of one store, cached: the hub looks them up for every message."""
    return StoreTopics(store)


_BATCH = TypeAdapter(list[CloudEvent])
# Up to this many bytes (a dozen sales) one pass is cheaper; a large batch parsed in one pass was
# slower than ``json.loads`` and then each event (measured 8-9 against 7-8 µs per event at 100 and 400).
_ONE_PASS_MAX = 8 * 1024


def _decode_fast(payload: bytes, max_events: int) -> list[CloudEvent] | None:
    """A small well-formed batch parsed and validated in one pass (pydantic's JSON parser: 5 µs against 8
    for ``json.loads`` and then the event, at one sale); None for anything else, which ``decode_events``
    then refuses with its reasons, or takes as a single event, or parses as before when it is large."""
    if payload[:1] != b"[" or len(payload) > _ONE_PASS_MAX:
        return None
    try:
        events = _BATCH.validate_json(payload)
    except ValidationError:
        return None
    return events if 0 < len(events) <= max_events else None


def parse_batch(store: str, payload: bytes, *, max_bytes: int = MAX_BATCH_BYTES,
                max_events: int = MAX_BATCH_EVENTS) -> list[EventRow]:
    """The rows of a batch from ``edge/{store}/events``, sorted by seq; BatchRejected for a bad batch."""
    if len(payload) > max_bytes:
        raise BatchRejected("size", f"payload of {len(payload)} bytes is over the {max_bytes} byte limit")
    try:
        events = _decode_fast(payload, max_events) or decode_events(payload, max_events=max_events)
    except PayloadError as err:
        reason = "json" if str(err).startswith(("not JSON", "JSON")) else "schema"
        raise BatchRejected(reason, str(err)) from err
    source = store_topics(store).source
    rows: dict[int, EventRow] = {}
    for i, ev in enumerate(events):
        if ev.source != source:
            # A store's credentials may publish only under edge/{store}/, and the
            # hub holds it to that: no event goes into another store's history.
            raise BatchRejected("source", f"event {i} has source {ev.source!r}, not {source!r}")
        if ev.seq is None:
            raise BatchRejected("seq", f"event {i} (id {ev.id}) has no seq")
        if ev.seq > MAX_SEQ or (ev.prevseq or 0) > MAX_SEQ:
            raise BatchRejected("seq", f"event {i} (id {ev.id}): seq or prevseq beyond {MAX_SEQ}")
        if "\x00" in ev.id or "\x00" in ev.type:
            raise BatchRejected("schema", f"event {i}: NUL character in id or type")
        stream = ev.stream or ""
        if i == 0:
            first_stream = stream
        elif stream != first_stream:
            raise BatchRejected("stream", f"event {i} is of stream {stream or '(legacy)'!r}, event 0 of "
                                f"{first_stream or '(legacy)'!r}: a batch holds the events of one stream")
        prev = None
        if ev.prevstream is not None:
            if ev.seq != 1 or ev.prevseq is None or ev.prevstream == stream:
                raise BatchRejected("stream", f"event {i} (id {ev.id}): prevstream and prevseq go together, "
                                    "on the first event of a stream, naming another stream")
            prev = (ev.prevstream, ev.prevseq)
        row = EventRow(ev.seq, ev.id, ev.type, ev.time.isoformat() if ev.time else None,
                       ev.model_dump_json(exclude=_UNSET_STREAM[ev.stream is None, prev is None]), stream, prev)
        seen = rows.get(ev.seq)
        if seen is not None and seen.id != ev.id:
            raise BatchRejected("seq", f"seq {ev.seq} appears twice in the batch with ids {seen.id} and {ev.id}")
        rows[ev.seq] = row
    return [rows[s] for s in sorted(rows)]


def advance(contiguous: int, present: Iterable[int]) -> int:
    """The new contiguous seq: walk ``present`` (ascending seqs above ``contiguous``) until the first hole."""
    for seq in present:
        if seq <= contiguous:
            continue
        if seq != contiguous + 1:
            break
        contiguous = seq
    return contiguous


def new_gaps(high: int, seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Holes that ``seqs`` (ascending, newly stored) open above ``high``, the highest seq stored before."""
    gaps = []
    last = high
    for seq in seqs:
        if seq <= last:
            continue
        if seq > last + 1:
            gaps.append((last + 1, seq - 1))
        last = seq
    return gaps
