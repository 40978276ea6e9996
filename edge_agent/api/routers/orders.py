"""Pickup orders (edge_agent/orders.py): associates list and move them (``GET /v1/orders``,
``POST /v1/orders/{id}/status``); kiosks and associates place them (``POST /v1/orders``).

An order with a member id that a call returns is a read of that member in the
access log (edge_agent/privacy.py); placing an order, which shows back only
what its client sent, is not. The pickup code is shown once, in the answer
to placing the order (and to a retry of it within privacy.REPLAY_WINDOW):
the store keeps only its hash, and no other call returns it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from edge_agent import orders
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute, member_problem
from edge_agent.config import ClientConfig, Role
from edge_agent.usecases import orders as flows

router = APIRouter(tags=["orders"], route_class=StrictRoute)
_ASSOCIATE = require(Role.ASSOCIATE)
OrderId = Annotated[str, Path(min_length=1, max_length=64)]


def _read(request: Request, client: ClientConfig, order: dict, what: str) -> None:
    if order.get("member_id"):
        request.app.state.agent.privacy.access.record(client.name, client.role, order["member_id"], what)


@router.get("/v1/orders")
async def list_orders(
    request: Request,
    status: Literal["open", "all", "new", "picking", "ready", "collected"] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    client: ClientConfig = Depends(_ASSOCIATE),
) -> list[dict]:
    """Pickup orders, oldest first (``open``: not collected yet), each line with its name and store stock."""
    found = await request.app.state.agent.store.read(lambda conn: orders.list_orders(conn, status, limit))
    for order in found:
        _read(request, client, order, "GET /v1/orders")
    return found


@router.get("/v1/orders/{order_id}")
async def get_order(order_id: OrderId, request: Request, client: ClientConfig = Depends(_ASSOCIATE)) -> dict:
    """One pickup order; 404 if the hub sent none by that number."""
    order = await request.app.state.agent.store.read(lambda conn: orders.get(conn, order_id))
    if order is None:
        raise orders.OrderNotFound(f"no pickup order {order_id!r} in this store")
    _read(request, client, order, "GET /v1/orders/{order_id}")
    return order


@router.post("/v1/orders/{order_id}/status")
async def set_status(
    order_id: OrderId,
    body: orders.StatusIn,
    request: Request,
    client: ClientConfig = Depends(_ASSOCIATE),
) -> dict:
    """Move an order on: new -> picking -> ready -> collected (with the customer's pickup code)."""
    outcome = await flows.move_order(request.app.state.agent, order_id, body, client.name)
    _read(request, client, outcome.order, "POST /v1/orders/{order_id}/status")
    return {**outcome.order, "changed": outcome.changed}


@router.post("/v1/orders", status_code=201)
async def place_order(
    body: orders.OrderIn,
    request: Request,
    response: Response,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """Place a pickup order for this store from online stock; 201 with its ``order_id`` and ``pickup_code``.

    Prices come from the agent's catalog; 409 when a line asks for more than
    ``stock_online`` or the ``client_order_id`` was used for another order,
    422 for an unknown product. The same ``client_order_id`` and body again
    return the same order (``Idempotent-Replayed: true``).
    """
    member_problem(request, body.member_id)
    store = request.app.state.agent.config.store
    at = orders.Placement(client.role.value, client.name, store.id, store.name)
    placed = await flows.place_order(request.app.state.agent, body, at)
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if placed.job is not None:
        response.headers["Print-Job"] = placed.job.id
    return placed.order
