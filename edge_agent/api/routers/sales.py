"""``POST /v1/sales``: checkout, durable before the 201, idempotent on client_sale_id.

When the selling kiosk has a printer (``station:`` of a ``printer.escpos``),
its receipt job is queued in the sale's own transaction; the 201 then names
the job in the ``Print-Job`` header (``GET /v1/print/jobs/{id}``).

A sale by a kiosk completes the kiosk's session (edge_agent/sessions.py):
the session it began in is pinned while the sale is written, its member is
the only one whose points the sale may redeem, and once the sale is on disk
that session ends (``session.ended``, reason ``sale``): the member is
detached and the basket is gone, whatever the sale left out of it. This
happens when the write completes, even if the request itself was cancelled
meanwhile, so a committed sale never leaves its customer at the kiosk. A
replay ends nothing: it sold nothing new, and the customer may have started
the next session since.
"""

from __future__ import annotations

import asyncio
import functools

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from drivers.printer.spool import Job
from edge_agent import sales, stock
from edge_agent.api.auth import require
from edge_agent.config import ClientConfig, Role
from edge_agent.sessions import Sessions
from edge_agent.store import Tx

router = APIRouter(tags=["sales"])

Written = tuple[dict, bool, Job | None]


def _checked_out(sessions: Sessions, station: str, session_id: str, write: asyncio.Future[Written]) -> None:
    """When the sale's write is over: a new sale on disk ends its session; anything else lets it go on."""
    sold: dict[str, int] | None = None
    if not write.cancelled() and write.exception() is None:
        sale, replayed, _ = write.result()
        if not replayed:
            sold = {}
            for line in sale["lines"]:
                sold[line["sku"]] = sold.get(line["sku"], 0) + line["qty"]
    sessions.end_checkout(station, session_id, sold)


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
    rule = agent.config.loyalty
    changes: list[stock.StockChange | None] = []
    # A kiosk redeems points only for the member attached to the session this sale completes.
    session = agent.sessions.begin_checkout(client.name) if client.role == Role.KIOSK else None
    member = session.member_id if session is not None else sales.ANY_MEMBER

    def checkout(tx: Tx) -> Written:
        changes.clear()
        sale, replayed = sales.record(tx, body, client.name, store_id, rule, session_member=member, changes=changes)
        # The receipt job commits with the sale: no sale without its receipt,
        # and a replay, which stores nothing, queues none.
        job = None if replayed else agent.printing.queue_receipt(tx, client.name, sale)
        return sale, replayed, job

    write: asyncio.Future[Written] = asyncio.ensure_future(agent.store.write(checkout))
    if session is not None:
        # Registered before anyone awaits the write: the session is settled before this handler resumes,
        # and also when the handler was cancelled meanwhile.
        write.add_done_callback(functools.partial(_checked_out, agent.sessions, client.name, session.id))
    try:
        sale, replayed, job = await asyncio.shield(write) if session is not None else await write
    except sales.SaleConflict as err:
        raise HTTPException(409, str(err)) from err
    except sales.SaleRejected as err:
        raise HTTPException(422, str(err)) from err
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        stock.publish_low(agent.bus, changes, agent.config.stock.low_threshold, announce=False)
    if job is not None:
        agent.printing.notify(job.device)
        response.headers["Print-Job"] = job.id
    return sale
