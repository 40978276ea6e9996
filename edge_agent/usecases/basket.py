"""A kiosk's basket: a line added, the basket cleared, the session ended ("new customer"), and the priced view.

The session lives in memory (edge_agent/sessions.py ``Sessions``): a change
has no transaction, so its effect follows it at once, with no await
between: ``session.basket`` on the bus (the kiosk's and the associates'
feed) for a line added or a basket that held something cleared. Ending a
session goes through ``Sessions.end``, the one place that ends a session
and says so (``session.ended``), for the button here as for the idle timer,
another member's card and the kiosk's sale.

Every flow answers the session as the kiosk's screen shows it: each line
with the catalog's current price (``PricedSession``), read after the change.
A station that is no kiosk client of this store is ``NoKiosk`` (NotFound);
an unknown product ``UnknownProduct`` (Invalid); more than the store has,
or more lines than a basket holds, ``BasketError`` (Conflict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_agent import catalog, sessions
from edge_agent.config import Role
from edge_agent.sessions import EndReason, PricedSession, Session
from edge_core.bus import utcnow

if TYPE_CHECKING:
    from edge_agent.agent import Agent


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """What "new customer" did: the session that ended (None: there was none) and the kiosk's session now."""

    ended: sessions.Ended | None
    session: PricedSession

    def as_dict(self) -> dict[str, Any]:
        """``station``, ``ended`` (what ``session.ended`` said, or null) and ``session``."""
        return {"station": self.session.session.station,
                "ended": self.ended.as_dict() if self.ended is not None else None,
                "session": self.session.as_dict()}


def kiosk(agent: "Agent", station: str) -> None:
    """NoKiosk unless ``station`` is a kiosk client of this store (a session is a kiosk's)."""
    if not any(c.name == station and c.role == Role.KIOSK for c in agent.config.api.clients):
        raise sessions.NoKiosk(f"no kiosk {station!r} in this store (an api client with role kiosk)")


async def view(agent: "Agent", station: str) -> PricedSession:
    """The kiosk's session (an empty one if none was started), each line with its current price."""
    kiosk(agent, station)
    return await priced(agent, agent.sessions.get(station))


async def priced(agent: "Agent", session: Session) -> PricedSession:
    """``session`` with the catalog's current unit price, currency and store count of each line."""
    if not session.basket:
        return PricedSession(session)
    skus = [line.sku for line in session.basket]
    products = await agent.store.read(lambda conn: catalog.products(conn, skus))
    return sessions.priced(session, products, utcnow())


async def add_line(agent: "Agent", station: str, item: catalog.ItemIn, source: str) -> PricedSession:
    """Put ``item`` in the kiosk's basket for ``source`` (who put it there), then ``session.basket``.

    Raises NoKiosk, UnknownProduct (no such product in the catalog) or BasketError (beyond the store's count of it,
    from every source together, or a basket of ``sessions.MAX_LINES`` lines).
    """
    kiosk(agent, station)
    product = await agent.store.read(lambda conn: catalog.find(conn, item))
    if product is None:
        what, key = ("SKU", "sku") if item.sku is not None else ("barcode or SKU", "code")
        raise sessions.UnknownProduct(f"no product with {what} {item.ref!r} in this store's catalog; check the {key}")
    session = agent.sessions.add(station, product, item.qty, source)
    agent.bus.publish(sessions.BASKET_CHANGED, session.basket_event(
        {"change": "added", "sku": product.sku, "qty": item.qty, "source": source}))
    return await priced(agent, session)


async def clear(agent: "Agent", station: str) -> PricedSession:
    """Empty the kiosk's basket (the customer starts over; the member stays); ``session.basket`` if it held any.

    Raises NoKiosk.
    """
    kiosk(agent, station)
    had = bool(agent.sessions.get(station).basket)
    session = agent.sessions.clear_basket(station)
    if had:
        agent.bus.publish(sessions.BASKET_CHANGED, session.basket_event({"change": "cleared"}))
    return PricedSession(session)


async def end_session(agent: "Agent", station: str) -> SessionEnd:
    """"New customer": end the kiosk's session (``session.ended``, reason ``new_customer``); idempotent.

    Raises NoKiosk.
    """
    kiosk(agent, station)
    ended = agent.sessions.end(station, EndReason.NEW_CUSTOMER)
    return SessionEnd(ended, PricedSession(agent.sessions.get(station)))
