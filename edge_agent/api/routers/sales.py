"""``POST /v1/sales``: checkout, durable before the 201, idempotent on client_sale_id.

When the selling kiosk has a printer (``station:`` of a ``printer.escpos``),
its receipt job is queued in the sale's own transaction; the 201 then names
the job in the ``Print-Job`` header (``GET /v1/print/jobs/{id}``).

A sale by a kiosk takes what it sold out of that kiosk's session basket
(edge_agent/sessions.py): per SKU, up to the units sold; lines the sale left
out stay for the kiosk to sell or clear. A replay takes nothing: it sold
nothing new, and the customer may have started the next basket since.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from drivers.printer.spool import Job
from edge_agent import sales, stock
from edge_agent.api.auth import require
from edge_agent.config import ClientConfig, Role
from edge_agent.store import Tx

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
    rule = agent.config.loyalty
    # A kiosk redeems points only for the member whose card was scanned at it.
    member = agent.sessions.get(client.name).member_id if client.role == Role.KIOSK else sales.ANY_MEMBER
    changes: list[stock.StockChange | None] = []

    def checkout(tx: Tx) -> tuple[dict, bool, Job | None]:
        changes.clear()
        sale, replayed = sales.record(tx, body, client.name, store_id, rule, session_member=member, changes=changes)
        # The receipt job commits with the sale: no sale without its receipt,
        # and a replay, which stores nothing, queues none.
        job = None if replayed else agent.printing.queue_receipt(tx, client.name, sale)
        return sale, replayed, job

    try:
        sale, replayed, job = await agent.store.write(checkout)
    except sales.SaleConflict as err:
        raise HTTPException(409, str(err)) from err
    except sales.SaleRejected as err:
        raise HTTPException(422, str(err)) from err
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        stock.publish_low(agent.bus, changes, agent.config.stock.low_threshold, announce=False)
        if client.role == Role.KIOSK:
            sold: dict[str, int] = {}
            for line in sale["lines"]:
                sold[line["sku"]] = sold.get(line["sku"], 0) + line["qty"]
            agent.sessions.take_sold(client.name, sold)
    if job is not None:
        agent.printing.notify(job.device)
        response.headers["Print-Job"] = job.id
    return sale
