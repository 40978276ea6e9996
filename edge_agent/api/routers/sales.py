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
meanwhile, so a committed sale never leaves its customer at the kiosk; so do
the sale's other effects (its stock counts to the shelf labels and low-stock
alerts, the printer woken for its receipt). A
replay ends nothing: it sold nothing new, and the customer may have started
the next session since.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response

from drivers.printer.spool import Job
from edge_agent import sales, stock
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute, member_problem
from edge_agent.config import ClientConfig, Role
from edge_agent.store import Tx

if TYPE_CHECKING:
    from edge_agent.agent import Agent

router = APIRouter(tags=["sales"], route_class=StrictRoute)

Written = tuple[dict, bool, Job | None]


def _after_commit(agent: "Agent", changes: list[stock.StockChange | None], station: str, session_id: str | None,
                  write: asyncio.Future[Written]) -> None:
    """When the sale's write is over, whether or not its request is still there: the effects of a sale on disk
    (stock counts to the labels and low-stock alerts, the printer woken for the receipt), and the end of the kiosk
    session it completed; anything else lets that session go on."""
    sold: dict[str, int] | None = None
    if not write.cancelled() and write.exception() is None:
        sale, replayed, job = write.result()
        if not replayed:
            # For what shows a station's sale (drivers/display/): no member, no lines, the sale's id and total.
            agent.bus.publish("sale.completed", {"station": station, "sale_id": sale["id"], "total": sale["total"],
                                                 "currency": sale["currency"]})
            stock.publish_low(agent.bus, changes, agent.config.stock.low_threshold, announce=False)
            sold = {}
            for line in sale["lines"]:
                sold[line["sku"]] = sold.get(line["sku"], 0) + line["qty"]
        if job is not None:
            agent.printing.notify(job.device)
    if session_id is not None:
        agent.sessions.end_checkout(station, session_id, sold)


@router.post("/v1/sales", status_code=201)
async def create_sale(
    body: sales.SaleIn,
    request: Request,
    response: Response,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE)),
) -> dict:
    """Record a sale priced by the agent; a retry with the same body returns the same sale."""
    member_problem(request, body.member_id)
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
    # Registered before anyone awaits the write: the sale's effects happen, and its session is settled, before
    # this handler resumes, and also when the handler was cancelled meanwhile (a client that hung up).
    write.add_done_callback(functools.partial(_after_commit, agent, changes, client.name,
                                              session.id if session is not None else None))
    sale, replayed, job = await asyncio.shield(write)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if job is not None:
        response.headers["Print-Job"] = job.id
    return sale
