"""Kiosk sessions: who is shopping at which kiosk right now, and what is in their basket.

A kiosk (an api client with role ``kiosk``) has at most one session. A
member QR scanned on the kiosk's scanner (devices.yaml ``station``) attaches
that member to it; the kiosk hears ``member.attached`` on its feed.

The session's basket holds lines of (sku, qty, source), merged by sku and
source: the source is who put the line there (the kiosk itself, an
associate's client, or a try-on mirror's device id, whose ``kiosk:`` is this
kiosk). Each change is a ``session.basket`` event, which the kiosk hears on
its feed. The basket holds no prices: the kiosk's checkout
(``POST /v1/sales``) prices it, and a sale by the kiosk takes out of it
what it sold: per SKU, up to the units sold; what the sale left out stays.

Sessions live in memory only: after a restart the customer scans their card
again, and a basket that was lost is put together again at the kiosk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent import catalog
from edge_agent.bus import EventBus, utcnow
from edge_agent.store import Store

MEMBER_ATTACHED = "member.attached"
BASKET_CHANGED = "session.basket"
# Lines in one basket: a customer's shopping, not a stock room's.
MAX_LINES = 50


class BasketError(Exception):
    """A basket change that cannot be made; ``status`` is the HTTP status that says why."""

    status = 409


class UnknownProduct(BasketError):
    status = 422


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
    """One kiosk's session: the member attached to it, if any, and its basket."""

    station: str
    member_id: str | None = None
    attached_at: datetime | None = None
    basket: tuple[BasketLine, ...] = ()

    def qty(self, sku: str) -> int:
        """Units of ``sku`` in the basket, from every source."""
        return sum(line.qty for line in self.basket if line.sku == sku)

    def lines_from(self, source: str) -> tuple[BasketLine, ...]:
        """The basket lines that ``source`` put there."""
        return tuple(line for line in self.basket if line.source == source)

    def basket_dict(self) -> dict[str, Any]:
        return {"lines": [line.as_dict() for line in self.basket], "items": sum(ln.qty for ln in self.basket)}

    def as_dict(self) -> dict[str, Any]:
        return {"station": self.station, "member_id": self.member_id,
                "attached_at": self.attached_at.isoformat() if self.attached_at else None,
                "basket": self.basket_dict()}


class Sessions:
    """Every kiosk's current session, by station (the kiosk's client name)."""

    def __init__(self, bus: EventBus):
        self.bus = bus
        self._by_station: dict[str, Session] = {}

    def get(self, station: str) -> Session:
        """The station's session (an empty one if none was started)."""
        return self._by_station.get(station) or Session(station)

    def attach_member(self, station: str, member_id: str, via: str) -> Session:
        """Attach a member to the station's session and tell the feed; the basket stays (filled at a mirror first)."""
        session = dataclasses.replace(self.get(station), member_id=member_id, attached_at=utcnow())
        self._by_station[station] = session
        self.bus.publish(MEMBER_ATTACHED, {"station": station, "member_id": member_id, "via": via})
        return session

    def add(self, station: str, product: catalog.Product, qty: int, source: str) -> Session:
        """Put ``qty`` of ``product`` in the station's basket; BasketError beyond store stock or ``MAX_LINES``."""
        session = self.get(station)
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
        session = dataclasses.replace(session, basket=tuple(lines))
        self._by_station[station] = session
        self._changed(session, {"change": "added", "sku": product.sku, "qty": qty, "source": source})
        return session

    def clear_basket(self, station: str) -> Session:
        """Empty the station's basket (the customer starts over); an empty one stays quiet."""
        session = self.get(station)
        if not session.basket:
            return session
        session = dataclasses.replace(session, basket=())
        self._by_station[station] = session
        self._changed(session, {"change": "cleared"})
        return session

    def take_sold(self, station: str, sold: Mapping[str, int]) -> Session:
        """Take what a sale at ``station`` sold out of its basket: per SKU up to the units sold; the rest stays.

        Works on the basket as it is after the sale's commit: a line the mirror
        added while the sale was being written stays, unless it is of a SKU the
        sale sold more of than the basket held before.
        """
        session = self.get(station)
        left = dict(sold)
        lines: list[BasketLine] = []
        for line in session.basket:
            take = min(line.qty, left.get(line.sku, 0))
            if take:
                left[line.sku] -= take
            if line.qty > take:
                lines.append(dataclasses.replace(line, qty=line.qty - take) if take else line)
        if len(lines) == len(session.basket) and all(a is b for a, b in zip(lines, session.basket)):
            return session  # the sale sold nothing of the basket
        session = dataclasses.replace(session, basket=tuple(lines))
        self._by_station[station] = session
        self._changed(session, {"change": "sale"})
        return session

    def end(self, station: str) -> None:
        """Close the station's session (checkout done or abandoned)."""
        self._by_station.pop(station, None)

    def _changed(self, session: Session, what: dict[str, Any]) -> None:
        self.bus.publish(BASKET_CHANGED, {"station": session.station, **what, **session.basket_dict()})


async def add_item(sessions: Sessions, store: Store, station: str, item: catalog.ItemIn, source: str) -> Session:
    """Look ``item`` up in the catalog and put it in the station's basket; UnknownProduct if there is none."""
    product = await store.read(lambda conn: catalog.find(conn, item))
    if product is None:
        what, key = ("SKU", "sku") if item.sku is not None else ("barcode or SKU", "code")
        raise UnknownProduct(f"no product with {what} {item.ref!r} in this store's catalog; check the {key}")
    return sessions.add(station, product, item.qty, source)


async def priced(store: Store, session: Session) -> dict[str, Any]:
    """The session as ``GET /v1/sessions/{station}`` shows it: each line with the catalog's current unit price."""
    out = session.as_dict()
    if not session.basket:
        return out
    products = await store.read(lambda conn: catalog.products(conn, [line.sku for line in session.basket]))
    now = utcnow()
    for line in out["basket"]["lines"]:
        product = products.get(line["sku"])
        line["unit_price"] = catalog.money(product.unit_price(now)) if product else None
        line["currency"] = product.currency if product else None
        line["stock_store"] = product.stock_store if product else None
    return out
