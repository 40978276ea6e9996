"""From an ended try-on session on the bus to a ``retail.tryon.session`` event in the outbox.

The mirror driver publishes ``mirror.session.ended`` (drivers/mirror/driver.py);
this service stores it for the hub. Priority: telemetry. A try-on session
records interest (which SKUs were tried, for how long, what went into the
basket), not money or stock: the sale itself is its own business event when
the basket is paid. Past the outbox's disk budget, the oldest telemetry is
what may be dropped, never a sale. The data holds SKUs, seconds and counts:
never an image, a landmark or anything else of a face.
"""

from __future__ import annotations

import logging

from drivers.mirror.driver import SESSION_ENDED
from edge_agent.bus import BusEvent, Consumer, EventBus
from edge_agent.errors import StoreError
from edge_agent.store import Store
from edge_agent.store.outbox import Priority

log = logging.getLogger(__name__)
TRYON_EVENT = "retail.tryon.session"


class TryOnRecorder(Consumer):
    """Writes each ended try-on session to the outbox; one task."""

    prefixes = (SESSION_ENDED,)

    def __init__(self, store: Store, bus: EventBus):
        super().__init__(bus)
        self.store = store
        self.recorded = 0

    async def handle(self, event: BusEvent) -> None:
        """Store one session; a store failure loses this one session (telemetry) and is logged."""
        try:
            await self.store.emit(TRYON_EVENT, event.data, Priority.TELEMETRY)
            self.recorded += 1
        except StoreError as err:
            log.warning("try-on session %s not recorded: %s", event.data.get("session_id"), err)
