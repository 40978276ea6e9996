"""The agent's internal event bus: in-process publish/subscribe.

Publishing never blocks and never fails: each subscriber has a bounded queue,
and a subscriber that falls behind loses its oldest events (counted in
``dropped``) instead of slowing the publisher. The bus lives on the event
loop; publish from other threads with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utcnow() -> datetime:
    """Aware UTC now; the one clock the agent reads for timestamps."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One event on the bus: a dotted type such as ``device.state`` and its data."""

    type: str
    data: dict[str, Any]
    id: int = 0
    time: datetime = field(default_factory=utcnow)


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


class Consumer:
    """A task that handles the bus events of ``prefixes``, one at a time, from ``start`` to ``stop``.

    Subclasses set ``prefixes`` and implement ``handle``; an exception from
    ``handle`` is the subclass's to catch (it would end the task).
    """

    prefixes: tuple[str, ...] = ()
    maxsize: int = 10_000

    def __init__(self, bus: EventBus):
        self.bus = bus
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe now (events from here on are seen) and start handling."""
        sub = self.bus.subscribe(*self.prefixes, maxsize=self.maxsize)
        self._task = asyncio.create_task(self._consume(sub), name=type(self).__name__)

    async def stop(self) -> None:
        """Stop handling; events still queued are dropped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _consume(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                await self.handle(event)
        finally:
            sub.close()

    async def handle(self, event: BusEvent) -> None:
        """Handle one event."""
        raise NotImplementedError
