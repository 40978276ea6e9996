"""The try-on mirror's flows: what it offers, the look it draws, its basket, and an order placed online from it.

The mirror's state (the look, the try-on session, its own basket) lives in
its driver (drivers/mirror/driver.py ``MirrorCamera``), which publishes its
own changes (``mirror.basket``, ``mirror.session.ended``); the catalog
gives names, prices and stock. This module holds the rules between them:

- a try-on product is one the mirror's try-on file knows and the store has
  (``stock_store``) or can order (``stock_online``): ``offers``;
- a look is at most one product of each kind (one top, one outerwear, one
  lipstick...), drawn garments first (a jacket over the top), then makeup,
  glasses on top of all (``LAYER_ORDER``): ``set_look``;
- the view the mirror draws in ("face" close up, "body" stepped back: only
  then are garments drawn) and, in body view, each garment's suggested size
  from the customer's estimated shoulder width: ``fitting``. The width
  itself is not passed on: only the size, on the mirror's own screen, never
  in ``retail.tryon.session``;
- "Add to basket" takes no more than the stock of its channel: with the
  mirror's ``kiosk:``, a store line goes to that kiosk's session basket
  (edge_agent/usecases/basket.py, whose count covers every source) and the
  try-on session records it; otherwise it is a line of the mirror's own
  basket: ``add_to_basket``;
- "Order online" is a pickup order (edge_agent/usecases/orders.py
  ``place_order``) of this mirror's try-on products only, recorded by the
  try-on session unless it is a replay: ``order_online``.

Refusals are the domain's errors: NotTryOn (Invalid) for a product that is
no try-on product here or a look with two of a kind, MirrorBasketError
(Conflict) beyond the stock or the basket's size, TryOnUnavailable
(Unavailable) when the try-on file cannot be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ar_mirror import products
from ar_mirror.control import Look
from drivers.mirror.driver import MirrorCamera
from drivers.mirror.session import Channel
from edge_agent import catalog, orders
from edge_agent.config import ClientConfig, Role
from edge_agent.errors import Conflict, Invalid, Unavailable
from edge_agent.usecases import basket as kiosk_basket
from edge_agent.usecases.orders import place_order
from edge_core.errors import DeviceError

if TYPE_CHECKING:
    from edge_agent.agent import Agent

# Garments first (outerwear over the top), then makeup, glasses on top of all.
LAYER_ORDER = ("top", "outerwear", "blush", "eyeshadow", "lipstick", "glasses")


class NotTryOn(Invalid):
    """A product that is not a try-on product of this mirror, or a look with more than one of a kind."""


class MirrorBasketError(Conflict):
    """A line the mirror's basket cannot take: beyond the stock of its channel, or past the basket's size."""


class TryOnUnavailable(Unavailable):
    """The mirror's try-on products file cannot be read."""


def tryons(mirror: MirrorCamera) -> dict[str, products.TryOn]:
    """The mirror's try-on file by SKU; TryOnUnavailable if it cannot be read."""
    try:
        return mirror.tryons()
    except DeviceError as err:
        raise TryOnUnavailable(f"the mirror's try-on products cannot be read: {err}") from err


async def offers(agent: "Agent", mirror: MirrorCamera) -> dict[str, products.Offer]:
    """The mirror's try-on products that the store has or can order, by SKU, in the try-on file's order."""
    known = tryons(mirror)
    items = await agent.store.read(lambda conn: catalog.products(conn, list(known)))
    return {offer.sku: offer for offer in products.offers(known, items)}


async def set_look(agent: "Agent", mirror: MirrorCamera, skus: list[str], compare: float = 0.0,
                   side: str = "left") -> Look:
    """Draw these products from now on, at most one of each kind, in ``LAYER_ORDER``.

    Raises NotTryOn (a product not offered here, two of a kind) or TryOnUnavailable.
    """
    offered = await offers(agent, mirror)
    unknown = [sku for sku in skus if sku not in offered]
    if unknown:
        raise NotTryOn(f"not a try-on product this store has or can order: {', '.join(unknown)}")
    kinds = [offered[sku].kind for sku in skus]
    doubled = sorted({k for k in kinds if kinds.count(k) > 1})
    if doubled:
        raise NotTryOn(f"one product of each kind at a time; more than one {', '.join(doubled)}")
    known = tryons(mirror)
    layers = sorted((known[sku].layer(sku) for sku in skus), key=lambda layer: LAYER_ORDER.index(layer.kind))
    return mirror.set_look(layers, compare, side)


