"""``POST /v1/sales``: checkout, durable before the 201, idempotent on client_sale_id."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from edge_agent import sales
from edge_agent.api.auth import require
from edge_agent.config import ClientConfig, Role

router = APIRouter(tags=["sales"])


@router.post("/v1/sales", status_code=201)
async def create_sale(
    body: sales.SaleIn,
    request: Request,
    response: Response,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE)),
) -> dict:
    """Record a sale priced by the agent; a retry with the same body returns the same sale."""
    agent = request.app.state.agent
    store_id = agent.config.store.id
    try:
        sale, replayed = await agent.store.write(lambda tx: sales.record(tx, body, client.name, store_id))
    except sales.SaleConflict as err:
        raise HTTPException(409, str(err)) from err
    except sales.SaleRejected as err:
        raise HTTPException(422, str(err)) from err
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return sale
