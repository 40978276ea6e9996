"""A return taken: refunded, restocked and its slip queued in one write, then its effects.

The return row, its restocking, its points reversed, its
``retail.return.accepted`` event and its slip's print job (on the client's
own printer or the one with ``return_slips: true``) commit together
(edge_agent/returns.py, edge_agent/printing.py). Once on disk: low-stock
alerts for what came back short of the threshold, and the printer woken for
the slip. A replay prints nothing new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from drivers.printer.spool import Job
from edge_agent import returns, stock
from edge_agent.config import ClientConfig
from edge_agent.store import Tx

if TYPE_CHECKING:
    from edge_agent.agent import Agent


class Taken(NamedTuple):
    """The return as stored, whether it is a replay, and its slip's print job if one was queued."""

    ret: dict
    replayed: bool
    job: Job | None


async def take_return(agent: "Agent", body: returns.ReturnIn, client: ClientConfig) -> Taken:
    """Take a return of a store sale or of a collected online order; the same client_return_id returns it again.

    Raises returns.ReturnNotFound, returns.ReturnConflict, returns.ReturnError (edge_agent/returns.py) or
    StoreError.
    """
    store_id = agent.config.store.id
    changes: list[stock.StockChange | None] = []

    def write(tx: Tx) -> Taken:
        changes.clear()
        ret, replayed = returns.record(tx, body, client.name, store_id, changes)
        job = None if replayed else agent.printing.queue_return_slip(tx, client.name, ret)
        return Taken(ret, replayed, job)

    taken = await agent.store.write(write)
    stock.publish_low(agent.bus, changes, agent.config.stock.low_threshold)
    if taken.job is not None:
        agent.printing.notify(taken.job.device)
    return taken
