"""Kiosk sessions: who is shopping at which kiosk right now, and what is in their basket.

A kiosk (an api client with role ``kiosk``) has at most one session, with an
``id`` of its own: a session that ends is gone, and the next activity at the
kiosk starts a new one with a new id. A member QR scanned on the kiosk's
scanner (devices.yaml ``station``) attaches that member to it; the kiosk
hears ``member.attached`` on its feed. A different member's QR is another
customer: the session of the one before ends first (``new_customer``).

The session's basket holds lines of (sku, qty, source), merged by sku and
source: the source is who put the line there (the kiosk itself, an
associate's client, or a try-on mirror's device id, whose ``kiosk:`` is this
kiosk). The basket's flows (a line added, the basket cleared, "new customer")
are edge_agent/usecases/basket.py: each change is a ``session.basket``
event, which the kiosk hears on its feed. The basket holds no prices: the
kiosk's checkout (``POST /v1/sales``) prices it; ``PricedSession`` is the
session with the catalog's current prices, as the kiosk's screen shows it.

A session holds one customer, so it ends, and ``session.ended`` (``station,
session_id, reason, left, items``) goes to the kiosk and to staff:

- ``sale``: the kiosk's sale completed it. The checkout pins the session it
  started in (``begin_checkout``) and, once the sale is on disk, ends that
  session and no later one (``end_checkout``). Everything in the basket goes
  with it: what the sale left out is ``left`` in the event (the goods to put
  back), and so is a line the counter's mirror added while the sale was
  being written, which belongs to the customer who was paying, not the next.
- ``new_customer``: the kiosk's "new customer" button (``end``).
- ``idle``: ``sessions.idle_timeout`` seconds without activity at the kiosk:
  a member attached, a basket change, a scan at its station, a checkout. A
  session with a checkout in flight never idles out: the sale ends it.

Once a session has ended, its member is no longer the kiosk's: no points of
theirs are redeemed there and the kiosk does not see their card.

This module owns the sessions' state and the events only it can time:
``member.attached`` and ``session.ended`` (``Sessions.end``, the one place
that ends a session, whether a timer, a card, a sale or the button ends it).
The values it hands out are frozen (``Session``, ``Ended``,
``PricedSession``), each with ``as_dict()`` for the wire. Its refusals are
the domain's errors (edge_agent/errors.py), with no HTTP status.

Sessions live in memory only: after a restart the customer scans their card
again, and a basket that was lost is put together again at the kiosk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from edge_agent import catalog
from edge_agent.bus import EventBus
from edge_agent.config import SessionsConfig
from edge_agent.errors import Conflict, Invalid, NotFound
from edge_core.bus import BusEvent, Consumer, utcnow

MEMBER_ATTACHED = "member.attached"
BASKET_CHANGED = "session.basket"
SESSION_ENDED = "session.ended"
# Lines in one basket: a customer's shopping, not a stock room's.
MAX_LINES = 50
IDLE_TIMEOUT = SessionsConfig().idle_timeout


class EndReason(str, Enum):
    """Why a session ended, as ``session.ended`` says it."""

    SALE = "sale"
    NEW_CUSTOMER = "new_customer"
    IDLE = "idle"


class BasketError(Conflict):
    """A basket change that cannot be made: beyond the store's stock or the basket's size."""


class UnknownProduct(Invalid, BasketError):
    """No product by that code in the catalog."""


class NoKiosk(NotFound):
    """The station named is no kiosk of this store: only a kiosk has a session."""


@dataclass(frozen=True, slots=True)
class BasketLine:
    """Units of one product that one source put in the basket."""

    sku: str
    name: str
    qty: int
    source: str
    added_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "name": self.name, "qty": self.qty, "source": self.source,
                "added_at": self.added_at.isoformat()}


@dataclass(frozen=True, slots=True)
class Session:
    """One kiosk's session: its id (None before it starts), the member attached to it, if any, and its basket."""

    station: str
    id: str | None = None
    member_id: str | None = None
    attached_at: datetime | None = None
    basket: tuple[BasketLine, ...] = ()
    active_at: float = 0.0  # the Sessions clock at the last activity; not shown

    def qty(self, sku: str) -> int:
        """Units of ``sku`` in the basket, from every source."""
        return sum(line.qty for line in self.basket if line.sku == sku)

    def lines_from(self, source: str) -> tuple[BasketLine, ...]:
        """The basket lines that ``source`` put there."""
        return tuple(line for line in self.basket if line.source == source)

    def basket_dict(self) -> dict[str, Any]:
        """The basket as the API and the feed show it: ``lines`` and ``items``."""
        return lines_dict(self.basket)

    def as_dict(self) -> dict[str, Any]:
        """The session as ``GET /v1/sessions/{station}`` shows it, before prices."""
        return {"station": self.station, "session_id": self.id, "member_id": self.member_id,
                "attached_at": self.attached_at.isoformat() if self.attached_at else None,
                "basket": self.basket_dict()}

    def basket_event(self, change: Mapping[str, Any]) -> dict[str, Any]:
        """The data of ``session.basket`` after ``change`` (``change`` and what it names): the whole basket."""
        return {"station": self.station, "session_id": self.id, **change, **self.basket_dict()}


