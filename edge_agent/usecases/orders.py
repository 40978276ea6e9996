"""Pickup orders: an order placed, an order moved on; each one write, then its effects.

Placing (edge_agent/orders.py ``place``) commits the order, its online stock
held and its pick ticket's print job together; once on disk a new order is
``order.created`` on the bus (the associates' feed, with the ticket's job id)
and the pick-ticket printer is woken. Moving an order on commits its status
and its ``retail.order.status`` event; then ``order.status`` on the bus and
low-stock alerts for what a collected order took from the store's stock. A
wrong pickup code is counted on disk first, then refused (WrongCode).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent import orders, stock
from edge_agent.store import Tx

if TYPE_CHECKING:
    from edge_agent.agent import Agent


async def place_order(agent: "Agent", body: orders.OrderIn, at: orders.Placement) -> orders.Placed:
    """Place an order durably, then tell the associates and wake the pick-ticket printer; a replay tells nobody.

    Raises orders.OrderError (409: beyond online stock, a reused client_order_id), orders.OrderRejected (422: an
    unknown product, a kiosk's order for a member not attached to its session) or StoreError.
    """
    if at.origin == "kiosk" and body.member_id is not None:
        # As with points: a kiosk orders for the member whose card was scanned at it, or for nobody.
        if body.member_id != agent.sessions.get(at.station).member_id:
            raise orders.OrderRejected(f"member {body.member_id} is not attached to this kiosk's session; "
                                       "scan the member's card at the kiosk first, or order without member_id")

    def write(tx: Tx) -> orders.Placed:
        return orders.place(tx, body, at, agent.printing)

    placed = await agent.store.write(write)
    if not placed.replayed:
        agent.bus.publish("order.created", {**(placed.feed or {}), "print_job": placed.job.id if placed.job else None})
    if placed.job is not None:
        agent.printing.notify(placed.job.device)
    return placed


async def move_order(agent: "Agent", order_id: str, body: orders.StatusIn, client: str) -> orders.Outcome:
    """Move an order on (new -> picking -> ready -> collected with the pickup code), then its effects.

    Raises orders.OrderNotFound, orders.OrderError (a move not allowed), orders.CodeRequired, orders.CodeLocked,
    orders.WrongCode (after the wrong attempt is on disk) or StoreError.
    """
    outcome = await agent.store.write(lambda tx: orders.set_status(tx, order_id, body, client))
    if outcome.wrong_code:
        attempts = outcome.order["wrong_attempts"]
        locked = outcome.order["locked_until"]
        then = (f"the order now takes no code until {locked}" if locked else
                f"after {orders.MAX_CODE_ATTEMPTS} wrong codes it takes none for "
                f"{int(orders.LOCK.total_seconds() // 60)} min")
        raise orders.WrongCode(f"wrong pickup code for order {order_id} (wrong attempt {attempts} of "
                               f"{orders.MAX_CODE_ATTEMPTS}); {then}")
    if outcome.event is not None:
        agent.bus.publish("order.status", {**outcome.event, "member_id": outcome.order["member_id"]})
    stock.publish_low(agent.bus, outcome.changes, agent.config.stock.low_threshold)
    return outcome
