"""``POST /v1/sales``: checkout, durable before the 201, idempotent on client_sale_id.

The flow and its effects (the receipt, the kiosk session ended, the bus
event, the shelf labels and low-stock alerts) are edge_agent/usecases/checkout.py.
When the selling kiosk has a printer, the 201 names the receipt job in the
``Print-Job`` header (``GET /v1/print/jobs/{id}``); a replay answers
``Idempotent-Replayed: true``.

``GET /v1/sales/{sale}`` looks a sale up for a return (edge_agent/sales.py
``lookup``): by its id or its receipt's barcode as scanned, each line with
what was returned and what is left. Its member id is a read in the access
log, shown as the feed shows it to the client's role.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request, Response

from edge_agent import returns, sales
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute, member_problem
from edge_agent.config import ClientConfig, Role
from edge_agent.feed import ROLE_MASK, masked_id
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


@router.get("/v1/sales/{sale}", responses={404: {"description": "not a sale of this store"}})
async def get_sale(
    request: Request,
    sale: str = Path(min_length=1, max_length=80, description="the sale id, or its receipt's barcode as scanned "
                                                               "(40 digits or RS1:<id>)"),
    client: ClientConfig = Depends(require(Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """A sale for a return: its lines with ``returned`` and ``returnable``."""
    agent = request.app.state.agent
    sale_id = returns.sale_id_of(sale)
    found = await agent.store.read(lambda conn: sales.lookup(conn, sale_id, sale))
    if found["member_id"]:
        if client.role in ROLE_MASK:
            found["member_id"] = masked_id(found["member_id"])
        else:
            agent.privacy.access.record(client.name, client.role, found["member_id"], "GET /v1/sales/{sale}")
    return found
