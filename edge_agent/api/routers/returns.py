"""``POST /v1/returns``: a return of a store sale or of an online order (edge_agent/returns.py).

201 once the return, its restocking and its ``retail.return.accepted`` event
are on disk, in one transaction with the return slip's print job
(``Print-Job`` header) on the client's own printer or, for a client without
one such as an associate's PAD, the printer with ``return_slips: true``. The same ``client_return_id``
with the same body returns the same return (``Idempotent-Replayed: true``),
with another body 409. 404: no such sale in this store; 409: an online order
that was never collected; 422: a line that is not part of the sale or order,
more than is left to return, an unknown code.

The answer names the member of the sale or order returned, which its client
may not have known: that is a read in the access log (edge_agent/privacy.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from drivers.printer.spool import Job
from edge_agent import returns, stock
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.store import Tx

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
    store_id = agent.config.store.id
    changes: list[stock.StockChange | None] = []

    def take(tx: Tx) -> tuple[dict, bool, Job | None]:
        changes.clear()
        ret, replayed = returns.record(tx, body, client.name, store_id, changes)
        job = None if replayed else agent.printing.queue_return_slip(tx, client.name, ret)
        return ret, replayed, job

    ret, replayed, job = await agent.store.write(take)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if ret.get("member_id"):
        agent.privacy.access.record(client.name, client.role, ret["member_id"], "POST /v1/returns")
    stock.publish_low(agent.bus, changes, agent.config.stock.low_threshold)
    if job is not None:
        agent.printing.notify(job.device)
        response.headers["Print-Job"] = job.id
    return ret