@dataclass(frozen=True, slots=True)
class Ended:
    """A session that ended: what ``session.ended`` says, and ``DELETE /v1/sessions/{station}`` answers."""

    station: str
    session_id: str | None
    reason: EndReason
    left: tuple[BasketLine, ...]  # what the customer leaves behind: the goods to put back

    def as_dict(self) -> dict[str, Any]:
        """``station, session_id, reason``, ``left`` with ``sku, name, qty, source``, and ``items``."""
        return {"station": self.station, "session_id": self.session_id, "reason": self.reason.value,
                "left": [{"sku": ln.sku, "name": ln.name, "qty": ln.qty, "source": ln.source} for ln in self.left],
                "items": sum(ln.qty for ln in self.left)}


@dataclass(frozen=True, slots=True)
class LinePrice:
    """A basket line's product as the catalog has it now: what the checkout would charge, and the store's count."""

    unit_price: str
    currency: str
    stock_store: int


@dataclass(frozen=True, slots=True)
class PricedSession:
    """A session with each basket line's current price (None for a product gone from the catalog)."""

    session: Session
    prices: tuple[LinePrice | None, ...] = ()  # one per basket line, in its order

    def as_dict(self) -> dict[str, Any]:
        """The session, each line with ``unit_price``, ``currency`` and ``stock_store`` (null when unknown)."""
        out = self.session.as_dict()
        for line, price in zip(out["basket"]["lines"], self.prices, strict=True):
            line["unit_price"] = price.unit_price if price else None
            line["currency"] = price.currency if price else None
            line["stock_store"] = price.stock_store if price else None
        return out


def priced(session: Session, products: Mapping[str, catalog.Product], now: datetime) -> PricedSession:
    """``session`` with its lines priced from ``products`` (by SKU) as the checkout would price them at ``now``."""
    prices = []
    for line in session.basket:
        product = products.get(line.sku)
        prices.append(None if product is None else
                      LinePrice(catalog.money(product.unit_price(now)), product.currency, product.stock_store))
    return PricedSession(session, tuple(prices))


def lines_dict(lines: Iterable[BasketLine]) -> dict[str, Any]:
    """Basket lines as the API and the feed show them: ``lines`` and the ``items`` they add up to."""
    lines = tuple(lines)
    return {"lines": [line.as_dict() for line in lines], "items": sum(ln.qty for ln in lines)}


def unsold(basket: Iterable[BasketLine], sold: Mapping[str, int]) -> list[BasketLine]:
    """What of ``basket`` a sale of ``sold`` (units per SKU) left out: per SKU, lines past the units sold."""
    left = dict(sold)
    out: list[BasketLine] = []
    for line in basket:
        take = min(line.qty, left.get(line.sku, 0))
        if take:
            left[line.sku] -= take
        if line.qty > take:
            out.append(dataclasses.replace(line, qty=line.qty - take) if take else line)
    return out


