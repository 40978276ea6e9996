"""The agent's internal event bus: in-process publish/subscribe.

Publishing never blocks and never fails: each subscriber has a bounded queue,
and a subscriber that falls behind loses its oldest events (counted in
``dropped``) instead of slowing the publisher. The bus lives on the event
loop; publish from other threads with ``loop.call_soon_threadsafe``.

This is the one implementation of ``edge_core.bus.Bus``; drivers and sync
know the bus only through that interface.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from edge_core.bus import BusEvent


class Subscription:
    """A subscriber's bounded queue; iterate it or ``await get()``."""

    def __init__(self, bus: "EventBus", prefixes: tuple[str, ...], maxsize: int):
        self._bus = bus
        self.prefixes = prefixes
        self.queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    def matches(self, event_type: str) -> bool:
        return not self.prefixes or event_type.startswith(self.prefixes)

    def offer(self, event: BusEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest, keep the newest
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> BusEvent:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> BusEvent:
        return await self.queue.get()


class EventBus:
    """Fan-out of ``BusEvent`` to subscribers filtered by type prefix."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._ids = itertools.count(1)

    def subscribe(self, *prefixes: str, maxsize: int = 1000) -> Subscription:
        """Subscribe to events whose type starts with one of ``prefixes`` (all if none)."""
        sub = Subscription(self, prefixes, maxsize)
        self._subs.add(sub)
        return sub

    def publish(self, event_type: str, data: dict[str, Any]) -> BusEvent:
        """Deliver an event to every matching subscriber; never blocks."""
        event = BusEvent(event_type, data, next(self._ids))
        for sub in list(self._subs):
            if sub.matches(event_type):
                sub.offer(event)
        return event
