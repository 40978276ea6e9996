"""What the hub link needs of an outbox and of the agent, and nothing more.

The link (sync/link.py) sends the events an outbox holds and forgets them
once the hub acknowledges them; it knows the outbox only through
``OutboxPort``, its connection only through ``HubSettings`` and the
devices only through a snapshot callable. The agent builds the adapter over
its store (edge_agent/store/link_outbox.py) and hands all three in, so the
wire imports nothing of the agent.

Streams: an event goes out as ``seq`` of its stream (one per run of the
store database); ``StreamsView`` is the part of the store's stream table
the link reads to number events and to place acks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sync.events import OutboxEvent

# The stream of events numbered before streams existed; on the wire such an event and its ack carry
# no ``stream``. The same value as the store's LEGACY (edge_agent/store/streams.py).
LEGACY_STREAM = ""


class StreamView(Protocol):
    """One stream: its id and the local seq just before its first event."""

    @property
    def id(self) -> str: ...

    @property
    def base(self) -> int: ...


class StreamsView(Protocol):
    """The streams of one database; immutable (a new one replaces it when a stream opens)."""

    def get(self, id: str) -> StreamView | None:
        """The stream with this id, or None."""
        ...

    def locate(self, seq: int) -> tuple[StreamView, int]:
        """``(stream, seq in the stream)`` of a local seq."""
        ...

    def end(self, stream: Any, last_seq: int) -> int:
        """The local seq of the stream's last event (``last_seq`` is the database's)."""
        ...

    def previous(self, stream: Any) -> tuple[StreamView, int] | None:
        """The stream before ``stream`` and the seq (in it) of its last event, or None for the first."""
        ...


class OutboxPort(Protocol):
    """The outbox as the link sees it: events to send, acks to apply, its size, one alert channel."""

    @property
    def streams(self) -> StreamsView:
        """Every stream of the database (read from paho's thread too: replaced whole, never changed)."""
        ...

    @property
    def stream_id(self) -> str:
        """This run's stream."""
        ...

    @property
    def last_seq(self) -> int:
        """The highest local seq numbered so far."""
        ...

    @property
    def run_base(self) -> int:
        """``last_seq`` when this run began: closed streams end at or before it."""
        ...

    @property
    def bytes(self) -> int:
        """What the unacknowledged events take, approximately (the budget's measure)."""
        ...

    async def acked_seq(self) -> int:
        """The highest local seq the hub has acknowledged."""
        ...

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each commit, from whichever thread commits."""
        ...

    async def pending(self, after_seq: int, limit: int) -> list[OutboxEvent]:
        """Unacknowledged events with ``seq > after_seq``, in seq order, at most ``limit``."""
        ...

    async def acknowledge(self, seq: int) -> None:
        """Forget the events up to local ``seq``: the hub holds them."""
        ...

    async def drop_telemetry(self, bytes_to_free: int) -> int:
        """Turn the oldest telemetry into tombstones until ``bytes_to_free`` are freed; how many."""
        ...

    async def depth(self) -> tuple[int, str | None]:
        """How many events wait, and the ISO-8601 time of the oldest (None when none waits)."""
        ...

    async def emit_alert(self, data: dict[str, Any]) -> None:
        """Durably add a ``retail.device.alert`` event (business priority) with ``data``."""
        ...


@dataclass(frozen=True)
class HubSettings:
    """Where and as whom the link connects, and the outbox's budget: the agent's ``hub:`` settings."""

    store_id: str
    url: str
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 30
    outbox_budget_bytes: int = 1024 * 1024 * 1024


# Each device's state as a JSON-ready dict, for the health snapshot.
DeviceSnapshot = Callable[[], list[dict[str, Any]]]
