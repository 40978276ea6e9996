"""Try-on sessions and the mirror's basket, from what the agent hears: face or no face, looks, taps. No I/O.

A session starts when a face appears in front of the mirror or a product
is picked, and ends when no face has been seen for ``gap`` seconds (the
customer walked away), when the screen says "done", or when the mirror
stops. It counts, per SKU, the seconds it was on a customer who was there
(a garment only while the mirror was in body view and so drew it),
what was put in a basket (the mirror's own, or its kiosk's session basket)
and which pickup orders were placed online. An ended session in which
nothing was tried, added or ordered (someone walked past) is not reported.
Nothing about the face is kept: only that there was one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ar_mirror.control import BODY_KINDS
from edge_core.bus import utcnow

Channel = Literal["store", "online"]


@dataclass(frozen=True)
class BasketLine:
    """A product the customer wants: taken in the store or ordered online; ``kiosk`` when it went to
    that kiosk's session basket instead of the mirror's own."""

    sku: str
    qty: int
    channel: Channel
    session_id: str | None
    kiosk: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "qty": self.qty, "channel": self.channel, "session_id": self.session_id}

    def reported(self) -> dict[str, Any]:
        """The line in ``retail.tryon.session``: no session id (the event has it), the kiosk when there is one."""
        out: dict[str, Any] = {"sku": self.sku, "qty": self.qty, "channel": self.channel}
        if self.kiosk is not None:
            out["kiosk"] = self.kiosk
        return out


@dataclass(frozen=True)
class Ordered:
    """A pickup order placed online from the mirror: its id and what it holds (SKUs and counts, no money)."""

    order_id: str
    lines: tuple[tuple[str, int], ...]

    def reported(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "lines": [{"sku": sku, "qty": qty} for sku, qty in self.lines]}


@dataclass
class _Session:
    id: str
    started_at: datetime
    started: float
    tried: dict[str, list[Any]] = field(default_factory=dict)  # sku -> [kind, seconds]
    added: list[BasketLine] = field(default_factory=list)
    orders: list[Ordered] = field(default_factory=list)
    face_seconds: float = 0.0
    compared: bool = False


class SessionTracker:
    """One mirror's current try-on session; ``clock`` is monotonic seconds (a test passes its own)."""

    def __init__(self, device: str, station: str, gap: float, clock: Callable[[], float] = time.monotonic):
        self.device = device
        self.station = station
        self.gap = gap
        self.clock = clock
        self.session: _Session | None = None
        self._face = False
        self._body = False  # the mirror is in body view: garments are drawn
        self._face_seen = clock()  # when a face was last there
        self._active: dict[str, str] = {}  # sku -> kind, on the face now
        self._last = clock()

    def _advance(self) -> None:
        """Add the time since the last call to the products on the face, while a face is there."""
        now = self.clock()
        dt, self._last = now - self._last, now
        if self.session is None or not self._face:
            return
        self.session.face_seconds += dt
        for sku, kind in self._active.items():
            if kind in BODY_KINDS and not self._body:
                continue  # picked, but not drawn: the customer stands too close for clothes
            self.session.tried.setdefault(sku, [kind, 0.0])[1] += dt

    def _ensure(self) -> _Session:
        if self.session is None:
            self.session = _Session(str(uuid.uuid4()), utcnow(), self.clock())
            # A session begun by a tap before the camera saw anyone gets its whole gap:
            # the mirror idle for minutes before must not end it at the next check.
            self._face_seen = self.clock()
        return self.session

    def face(self, present: bool, body_view: bool | None = None) -> dict[str, Any] | None:
        """Whether someone is there now (and, if known, whether the mirror is in body view); the data of a
        session that ended by it, if one did."""
        self._advance()
        if body_view is not None:
            self._body = body_view and present
        if present or self._face:  # there until now: the gap starts now
            self._face_seen = self.clock()
        if present and not self._face:
            self._ensure()
        self._face = present
        if not present and self.session is not None and self.clock() - self._face_seen >= self.gap:
            return self.end("walked_away")
        return None

    def tick(self) -> dict[str, Any] | None:
        """Check the gap without news of the face (between two stats, or while the camera restarts)."""
        return self.face(self._face)

    def look(self, products: dict[str, str], compare: bool) -> None:
        """The products now on the face (sku -> kind), and whether before/after is shown."""
        self._advance()
        self._active = dict(products)
        if products or compare:
            session = self._ensure()
            session.compared = session.compared or compare
            for sku, kind in products.items():
                session.tried.setdefault(sku, [kind, 0.0])

    def added(self, line: BasketLine) -> None:
        """A line put in the basket during this session."""
        self._advance()
        self._ensure().added.append(line)

    def ordered(self, order: Ordered) -> None:
        """A pickup order placed online during this session."""
        self._advance()
        self._ensure().orders.append(order)

    @property
    def session_id(self) -> str | None:
        return self.session.id if self.session else None

    def end(self, reason: str) -> dict[str, Any] | None:
        """End the session now; its ``retail.tryon.session`` data, or None if there is nothing to report."""
        self._advance()
        session, self.session = self.session, None
        self._active = {}
        if session is None or (not session.tried and not session.added and not session.orders):
            return None
        return {
            "session_id": session.id,
            "device": self.device,
            "station": self.station,
            "started_at": session.started_at.isoformat(),
            "ended_at": utcnow().isoformat(),
            "seconds": round(self.clock() - session.started, 1),
            "face_seconds": round(session.face_seconds, 1),
            "ended_by": reason,
            "compared": session.compared,
            "tried": [{"sku": sku, "kind": kind, "seconds": round(seconds, 1)}
                      for sku, (kind, seconds) in session.tried.items()],
            "basket": [line.reported() for line in session.added],
            "orders": [order.reported() for order in session.orders],
        }

    def summary(self) -> dict[str, Any] | None:
        """The current session as the screen shows it."""
        self._advance()
        s = self.session
        if s is None:
            return None
        return {"id": s.id, "started_at": s.started_at.isoformat(),
                "tried": {sku: round(seconds, 1) for sku, (_, seconds) in s.tried.items()}}


class Basket:
    """The mirror's basket: lines merged by SKU and channel, until cleared (checked out or started over)."""

    def __init__(self, max_lines: int = 50):
        self.max_lines = max_lines
        self.lines: list[BasketLine] = []

    def add(self, line: BasketLine) -> None:
        """Add a line, or more of a line already there; ValueError past ``max_lines`` lines."""
        for i, old in enumerate(self.lines):
            if (old.sku, old.channel) == (line.sku, line.channel):
                self.lines[i] = BasketLine(old.sku, old.qty + line.qty, old.channel, line.session_id)
                return
        if len(self.lines) >= self.max_lines:
            raise ValueError(f"the basket holds at most {self.max_lines} lines")
        self.lines.append(line)

    def qty(self, sku: str, channel: Channel) -> int:
        """How many of ``sku`` the basket holds for ``channel``."""
        return sum(line.qty for line in self.lines if (line.sku, line.channel) == (sku, channel))

    def clear(self) -> None:
        """Empty the basket."""
        self.lines = []

    def as_dict(self) -> dict[str, Any]:
        return {"lines": [line.as_dict() for line in self.lines]}
