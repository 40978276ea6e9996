"""The event the wire carries: ``OutboxEvent``, one event as the store numbered it, and its ``Priority``.

The agent's outbox (edge_agent/store/outbox.py) stores and reads these;
``sync/topics.py`` encodes them as CloudEvents and the link sends them. The
type lives here, with the wire, so that neither the link nor the reference
hub needs the agent's store to name it.
"""

from __future__ import annotations

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
