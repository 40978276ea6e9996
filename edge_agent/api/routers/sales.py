"""``POST /v1/sales``: checkout, durable before the 201, idempotent on client_sale_id.

The flow and its effects (the receipt, the kiosk session ended, the bus
event, the shelf labels and low-stock alerts) are edge_agent/usecases/checkout.py.
When the selling kiosk has a printer, the 201 names the receipt job in the
``Print-Job`` header (``GET /v1/print/jobs/{id}``); a replay answers
``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from edge_agent import sales
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute, member_problem
from edge_agent.config import ClientConfig, Role
from edge_agent.usecases.checkout import checkout

router = APIRouter(tags=["sales"], route_class=StrictRoute)


@router.post("/v1/sales", status_code=201)
async def create_sale(
    body: sales.SaleIn,
    request: Request,
    response: Response,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE)),
) -> dict:
    """Record a sale priced by the agent; a retry with the same body returns the same sale."""
    member_problem(request, body.member_id)
    done = await checkout(request.app.state.agent, body, client)
    if done.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if done.job is not None:
        response.headers["Print-Job"] = done.job.id
    return done.sale
