"""The store's outbox as the hub link sees it (sync/outbox_port.py), and the link's settings from the config.

The link knows an outbox only through ``OutboxPort``; ``StoreOutbox`` is
that port over the agent's ``Store``: it reads and acknowledges outbox rows
(edge_agent/store/outbox.py) and keeps ``Store.outbox_bytes`` true as acks
and the budget free space. ``hub_settings`` turns the config's ``hub:``
into the link's own ``HubSettings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.store import outbox
from sync.events import OutboxEvent
from sync.outbox_port import HubSettings, StreamsView

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.store.db import Store


class StoreOutbox:
    """``sync.outbox_port.OutboxPort`` over a started ``Store``."""

    def __init__(self, store: "Store"):
        self.store = store

    @property
    def streams(self) -> StreamsView:
        """Every stream of the database."""
        return self.store.streams

    @property
    def stream_id(self) -> str:
        """This run's stream."""
        return self.store.stream_id

    @property
    def last_seq(self) -> int:
        """The highest seq numbered so far."""
        return self.store.last_seq

    @property
    def run_base(self) -> int:
        """``last_seq`` when this run began."""
        return self.store.run_base

    @property
    def bytes(self) -> int:
        """What the unacknowledged events take, approximately."""
        return self.store.outbox_bytes

    async def acked_seq(self) -> int:
        """The highest seq the hub has acknowledged."""
        return await self.store.read(outbox.acked_seq)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` from the writer thread after each commit."""
        self.store.add_commit_listener(lambda _seq: callback())

    async def pending(self, after_seq: int, limit: int) -> list[OutboxEvent]:
        """Unacknowledged events after ``after_seq``, in seq order, with their data."""
        return await self.store.read(lambda c: outbox.pending(c, after_seq, limit))

    async def acknowledge(self, seq: int) -> None:
        """Delete the events up to ``seq`` and take their bytes off the count."""
        _, freed = await self.store.write(lambda tx: outbox.acknowledge(tx.conn, seq))
        self.store.outbox_bytes = max(0, self.store.outbox_bytes - freed)

    async def drop_telemetry(self, bytes_to_free: int) -> int:
        """Tombstone the oldest telemetry until ``bytes_to_free`` are freed; returns how many."""
        dropped, freed = await self.store.write(lambda tx: outbox.drop_telemetry(tx.conn, bytes_to_free))
        self.store.outbox_bytes = max(0, self.store.outbox_bytes - freed)
        return dropped

    async def depth(self) -> tuple[int, str | None]:
        """How many events wait, and the time of the oldest."""
        return await self.store.read(lambda c: (outbox.depth(c), outbox.oldest_time(c)))

    async def emit_alert(self, data: dict[str, Any]) -> None:
        """A ``retail.device.alert`` event, durably in the outbox."""
        await self.store.emit("retail.device.alert", data)


def hub_settings(config: "AgentConfig") -> HubSettings:
    """The link's settings from the config's ``store.id`` and ``hub:``."""
    hub = config.hub
    return HubSettings(
        store_id=config.store.id, url=hub.url, username=hub.username, password_file=hub.password_file,
        ca_file=hub.ca_file, cert_file=hub.cert_file, key_file=hub.key_file, keepalive=hub.keepalive,
        outbox_budget_bytes=int(hub.outbox_budget_mb * 1024 * 1024),
    )
