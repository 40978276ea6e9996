"""A stock count or adjustment: one write, then the low-stock alert it may set off.

The adjustment, the product's new count and its ``retail.stock.adjusted``
event commit together (edge_agent/stock.py ``adjust``); once on disk, the
new count is ``stock.changed`` on the bus (what the shelf labels and the
feed follow) and a count that fell to the threshold ``stock.low``
(stock.publish_low). A replay moves nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent import stock

if TYPE_CHECKING:
    from edge_agent.agent import Agent


async def adjust_stock(agent: "Agent", body: stock.AdjustmentIn, client: str) -> tuple[dict[str, Any], bool]:
    """Add or remove units, or set the count; (the product's stock view, replayed).

    Raises stock.AdjustmentConflict (a reused client_adjustment_id), stock.UnknownProduct or StoreError.
    """
    store_id = agent.config.store.id
    view, replayed, moved = await agent.store.write(lambda tx: stock.adjust(tx, body, client, store_id))
    stock.publish_low(agent.bus, [moved], agent.config.stock.low_threshold)
    return view, replayed
