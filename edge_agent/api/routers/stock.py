"""``POST /v1/stock/adjustments``: an associate's stock change or count (edge_agent/stock.py).

201 once the new count and its ``retail.stock.adjusted`` event are on disk.
With ``client_adjustment_id`` a retry returns the same adjustment
(``Idempotent-Replayed: true``); the same key with another body is 409.
404 for an unknown barcode or SKU. The flow is edge_agent/usecases/stock.py.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from edge_agent import stock
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.usecases import stock as flows

router = APIRouter(tags=["stock"], route_class=StrictRoute)


@router.post("/v1/stock/adjustments", status_code=201)
async def adjust_stock(
    body: stock.AdjustmentIn,
    request: Request,
    response: Response,
    client: ClientConfig = Depends(require(Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """Add or remove units (``delta``), or set the count (``counted``), with a reason."""
    view, replayed = await flows.adjust_stock(request.app.state.agent, body, client.name)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return view
