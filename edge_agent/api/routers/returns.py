"""``POST /v1/returns``: a return of a store sale or of an online order (edge_agent/returns.py).

201 once the return, its restocking and its ``retail.return.accepted`` event
are on disk, in one transaction with the return slip's print job
(``Print-Job`` header) on the client's own printer or, for a client without
one such as an associate's PAD, the printer with ``return_slips: true``. The same ``client_return_id``
with the same body returns the same return (``Idempotent-Replayed: true``),
with another body 409. 404: no such sale in this store; 409: an online order
that was never collected; 422: a line that is not part of the sale or order,
more than is left to return, an unknown code. The flow and its effects are
edge_agent/usecases/returns.py.

The answer names the member of the sale or order returned, which its client
may not have known: that is a read in the access log (edge_agent/privacy.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from edge_agent import returns
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.usecases.returns import take_return

router = APIRouter(tags=["returns"], route_class=StrictRoute)


@router.post("/v1/returns", status_code=201)
async def create_return(
    body: returns.ReturnIn,
    request: Request,
    response: Response,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE)),
) -> dict:
    """Take a return: refunded from the sale's own prices, restocked, points reversed, slip printed."""
    agent = request.app.state.agent
    ret, replayed, job = await take_return(agent, body, client)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if ret.get("member_id"):
        agent.privacy.access.record(client.name, client.role, ret["member_id"], "POST /v1/returns")
    if job is not None:
        response.headers["Print-Job"] = job.id
    return ret
