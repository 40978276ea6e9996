"""Checkout: a sale durable on disk, then everything a sale sets off.

The sale, its stock decrements, its outbox event and, when the selling kiosk
has a printer (``station:`` of a ``printer.escpos``), its receipt job commit
in one write (edge_agent/sales.py, edge_agent/printing.py).

A sale by a kiosk completes the kiosk's session (edge_agent/sessions.py):
the session it began in is pinned while the sale is written, its member is
the only one whose points the sale may redeem, and once the sale is on disk
that session ends (``session.ended``, reason ``sale``): the member is
detached and the basket is gone, whatever the sale left out of it. This
happens when the write completes, even if the caller was cancelled meanwhile
(a client that hung up), so a committed sale never leaves its customer at
the kiosk; so do the sale's other effects: ``sale.completed`` on the bus
(what shows a station's sale, drivers/display/), its stock counts to the
shelf labels and low-stock alerts, the printer woken for its receipt. A
replay ends nothing: it sold nothing new, and the customer may have started
the next session since.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, NamedTuple

from drivers.printer.spool import Job
from edge_agent import sales, stock
from edge_agent.config import ClientConfig, Role
from edge_agent.store import Tx

if TYPE_CHECKING:
    from edge_agent.agent import Agent


class Checkout(NamedTuple):
    """A sale as stored, whether it is a replay of an earlier request, and its receipt job if one was queued."""

    sale: dict
    replayed: bool
    job: Job | None


async def checkout(agent: "Agent", body: sales.SaleIn, client: ClientConfig) -> Checkout:
    """Record a sale priced by the agent, then its effects; a retry with the same body returns the same sale.

    Raises sales.SaleConflict (a reused client_sale_id), sales.SaleRejected (cannot be priced) or StoreError
    (nothing kept).
    """
    changes: list[stock.StockChange | None] = []
    # A kiosk redeems points only for the member attached to the session this sale completes.
    session = agent.sessions.begin_checkout(client.name) if client.role == Role.KIOSK else None
    member = session.member_id if session is not None else sales.ANY_MEMBER
    store_id = agent.config.store.id
    rule = agent.config.loyalty

    def write(tx: Tx) -> Checkout:
        changes.clear()
        sale, replayed = sales.record(tx, body, client.name, store_id, rule, session_member=member, changes=changes)
        # The receipt job commits with the sale: no sale without its receipt,
        # and a replay, which stores nothing, queues none.
        job = None if replayed else agent.printing.queue_receipt(tx, client.name, sale)
        return Checkout(sale, replayed, job)

    done: asyncio.Future[Checkout] = asyncio.ensure_future(agent.store.write(write))
    # Registered before anyone awaits the write: the sale's effects happen, and its session is settled, before
    # the caller resumes, and also when the caller was cancelled meanwhile.
    done.add_done_callback(functools.partial(_after_commit, agent, changes, client.name,
                                             session.id if session is not None else None))
    return await asyncio.shield(done)


def _after_commit(agent: "Agent", changes: list[stock.StockChange | None], station: str, session_id: str | None,
                  write: asyncio.Future[Checkout]) -> None:
    """When the sale's write is over, whether or not its caller is still there: the effects of a sale on disk, and
    the end of the kiosk session it completed; anything else lets that session go on."""
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
