"""The bus interface: what a driver publishes on and what a consumer reads from.

``BusEvent`` is one event; ``Bus`` and ``BusSubscription`` are the shape of
the agent's in-process bus (edge_agent/bus.py holds the one implementation,
with its bounded queues and drop-oldest rule); ``Consumer`` is the base of a
task that handles the events of some types one at a time. ``utcnow`` is the
one clock the agent reads for timestamps. A driver gets its bus in
``DriverContext.bus`` and knows it only through ``Bus``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from edge_core.tasks import cancel_and_wait


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


class BusSubscription(Protocol):
    """One subscriber's events, in order, from ``subscribe`` until ``close``."""

    def __aiter__(self) -> AsyncIterator[BusEvent]: ...

    async def get(self) -> BusEvent:
        """The next event; waits for one."""
        ...

    def close(self) -> None:
        """Stop receiving; events still queued are dropped."""
        ...


class Bus(Protocol):
    """In-process publish/subscribe by dotted event type."""

    def subscribe(self, *prefixes: str, maxsize: int = 1000) -> BusSubscription:
        """Subscribe to events whose type starts with one of ``prefixes`` (all if none)."""
        ...

    def publish(self, event_type: str, data: dict[str, Any]) -> BusEvent:
        """Deliver an event to every matching subscriber; never blocks, never fails."""
        ...


class Consumer:
    """A task that handles the bus events of ``prefixes``, one at a time, from ``start`` to ``stop``.

    Subclasses set ``prefixes`` and implement ``handle``; an exception from
    ``handle`` is the subclass's to catch (it would end the task).
    """

    prefixes: tuple[str, ...] = ()
    maxsize: int = 10_000

    def __init__(self, bus: Bus):
        self.bus = bus
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe now (events from here on are seen) and start handling."""
        sub = self.bus.subscribe(*self.prefixes, maxsize=self.maxsize)
        self._task = asyncio.create_task(self._consume(sub), name=type(self).__name__)

    async def stop(self) -> None:
        """Stop handling; events still queued are dropped."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _consume(self, sub: BusSubscription) -> None:
        try:
            async for event in sub:
                await self.handle(event)
        finally:
            sub.close()

    async def handle(self, event: BusEvent) -> None:
        """Handle one event."""
        raise NotImplementedError