class Sessions(Consumer):
    """Every kiosk's current session, by station (the kiosk's client name), and their idle timers.

    Lives on the event loop. ``start`` listens for scans (activity at a
    station); the idle timers need no task: each session with activity has
    one ``loop.call_later`` that checks, when due, whether it is still idle.
    ``clock`` (monotonic seconds) is injectable for tests, which then call
    ``expire_idle`` themselves.
    """

    prefixes = ("scan",)

    def __init__(self, bus: EventBus, idle_timeout: float = IDLE_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(bus)
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._by_station: dict[str, Session] = {}
        self._checkouts: Counter[str] = Counter()  # session id -> sales in flight
        self._timers: dict[str, asyncio.TimerHandle] = {}

    async def stop(self) -> None:
        """Stop listening and drop the idle timers (sessions die with the agent)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await super().stop()

    async def handle(self, event: BusEvent) -> None:
        """A scan at a station with a session is activity there."""
        station = event.data.get("station")
        if event.type == "scan" and isinstance(station, str) and station in self._by_station:
            self._put(self._by_station[station])

    def with_lines(self) -> list[str]:
        """The stations whose basket has lines now: a customer mid-purchase (no update switches then)."""
        return sorted(station for station, session in self._by_station.items() if session.basket)

    def get(self, station: str) -> Session:
        """The station's session (an empty one, without id, if none was started)."""
        return self._by_station.get(station) or Session(station)

    def attach_member(self, station: str, member_id: str, via: str) -> Session:
        """Attach a member to the station's session and tell the feed; the basket stays (filled at a mirror first).

        Another member's card ends the session of the one before: nobody
        inherits a basket, nor the points of the member it was for.
        """
        current = self._by_station.get(station)
        if current is not None and current.member_id not in (None, member_id):
            self.end(station, EndReason.NEW_CUSTOMER)
        session = self._put(dataclasses.replace(self._current(station), member_id=member_id, attached_at=utcnow()))
        self.bus.publish(MEMBER_ATTACHED, {"station": station, "member_id": member_id, "via": via})
        return session

    def add(self, station: str, product: catalog.Product, qty: int, source: str) -> Session:
        """Put ``qty`` of ``product`` in the station's basket; BasketError beyond store stock or ``MAX_LINES``.

        The basket's flow (edge_agent/usecases/basket.py) tells the bus.
        """
        session = self._current(station)
        wanted = session.qty(product.sku) + qty
        if wanted > product.stock_store:
            raise BasketError(f"only {max(product.stock_store, 0)} of {product.sku} in the store; the basket at "
                              f"{station} would hold {wanted}: take fewer, or order it online")
        lines = list(session.basket)
        now = utcnow()
        for i, line in enumerate(lines):
            if (line.sku, line.source) == (product.sku, source):
                lines[i] = dataclasses.replace(line, qty=line.qty + qty, name=product.name, added_at=now)
                break
        else:
            if len(lines) >= MAX_LINES:
                raise BasketError(f"the basket at {station} holds at most {MAX_LINES} lines; check it out first")
            lines.append(BasketLine(product.sku, product.name, qty, source, now))
        return self._put(dataclasses.replace(session, basket=tuple(lines)))

    def clear_basket(self, station: str) -> Session:
        """Empty the station's basket (the customer starts over; the member stays); activity if it has a session.

        The basket's flow (edge_agent/usecases/basket.py) tells the bus.
        """
        session = self._by_station.get(station)
        if session is None:
            return self.get(station)
        return self._put(dataclasses.replace(session, basket=()))

    def begin_checkout(self, station: str) -> Session:
        """A sale at the kiosk starts: the session it is for (started now if there was none), pinned until
        ``end_checkout``, so that it does not idle out under the sale."""
        session = self._put(self._current(station))
        assert session.id is not None
        self._checkouts[session.id] += 1
        return session

    def end_checkout(self, station: str, session_id: str, sold: Mapping[str, int] | None) -> None:
        """The sale begun in ``session_id`` is over: with ``sold`` (units per SKU; the sale is on disk) it
        ends that session, if it is still the station's; without (refused, or a replay) the session goes on.

        A session that holds nobody (no member, an empty basket) ends without
        ``session.ended``: a kiosk selling to anonymous customers all day
        fills no one's feed with ends of nothing.
        """
        self._checkouts[session_id] -= 1
        if self._checkouts[session_id] <= 0:
            del self._checkouts[session_id]
        session = self._by_station.get(station)
        if session is None or session.id != session_id:
            return  # ended meanwhile (new customer, or another sale of it): the next session is not this sale's
        if session.member_id is None and not session.basket:
            if session_id not in self._checkouts:
                self._drop(station)  # nobody's: no member, no basket, so nothing for a screen to reset
        elif sold is not None:
            self.end(station, EndReason.SALE, session_id=session_id, sold=sold)
        else:
            self._put(session)  # refused or a replay: the customer is still there

    def end(self, station: str, reason: EndReason, *, session_id: str | None = None,
            sold: Mapping[str, int] | None = None) -> Ended | None:
        """End the station's session (only if it is ``session_id``, when given) and tell the kiosk and staff
        (``session.ended``); what ended, or None when there was no such session to end."""
        session = self._by_station.get(station)
        if session is None or (session_id is not None and session.id != session_id):
            return None
        self._drop(station)
        ended = Ended(station, session.id, reason, tuple(unsold(session.basket, sold or {})))
        self.bus.publish(SESSION_ENDED, ended.as_dict())
        return ended

    def expire_idle(self) -> list[str]:
        """End every session idle for ``idle_timeout`` seconds without a checkout in flight; their stations."""
        now = self.clock()
        idle = [station for station, s in self._by_station.items()
                if s.id not in self._checkouts and now - s.active_at >= self.idle_timeout]
        for station in idle:
            self.end(station, EndReason.IDLE)
        return idle

    def _current(self, station: str) -> Session:
        """The station's session, or a new one with a new id (not stored yet)."""
        return self._by_station.get(station) or Session(station, id=uuid.uuid4().hex)

    def _put(self, session: Session) -> Session:
        """Store ``session`` with activity now and make sure its idle timer runs."""
        session = dataclasses.replace(session, active_at=self.clock())
        self._by_station[session.station] = session
        self._arm(session.station, self.idle_timeout)
        return session

    def _drop(self, station: str) -> None:
        self._by_station.pop(station, None)
        handle = self._timers.pop(station, None)
        if handle is not None:
            handle.cancel()

    def _arm(self, station: str, delay: float) -> None:
        """One timer per station: it fires when the session may be due and checks again then."""
        if station in self._timers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test with its own clock): expire_idle is called directly
        self._timers[station] = loop.call_later(delay, self._due, station)

    def _due(self, station: str) -> None:
        self._timers.pop(station, None)
        session = self._by_station.get(station)
        if session is None:
            return
        if session.id in self._checkouts:
            self._arm(station, self.idle_timeout)  # the sale ends it, or its end is activity
            return
        left = session.active_at + self.idle_timeout - self.clock()
        if left > 0:
            self._arm(station, left)
        else:
            self.end(station, EndReason.IDLE)

