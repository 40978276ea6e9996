"""Kiosk sessions: who is shopping at which kiosk right now.

A kiosk (an api client with role ``kiosk``) has at most one session. A
member QR scanned on the kiosk's scanner (devices.yaml ``station``) attaches
that member to it; the kiosk hears ``member.attached`` on its feed. Sessions
live in memory only: after a restart the customer scans their card again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from edge_agent.bus import EventBus, utcnow

MEMBER_ATTACHED = "member.attached"


@dataclass(frozen=True, slots=True)
class Session:
    """One kiosk's session: the member attached to it, if any."""

    station: str
    member_id: str | None = None
    attached_at: datetime | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["attached_at"] = self.attached_at.isoformat() if self.attached_at else None
        return d


class Sessions:
    """Every kiosk's current session, by station (the kiosk's client name)."""

    def __init__(self, bus: EventBus):
        self.bus = bus
        self._by_station: dict[str, Session] = {}

    def get(self, station: str) -> Session:
        """The station's session (an empty one if none was started)."""
        return self._by_station.get(station) or Session(station)

    def attach_member(self, station: str, member_id: str, via: str) -> Session:
        """Attach a member to the station's session and tell the feed."""
        session = Session(station, member_id, utcnow())
        self._by_station[station] = session
        self.bus.publish(MEMBER_ATTACHED, {"station": station, "member_id": member_id, "via": via})
        return session

    def end(self, station: str) -> None:
        """Close the station's session (checkout done or abandoned)."""
        self._by_station.pop(station, None)
