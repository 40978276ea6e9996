"""Label alerts: raised once per condition, cleared once, remembered across restarts.

A condition is (subject, kind): a label showing another price than the
checkout's past the grace time (``price``), a tag not heard from for
``stale_after`` (``stale``), a tag's battery below ``low_battery_mv``
(``battery``), a label device offline or in error (``device``, the subject
is the device id). Raising inserts a ``label_alerts`` row and appends a
``retail.device.alert`` outbox event (telemetry) in the same transaction,
then publishes ``alert.raised`` on the bus (the live feed shows it);
clearing deletes the row, with ``state: "cleared"`` and ``alert.cleared``.
Every alert whose subject is a label carries the label's ``zone`` (null when
it has none), so that the wristbands can send it to that zone's associates.

A whole store going wrong at once (an access point down during a chain-wide
price change) must not bury the hub in ten thousand alerts: past ``burst``
events in one update the rest are recorded, and summed up in one event.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent.bus import EventBus
from edge_agent.store import Store, Tx
from edge_agent.store.outbox import Priority
from edge_core.bus import utcnow

log = logging.getLogger(__name__)

EVENT = "retail.device.alert"
CODES = {"price": "label_price_mismatch", "stale": "label_stale", "battery": "label_low_battery",
         "device": "label_device_down"}


@dataclass(frozen=True)
class Change:
    """Raise (``data`` says what is wrong) or clear one condition."""

    subject: str
    kind: str
    raise_: bool
    since: datetime | None = None
    data: dict[str, Any] | None = None


class Alerts:
    """The active label alerts, and the one place that raises and clears them."""

    def __init__(self, store: Store, bus: EventBus, burst: int = 50):
        self.store = store
        self.bus = bus
        self.burst = burst
        self.active: dict[tuple[str, str], datetime] = {}
        self.raised = 0
        self.cleared = 0

    async def load(self) -> None:
        """Read the alerts that are up (they stay up across restarts)."""
        rows = await self.store.read(lambda c: c.execute("SELECT subject, kind, since FROM label_alerts").fetchall())
        self.active = {(s, k): datetime.fromisoformat(t) for s, k, t in rows}

    def is_up(self, subject: str, kind: str) -> bool:
        """True while the condition's alert is raised."""
        return (subject, kind) in self.active

    async def apply(self, changes: list[Change]) -> None:
        """Raise and clear what changed, in one transaction; no-ops are dropped first."""
        todo = [c for c in changes if c.raise_ != self.is_up(c.subject, c.kind)]
        if not todo:
            return
        now = utcnow()
        published: list[tuple[str, dict[str, Any]]] = []

        def write(tx: Tx) -> None:
            published.clear()
            held: dict[tuple[str, str], int] = {}
            for c in todo:
                since = (c.since if c.raise_ else self.active.get((c.subject, c.kind))) or now
                event = self._event(c, since)
                if c.raise_:
                    tx.execute("INSERT OR IGNORE INTO label_alerts (subject, kind, since, raised_at, data) "
                               "VALUES (?, ?, ?, ?, ?)", (c.subject, c.kind, since.isoformat(),
                                                           now.isoformat(), json.dumps(event)))
                else:
                    tx.execute("DELETE FROM label_alerts WHERE subject = ? AND kind = ?", (c.subject, c.kind))
                if len(published) < self.burst:
                    tx.emit(EVENT, event, Priority.TELEMETRY)
                    published.append(("alert.raised" if c.raise_ else "alert.cleared", event))
                else:
                    key = (c.kind, int(c.raise_))
                    held[key] = held.get(key, 0) + 1
            for (kind, raised), n in held.items():
                summary = {"device": "labels", "severity": "warning" if raised else "info", "code": CODES[kind],
                           "state": "raised" if raised else "cleared", "count": n,
                           "message": f"{n} more label alert(s) of this kind {'raised' if raised else 'cleared'} "
                                      "at once; GET /v1/labels/compliance lists the labels"}
                tx.emit(EVENT, summary, Priority.TELEMETRY)
                published.append(("alert.raised" if raised else "alert.cleared", summary))

        await self.store.write(write)
        for c in todo:
            if c.raise_:
                self.active[(c.subject, c.kind)] = c.since or now
                self.raised += 1
            else:
                self.active.pop((c.subject, c.kind), None)
                self.cleared += 1
        for bus_type, event in published:
            self.bus.publish(bus_type, event)
        log.info("labels: %d alert(s) raised, %d cleared", sum(c.raise_ for c in todo),
                 sum(not c.raise_ for c in todo))

    @staticmethod
    def _event(c: Change, since: datetime) -> dict[str, Any]:
        data = dict(c.data or {})
        device = data.pop("device", c.subject)
        if c.kind != "device":  # a label's alert: its zone, null when none
            data.setdefault("zone", None)
        return {"device": device, "severity": "warning" if c.raise_ else "info", "code": CODES[c.kind],
                "state": "raised" if c.raise_ else "cleared", "subject": c.subject,
                "since": since.isoformat(), **data}
