"""Pickup orders for associates: ``GET /v1/orders`` and ``POST /v1/orders/{id}/status`` (edge_agent/orders.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from edge_agent import orders, stock
from edge_agent.api.auth import require
from edge_agent.config import ClientConfig, Role

router = APIRouter(tags=["orders"])
_ASSOCIATE = require(Role.ASSOCIATE)
OrderId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/v1/orders", dependencies=[Depends(_ASSOCIATE)])
async def list_orders(
    request: Request,
    status: Literal["open", "all", "new", "picking", "ready", "collected"] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict]:
    """Pickup orders, oldest first (``open``: not collected yet), each line with its name and store stock."""
    return await request.app.state.agent.store.read(lambda conn: orders.list_orders(conn, status, limit))


@router.get("/v1/orders/{order_id}", dependencies=[Depends(_ASSOCIATE)])
async def get_order(order_id: OrderId, request: Request) -> dict:
    """One pickup order; 404 if the hub sent none by that number."""
    order = await request.app.state.agent.store.read(lambda conn: orders.get(conn, order_id))
    if order is None:
        raise HTTPException(404, f"no pickup order {order_id!r} in this store")
    return order


@router.post("/v1/orders/{order_id}/status")
async def set_status(
    order_id: OrderId,
    body: orders.StatusIn,
    request: Request,
    client: ClientConfig = Depends(_ASSOCIATE),
) -> dict:
    """Move an order on: new -> picking -> ready -> collected (with the customer's pickup code)."""
    agent = request.app.state.agent
    try:
        outcome = await agent.store.write(lambda tx: orders.set_status(tx, order_id, body, client.name))
    except orders.OrderError as err:
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
        raise HTTPException(err.status, str(err), headers=headers) from err
    if outcome.wrong_code:
        attempts = outcome.order["wrong_attempts"]
        locked = outcome.order["locked_until"]
        then = (f"the order now takes no code until {locked}" if locked else
                f"after {orders.MAX_CODE_ATTEMPTS} wrong codes it takes none for "
                f"{int(orders.LOCK.total_seconds() // 60)} min")
        raise HTTPException(403, f"wrong pickup code for order {order_id} (wrong attempt {attempts} of "
                                 f"{orders.MAX_CODE_ATTEMPTS}); {then}")
    if outcome.event is not None:
        agent.bus.publish("order.status", {**outcome.event, "member_id": outcome.order["member_id"]})
    stock.publish_low(agent.bus, outcome.changes, agent.config.stock.low_threshold)
    return {**outcome.order, "changed": outcome.changed}
