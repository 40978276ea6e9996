"""Store stock: manual adjustments, restocking, and the low-stock alert.

Every change of ``products.stock_store`` made here goes to the hub as a
``retail.stock.adjusted`` event in the same transaction: a manual adjustment
(``POST /v1/stock/adjustments``), a return put back on the shelf, a pickup
order collected. A sale does not get one: its ``retail.sale.completed``
carries its lines, which are the decrement (one more event per sale would
cost about 100 bytes of outbox per sale offline; see README, Stock).

After the commit, what shows store counts hears of every change:
``stock.changed`` per count for an adjustment, a return or a pickup, and one
``stock.sold`` per sale naming the SKUs it moved, so that shelf labels follow
sales within seconds (edge_agent/labels/ coalesces a burst into a few pushes).

A count that falls to ``stock.low_threshold`` or below (from above it)
raises one ``stock.low`` on the bus, which the live feed forwards to
associates; it is raised again only after the count has gone back above the
threshold. Stock may go below zero: the store does not refuse a customer
holding the item (the count was wrong); a count falling below zero raises
``stock.low`` too, with ``negative: true``, so that someone counts the shelf.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from edge_agent import catalog
from edge_agent.bus import EventBus
from edge_agent.errors import Conflict, NotFound
from edge_agent.store import Tx, codec
from edge_agent.store.db import uuid7
from edge_core.bus import utcnow

STOCK_ADJUSTED = "retail.stock.adjusted"
STOCK_LOW = "stock.low"
STOCK_CHANGED = "stock.changed"  # one count changed: {sku, qty, by}
STOCK_SOLD = "stock.sold"  # a sale moved these counts: {skus}
MAX_QTY = 10_000_000

Reason = Literal["count", "received", "damaged", "lost", "found", "other"]


class AdjustmentConflict(Conflict):
    """The client_adjustment_id was used before with a different body."""


class UnknownProduct(NotFound, LookupError):
    """No product with that barcode or SKU."""


class AdjustmentIn(BaseModel):
    """Body of ``POST /v1/stock/adjustments``: a change (``delta``) or a count (``counted``)."""

    model_config = ConfigDict(extra="forbid")

    client_adjustment_id: uuid.UUID | None = Field(
        default=None, description="idempotency key: the same key again returns the same adjustment")
    code: str = Field(min_length=1, max_length=64, description="barcode or SKU")
    delta: StrictInt | None = Field(default=None, ge=-MAX_QTY, le=MAX_QTY, description="units added (negative: removed)")
    counted: StrictInt | None = Field(default=None, ge=0, le=MAX_QTY, description="units counted on the shelf")
    reason: Reason
    note: str | None = Field(default=None, max_length=300)

    @model_validator(mode="after")
    def _one_of(self) -> "AdjustmentIn":
        if (self.delta is None) == (self.counted is None):
            raise ValueError("give either delta (units added or removed) or counted (units on the shelf), not both")
        if self.delta == 0:
            raise ValueError("delta 0 changes nothing; send counted to confirm a count")
        return self

    def fingerprint(self) -> bytes:
        """Hash of the body, to tell a retry from a different adjustment with a reused key."""
        return hashlib.sha256(self.model_dump_json().encode()).digest()[:16]


@dataclass(frozen=True, slots=True)
class StockChange:
    """One product's store count before and after a change."""

    sku: str
    name: str
    before: int
    after: int


def change(tx: Tx, sku: str, delta: int) -> StockChange | None:
    """Add ``delta`` to the store count of ``sku``; None if there is no such product."""
    row = tx.execute("UPDATE products SET stock_store = stock_store + ? WHERE sku = ? RETURNING stock_store, name",
                     (delta, sku)).fetchone()
    if row is None:
        return None
    return StockChange(sku, row[1], row[0] - delta, row[0])


def restock(tx: Tx, sku: str, delta: int, reason: str, client: str, ref: dict[str, str]) -> StockChange | None:
    """Change the count of ``sku`` and emit its ``retail.stock.adjusted`` (a return, a pickup)."""
    moved = change(tx, sku, delta)
    if moved is not None:
        tx.emit(STOCK_ADJUSTED, {"adjustment_id": str(uuid7()), "sku": sku, "delta": delta, "qty": moved.after,
                                 "reason": reason, "client": client, **ref})
    return moved


def low_alerts(changes: list[StockChange | None], threshold: int) -> list[dict[str, Any]]:
    """The ``stock.low`` data for each change that crossed down to ``threshold`` or below, or below zero."""
    return [{"sku": c.sku, "name": c.name, "qty": c.after, "threshold": threshold, "negative": c.after < 0}
            for c in changes if c is not None and (c.before > threshold >= c.after or c.before >= 0 > c.after)]


def publish_low(bus: EventBus, changes: list[StockChange | None], threshold: int, *, announce: bool = True) -> None:
    """After a commit: ``stock.low`` for each crossing (associates' feed) and, with ``announce``,
    ``stock.changed`` for each count (what the hub's counts publish too). A sale (``announce=False``)
    publishes one ``stock.sold`` naming its SKUs instead of an event per line at checkout speed."""
    moved = [c for c in changes if c is not None]
    if announce:
        for c in moved:
            bus.publish(STOCK_CHANGED, {"sku": c.sku, "qty": c.after, "by": "store"})
    elif moved:
        bus.publish(STOCK_SOLD, {"skus": sorted({c.sku for c in moved})})
    for alert in low_alerts(changes, threshold):
        bus.publish(STOCK_LOW, alert)


def adjust(tx: Tx, body: AdjustmentIn, client: str, store_id: str) -> tuple[dict[str, Any], bool, StockChange | None]:
    """Record a manual adjustment; (the adjustment, True if a replay, the change made)."""
    fingerprint = body.fingerprint()
    if body.client_adjustment_id is not None:
        row = tx.execute("SELECT request_hash, body FROM stock_adjustments WHERE client_adjustment_id = ?",
                         (body.client_adjustment_id.bytes,)).fetchone()
        if row is not None:
            if row[0] != fingerprint:
                raise AdjustmentConflict(f"client_adjustment_id {body.client_adjustment_id} was already used "
                                         "for a different adjustment")
            return codec.unpack(row[1]), True, None
    product = catalog.lookup(tx.conn, body.code)
    if product is None:
        raise UnknownProduct(f"no product with barcode or SKU {body.code!r}")
    delta = body.delta if body.delta is not None else body.counted - product.stock_store  # type: ignore[operator]
    moved = change(tx, product.sku, delta)
    assert moved is not None
    adjustment_id = uuid7()
    data = {"adjustment_id": str(adjustment_id), "sku": product.sku, "delta": delta, "qty": moved.after,
            "reason": body.reason, "client": client, "store": store_id}
    if body.counted is not None:
        data["counted"] = body.counted
    if body.note:
        data["note"] = body.note
    if body.client_adjustment_id is not None:
        data["client_adjustment_id"] = str(body.client_adjustment_id)
    event = tx.emit(STOCK_ADJUSTED, data)
    view = {**data, "id": data["adjustment_id"], "name": product.name, "before": moved.before,
            "seq": event.seq, "created_at": utcnow().isoformat()}
    tx.execute("INSERT INTO stock_adjustments (seq, adjustment_id, client_adjustment_id, request_hash, body) "
               "VALUES (?, ?, ?, ?, ?)",
               (event.seq, adjustment_id.bytes,
                body.client_adjustment_id.bytes if body.client_adjustment_id else None, fingerprint,
                codec.pack(view)))
    return view, False, moved