def fitting(mirror: MirrorCamera) -> dict[str, Any]:
    """What the mirror sees now: its ``view`` ("none", "face", "body") and, in body view once the shoulders
    were measured, the suggested size of each garment (``sizes``: SKU to size), an estimate."""
    stats = mirror.stats
    view = stats.view if stats is not None else "none"
    sizes: dict[str, str] = {}
    if stats is not None and view == "body" and stats.shoulder_cm is not None:
        try:
            known = mirror.tryons()
        except DeviceError:
            known = {}
        for sku, item in known.items():
            if item.sizes:
                size = products.suggest_size(item.sizes, stats.shoulder_cm)
                if size is not None:
                    sizes[sku] = size
    return {"view": view, "sizes": sizes}


async def add_to_basket(agent: "Agent", mirror: MirrorCamera, sku: str, qty: int, channel: Channel) -> None:
    """"Add to basket": to take in the store (with ``kiosk:``, into that kiosk's session basket) or to order online.

    Raises NotTryOn, TryOnUnavailable, MirrorBasketError (the mirror's own basket: beyond the channel's stock or
    its size) or, for the kiosk's basket, what edge_agent/usecases/basket.py ``add_line`` raises.
    """
    offer = (await offers(agent, mirror)).get(sku)
    if offer is None:
        raise NotTryOn(f"{sku!r} is not a try-on product this store has or can order")
    kiosk = mirror.cfg.kiosk
    if channel == "store" and kiosk is not None:
        await kiosk_basket.add_line(agent, kiosk, catalog.ItemIn(sku=sku, qty=qty), mirror.cfg.id)
        mirror.sent_to_kiosk(sku, qty)
        return
    stock = offer.stock_store if channel == "store" else offer.stock_online
    wanted = mirror.basket.qty(sku, channel) + qty
    if wanted > stock:
        where = "in the store" if channel == "store" else "online"
        raise MirrorBasketError(f"only {stock} of {sku} {where}; the basket would hold {wanted}")
    try:
        mirror.add_to_basket(sku, qty, channel)
    except ValueError as err:  # the basket is full (drivers/mirror/session.py Basket.max_lines)
        raise MirrorBasketError(str(err)) from err


def basket(agent: "Agent", mirror: MirrorCamera, viewer: ClientConfig) -> dict[str, Any]:
    """The mirror's own basket; with ``kiosk:``, also what it put in that kiosk's basket that is still there.

    ``lines`` is only ever the mirror's own (what a kiosk checks out from
    here), so a line in the kiosk's session is never sold twice. The
    ``kiosk`` part is part of that kiosk's session: another kiosk does not
    see it.
    """
    out = mirror.basket.as_dict()
    kiosk = mirror.cfg.kiosk
    if kiosk is not None and (viewer.role != Role.KIOSK or viewer.name == kiosk):
        session = agent.sessions.get(kiosk)
        mine = [{"sku": ln.sku, "name": ln.name, "qty": ln.qty} for ln in session.lines_from(mirror.cfg.id)]
        out["kiosk"] = {"station": kiosk, "lines": mine}
    return out


async def order_online(agent: "Agent", mirror: MirrorCamera, body: orders.OrderIn, client: ClientConfig
                       ) -> orders.Placed:
    """"Order online": a pickup order for this store of the mirror's try-on products, from online stock.

    Raises NotTryOn (a product the mirror's try-on file does not know), TryOnUnavailable, or what
    edge_agent/usecases/orders.py ``place_order`` raises.
    """
    known = tryons(mirror)
    # Checked against the products file, not what is in stock: a retry of the
    # order that took the last unit must still find it (stock is place_order's 409).
    found = await agent.store.read(lambda conn: [catalog.find(conn, item) for item in body.lines])
    others = [item.ref for item, product in zip(body.lines, found, strict=True)
              if product is None or product.sku not in known]
    if others:
        raise NotTryOn(f"not a try-on product of this mirror: {', '.join(others)}")
    store = agent.config.store
    at = orders.Placement("mirror", client.name, store.id, store.name, device=mirror.cfg.id)
    placed = await place_order(agent, body, at)
    if not placed.replayed:
        mirror.ordered(placed.order["order_id"], [(ln["sku"], ln["qty"]) for ln in placed.order["lines"]])
    return placed
