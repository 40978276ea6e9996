"""From an ended try-on session on the bus to a ``retail.tryon.session`` event for the hub.

The mirror driver publishes ``mirror.session.ended`` (drivers/mirror/driver.py);
this consumer hands it to ``emit_telemetry``, which the agent builds over its
outbox (edge_agent/agent.py): the recorder knows the bus and that callable,
never the store. Telemetry, because a try-on session records interest (which
SKUs were tried, for how long, what went into the basket), not money or
stock: the sale itself is its own business event when the basket is paid.
Past the outbox's disk budget, the oldest telemetry is what may be dropped,
never a sale. The data holds SKUs, seconds and counts: never an image, a
landmark or anything else of a face.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.mirror.driver import SESSION_ENDED
from edge_core.bus import Bus, BusEvent, Consumer
from edge_core.errors import EdgeError

log = logging.getLogger(__name__)
TRYON_EVENT = "retail.tryon.session"

EmitTelemetry = Callable[[str, dict[str, Any]], Awaitable[object]]
"""``emit_telemetry(type, data)``: store one event for the hub at telemetry priority, durably
before it returns; raise an ``EdgeError`` (the store's ``StoreError``) when it cannot."""


class TryOnRecorder(Consumer):
    """Hands each ended try-on session to ``emit_telemetry``; one task."""

    prefixes = (SESSION_ENDED,)

    def __init__(self, emit_telemetry: EmitTelemetry, bus: Bus):
        super().__init__(bus)
        self.emit_telemetry = emit_telemetry
        self.recorded = 0

    async def handle(self, event: BusEvent) -> None:
        """Record one session; a failure to store it loses this one session (telemetry) and is logged."""
        try:
            await self.emit_telemetry(TRYON_EVENT, event.data)
            self.recorded += 1
        except EdgeError as err:
            log.warning("try-on session %s not recorded: %s", event.data.get("session_id"), err)
