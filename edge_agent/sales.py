"""Checkout: price a sale from the local catalog and record it durably.

The sale row, its stock decrements and its ``retail.sale.completed`` outbox
event commit in one transaction (one ``Store.write``); the client hears 201
only after that commit is on disk. The event's data is stored once, in the
sale's row (``{"event": data, "names": [...], "created_at": ...}``, packed
by store.codec); the outbox reads it from there (store/outbox.py RECORDS). ``client_sale_id`` is the idempotency
key: the same key with the same body returns the stored sale, with another
body it is a conflict.
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent import catalog
from edge_agent.bus import utcnow
from edge_agent.store import Tx, codec
from edge_agent.store.db import uuid7

MAX_LINES = 10_000


class SaleConflict(Exception):
    """The client_sale_id was used before with a different body."""


class SaleRejected(Exception):
    """The sale cannot be priced: unknown code, mixed currencies, bad points."""


class SaleLineIn(BaseModel):
    """One line as the kiosk sends it: a barcode or SKU and a whole quantity."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=1, le=9999)


class Payment(BaseModel):
    """What the payment terminal returned; the agent records it, moves no money."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["cash", "card", "qr", "points"]
    reference: str | None = Field(default=None, max_length=128)


class SaleIn(BaseModel):
    """Body of ``POST /v1/sales``."""

    model_config = ConfigDict(extra="forbid")

    client_sale_id: uuid.UUID
    lines: list[SaleLineIn] = Field(min_length=1, max_length=MAX_LINES)
    member_id: str | None = Field(default=None, min_length=1, max_length=64)
    points_redeemed: int = Field(default=0, ge=0)
    payment: Payment

    def fingerprint(self) -> bytes:
        """Hash of the body (16 bytes of SHA-256), to tell a retry from a different sale with a reused key."""
        return hashlib.sha256(self.model_dump_json().encode()).digest()[:16]


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def sale_view(seq: int, body: bytes) -> dict[str, Any]:
    """The sale as the API returns it, from its stored row."""
    stored = codec.unpack(body)
    event = stored["event"]
    lines = [
        {**line, "name": name, "amount": _money(Decimal(line["unit_price"]) * line["qty"])}
        for line, name in zip(event["lines"], stored["names"], strict=True)
    ]
    return {**event, "id": event["sale_id"], "lines": lines, "created_at": stored["created_at"], "seq": seq}


def record(tx: Tx, sale: SaleIn, client: str, store_id: str) -> tuple[dict[str, Any], bool]:
    """Price and store ``sale``; returns (the sale, True if it was a replay)."""
    key = str(sale.client_sale_id)
    fingerprint = sale.fingerprint()
    row = tx.execute("SELECT request_hash, seq, body FROM sales WHERE client_sale_id = ?",
                     (sale.client_sale_id.bytes,)).fetchone()
    if row is not None:
        if row[0] != fingerprint:
            raise SaleConflict(f"client_sale_id {key} was already used for a different sale")
        return sale_view(row[1], row[2]), True
    if sale.points_redeemed:
        # Redemption needs the member's balance from the hub's member card.
        raise SaleRejected("points redemption is not available: no member balance is known to this store")

    now = utcnow()
    lines: list[dict[str, Any]] = []
    currencies: set[str] = set()
    total = Decimal(0)
    for i, line in enumerate(sale.lines):
        product = catalog.lookup(tx.conn, line.code)
        if product is None:
            raise SaleRejected(f"lines[{i}]: unknown code {line.code!r}")
        unit = product.unit_price(now)
        amount = unit * line.qty
        total += amount
        currencies.add(product.currency)
        lines.append({"sku": product.sku, "name": product.name, "qty": line.qty,
                      "unit_price": _money(unit), "amount": _money(amount)})
        tx.execute("UPDATE products SET stock_store = stock_store - ? WHERE sku = ?", (line.qty, product.sku))
    if len(currencies) > 1:
        raise SaleRejected(f"lines are priced in several currencies: {', '.join(sorted(currencies))}")

    # Time-ordered, so the sale id index grows at its right edge.
    sale_id = uuid7()
    points_earned = int(total.to_integral_value(ROUND_FLOOR)) if sale.member_id else 0
    data = {
        "sale_id": str(sale_id),
        "client_sale_id": key,
        "store": store_id,
        "client": client,
        "lines": [{k: ln[k] for k in ("sku", "qty", "unit_price")} for ln in lines],
        "total": _money(total),
        "currency": currencies.pop(),
        "member_id": sale.member_id,
        "points_earned": points_earned,
        "points_redeemed": sale.points_redeemed,
        "payment": sale.payment.model_dump(),
    }
    event = tx.emit("retail.sale.completed", data)
    body = codec.pack({"event": data, "names": [ln["name"] for ln in lines], "created_at": now.isoformat()})
    tx.execute(
        "INSERT INTO sales (seq, sale_id, client_sale_id, request_hash, body) VALUES (?, ?, ?, ?, ?)",
        (event.seq, sale_id.bytes, sale.client_sale_id.bytes, fingerprint, body),
    )
    return sale_view(event.seq, body), False
