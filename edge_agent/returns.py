"""Returns: of a sale made in this store, or of an online order.

``POST /v1/returns`` names what is returned by the sale (its id, or the
receipt's barcode as scanned) or by the online order number, and the lines
(a barcode or SKU and a quantity). Everything is decided inside one
``Store.write``, so two returns of the same line cannot both pass:

- **A store sale**: each line must be of the sale, at most what was sold
  minus what earlier returns took back. The refund is the sale's own money,
  never a price from the client: the share of what was paid (after points)
  that the returned lines are of the sale's lines, computed cumulatively so
  that returning everything refunds exactly what was paid. Points earned
  are taken back and points redeemed given back in the same proportion.
  The goods go back into store stock (``retail.stock.adjusted``).
- **An online order the hub sent** (``orders``, a pickup order): it must be
  collected; lines are capped like a sale's. The store knows no online
  prices: the hub refunds the original payment (``refund.method
  "original"``, ``total`` null). Restocked at once.
- **An online order this store never saw** (delivered to the home): accepted
  as ``pending`` with the lines checked against the catalog only, and not
  restocked. The hub's verdict (``retail.return.verdict`` on
  ``hub/{store}/returns``) approves it (restocked then) or rejects it (the
  goods go back to the customer); associates see it on the feed.

A return is stored once, like a sale: its row in ``returns`` holds its
``retail.return.accepted`` event's data, which the outbox reads from there
(store/outbox.py RECORDS). ``client_return_id`` is the idempotency key: the
same key with the same body returns the stored return, with another body 409.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from drivers.printer.documents import sale_id_from_barcode
from drivers.scanner.protocol import CHAIN_FORMS, CodeKind
from edge_agent import catalog, loyalty, sales, stock
from edge_agent.errors import Conflict, Invalid, NotFound
from edge_agent.store import Tx, codec
from edge_agent.store.db import uuid7
from edge_core.bus import utcnow

RETURN_ACCEPTED = "retail.return.accepted"
# The chain's receipt code prefix, from the one table of its code formats.
RECEIPT_PREFIX = next(f.prefix for f in CHAIN_FORMS if f.kind is CodeKind.RECEIPT)


class ReturnError(Invalid):
    """A return that cannot be taken as asked."""


class ReturnNotFound(NotFound, ReturnError):
    """The sale or order it returns is not in this store."""


class ReturnConflict(Conflict, ReturnError):
    """An idempotency key reused, or an order that was never collected."""


class ReturnLineIn(BaseModel):
    """One returned line: a barcode or SKU and a whole quantity."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    qty: StrictInt = Field(ge=1, le=9999)


class Refund(BaseModel):
    """How the money goes back: what the payment terminal did (the agent moves none)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["cash", "card", "qr", "points", "original"]
    reference: str | None = Field(default=None, max_length=128,
                                  description="the terminal's reference or the card's last four; never a card number")

    @field_validator("reference")
    @classmethod
    def _no_card(cls, value: str | None) -> str | None:
        return sales.no_card_number(value)


class ReturnIn(BaseModel):
    """Body of ``POST /v1/returns``: ``sale`` or ``order_id``, and the lines."""

    model_config = ConfigDict(extra="forbid")

    client_return_id: uuid.UUID
    sale: str | None = Field(default=None, min_length=1, max_length=80,
                             description="the sale id, or its receipt's barcode as scanned (40 digits or RS1:<id>)")
    order_id: str | None = Field(default=None, min_length=1, max_length=64, description="an online order number")
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)
    refund: Refund | None = Field(default=None, description="default: the sale's payment method; online: original")
    reason: str | None = Field(default=None, max_length=300)

    @model_validator(mode="after")
    def _one_source(self) -> "ReturnIn":
        if (self.sale is None) == (self.order_id is None):
            raise ValueError("give either sale (a store sale's id or receipt barcode) or order_id (an online order)")
        return self

    def fingerprint(self) -> bytes:
        """Hash of the body, to tell a retry from a different return with a reused key."""
        return hashlib.sha256(self.model_dump_json().encode()).digest()[:16]


def sale_id_of(text: str) -> uuid.UUID | None:
    """The sale a sale id or a scanned receipt barcode names (None if it names none)."""
    value = text.strip()
    if value.upper().startswith(RECEIPT_PREFIX):
        value = value[len(RECEIPT_PREFIX):]
    try:
        return uuid.UUID(sale_id_from_barcode(value))
    except ValueError:
        return None


@dataclass
class _Source:
    """What is being returned from: a sale or an order, what it holds and what went back already."""

    sold: dict[str, int]
    prices: dict[str, Decimal]
    names: dict[str, str]
    returned: Counter[str]
    label: str


def _returned(tx: Tx, where: str, key: Any) -> Counter[str]:
    """Units per SKU that earlier returns (not rejected ones) took back."""
    out: Counter[str] = Counter()
    for (body,) in tx.execute(f"SELECT body FROM returns WHERE {where} = ? AND state != 'rejected'", (key,)):
        for line in codec.unpack(body)["event"]["lines"]:
            out[line["sku"]] += line["qty"]
    return out


def _skus(tx: Tx, lines: list[ReturnLineIn], known: dict[str, Any] | None) -> Counter[str]:
    """The returned units per SKU; a code is a SKU of ``known`` or a barcode (or SKU) of the catalog."""
    want: Counter[str] = Counter()
    for i, line in enumerate(lines):
        sku = line.code if known is not None and line.code in known else None
        if sku is None:
            product = catalog.lookup(tx.conn, line.code)
            sku = product.sku if product is not None else None
        if sku is None:
            raise ReturnError(f"lines[{i}]: unknown code {line.code!r}")
        if known is not None and sku not in known:
            raise ReturnError(f"lines[{i}]: {line.code!r} ({sku}) is not part of it")
        want[sku] += line.qty
    return want


def _check_left(source: _Source, want: Counter[str]) -> None:
    for sku, qty in want.items():
        left = source.sold[sku] - source.returned[sku]
        if qty > left:
            done = source.returned[sku]
            raise ReturnError(f"{sku}: {qty} to return, but {source.label} had {source.sold[sku]} and {done} "
                              f"{'was' if done == 1 else 'were'} returned already, so at most {left} can be")


def record(tx: Tx, body: ReturnIn, client: str, store_id: str,
           changes: list[stock.StockChange | None] | None = None) -> tuple[dict[str, Any], bool]:
    """Check and store a return; (the return, True if it was a replay). Stock changes go to ``changes``."""
    fingerprint = body.fingerprint()
    row = tx.execute("SELECT request_hash, seq, body, state FROM returns WHERE client_return_id = ?",
                     (body.client_return_id.bytes,)).fetchone()
    if row is not None:
        if row[0] != fingerprint:
            raise ReturnConflict(f"client_return_id {body.client_return_id} was already used for a different return")
        return return_view(row[1], row[2], row[3]), True
    changes = [] if changes is None else changes
    if body.sale is not None:
        return _of_sale(tx, body, body.sale, client, store_id, fingerprint, changes), False
    assert body.order_id is not None
    return _of_order(tx, body, body.order_id, client, store_id, fingerprint, changes), False


def _of_sale(tx: Tx, body: ReturnIn, ref: str, client: str, store_id: str, fingerprint: bytes,
             changes: list[stock.StockChange | None]) -> dict[str, Any]:
    sale_id = sale_id_of(ref)
    if sale_id is None:
        raise ReturnError(f"sale: {ref[:80]!r} is neither a sale id nor a receipt barcode")
    row = tx.execute("SELECT seq, body FROM sales WHERE sale_id = ?", (sale_id.bytes,)).fetchone()
    if row is None:
        raise ReturnNotFound(f"no sale {sale_id} in this store")
    sale_seq, stored = row[0], codec.unpack(row[1])
    sale = stored["event"]
    source = _Source(Counter(), {}, {}, _returned(tx, "sale_seq", sale_seq), f"sale {sale_id}")
    for line, name in zip(sale["lines"], stored["names"], strict=True):
        source.sold[line["sku"]] += line["qty"]
        source.prices[line["sku"]] = Decimal(line["unit_price"])  # one price per SKU: priced at one moment
        source.names[line["sku"]] = name
    want = _skus(tx, body.lines, source.sold)
    _check_left(source, want)

    # Shares of the sale's lines: before this return, and with it.
    whole = sum((source.prices[s] * q for s, q in source.sold.items()), Decimal(0))
    before = sum((source.prices[s] * q for s, q in source.returned.items()), Decimal(0))
    after = before + sum((source.prices[s] * q for s, q in want.items()), Decimal(0))
    paid = Decimal(sale["total"])
    refund = reversed_ = restored = 0
    if whole > 0:
        refund = loyalty.refund_between(paid, before, after, whole)
        reversed_ = loyalty.points_between(sale["points_earned"], before, after, whole)
        restored = loyalty.points_between(sale["points_redeemed"], before, after, whole)
    member = sale.get("member_id")
    if member:
        loyalty.reverse(tx.conn, member, reversed_, stored["created_at"])
        loyalty.use(tx.conn, member, -restored)
    # A sale swept after its retention (edge_agent/privacy.py) names its member only by pseudonym: the
    # return carries that, and member_id null; the hub, which has the sale, moves the points by sale_id.
    method = body.refund or Refund(method=sale["payment"]["method"])
    data = _event(body, client, store_id, want, source, "accepted", {
        "sale_id": str(sale_id), "order_id": None, "total": str(Decimal(refund).quantize(loyalty.CENT)),
        "currency": sale["currency"], "refund": method.model_dump(), "member_id": member,
        **_alias(sale.get("member_pseudonym")), "points_reversed": reversed_, "points_restored": restored})
    return _store(tx, body, data, source, want, fingerprint, "accepted", client, changes, sale_seq=sale_seq)


def _alias(pseudonym: str | None) -> dict[str, str]:
    """``member_pseudonym`` for a return of a swept sale or order; nothing otherwise (the event keeps its shape)."""
    return {"member_pseudonym": pseudonym} if pseudonym else {}


def _of_order(tx: Tx, body: ReturnIn, order_id: str, client: str, store_id: str, fingerprint: bytes,
              changes: list[stock.StockChange | None]) -> dict[str, Any]:
    row = tx.execute("SELECT lines, status, member_id, member_pseudonym FROM orders WHERE order_id = ?",
                     (order_id,)).fetchone()
    alias = None
    if row is None:
        # Never sent to this store: the hub checks it later (see the module docstring).
        want = _skus(tx, body.lines, None)
        names = {p.sku: p.name for p in catalog.products(tx.conn, want).values()}
        source = _Source(Counter(want), {}, names, Counter(), f"order {order_id}")
        state, member = "pending", None
    else:
        if row[1] != "collected":
            raise ReturnConflict(f"order {order_id} is {row[1]}, not collected: the customer never took it, "
                                 "so there is nothing to return")
        ordered: Counter[str] = Counter()
        for line in json.loads(row[0]):
            ordered[line["sku"]] += line["qty"]
        names = {p.sku: p.name for p in catalog.products(tx.conn, ordered).values()}
        source = _Source(ordered, {}, names, _returned(tx, "order_id", order_id), f"order {order_id}")
        want = _skus(tx, body.lines, source.sold)
        _check_left(source, want)
        state, member, alias = "accepted", row[2], row[3]
    method = body.refund or Refund(method="original")
    data = _event(body, client, store_id, want, source, state, {
        "sale_id": None, "order_id": order_id, "total": None, "currency": None, "refund": method.model_dump(),
        "member_id": member, **_alias(alias), "points_reversed": 0, "points_restored": 0})
    return _store(tx, body, data, source, want, fingerprint, state, client, changes, order_id=order_id)


def _event(body: ReturnIn, client: str, store_id: str, want: Counter[str], source: _Source, state: str,
           rest: dict[str, Any]) -> dict[str, Any]:
    return {
        "return_id": str(uuid7()), "client_return_id": str(body.client_return_id), "store": store_id,
        "client": client, "state": state,
        "lines": [{"sku": sku, "qty": qty,
                   "unit_price": str(source.prices[sku]) if sku in source.prices else None}
                  for sku, qty in want.items()],
        **rest, "reason": body.reason,
    }


def _store(tx: Tx, body: ReturnIn, data: dict[str, Any], source: _Source, want: Counter[str], fingerprint: bytes,
           state: str, client: str, changes: list[stock.StockChange | None], *, sale_seq: int | None = None,
           order_id: str | None = None) -> dict[str, Any]:
    event = tx.emit(RETURN_ACCEPTED, data)
    stored = codec.pack({"event": data, "names": [source.names.get(sku, "") for sku in want],
                         "created_at": utcnow().isoformat()})
    tx.execute("INSERT INTO returns (seq, return_id, client_return_id, request_hash, sale_seq, order_id, state, "
               "body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (event.seq, uuid.UUID(data["return_id"]).bytes, body.client_return_id.bytes, fingerprint, sale_seq,
                order_id, state, stored))
    if state == "accepted":
        for sku, qty in want.items():
            changes.append(stock.restock(tx, sku, qty, "return", client, {"return_id": data["return_id"]}))
    return return_view(event.seq, stored, state)


def return_view(seq: int, body: bytes, state: str) -> dict[str, Any]:
    """The return as the API returns it, from its stored row and its current state."""
    stored = codec.unpack(body)
    event = stored["event"]
    lines = []
    for line, name in zip(event["lines"], stored["names"], strict=True):
        price = line["unit_price"]
        amount = str((Decimal(price) * line["qty"]).quantize(loyalty.CENT)) if price is not None else None
        lines.append({**line, "name": name, "amount": amount})
    return {**event, "id": event["return_id"], "lines": lines, "state": state, "created_at": stored["created_at"],
            "seq": seq}


class VerdictError(ValueError):
    """A verdict that does not fit the return it names."""


def apply_verdict(tx: Tx, return_id: str, approved: bool, client: str = "hub"
                  ) -> tuple[dict[str, Any] | None, list[stock.StockChange | None]]:
    """The hub's verdict on a pending online return: approved restocks it, rejected does not.

    Returns (the return now, stock changes), or (None, []) when the verdict
    was already applied (the hub may send it twice)."""
    try:
        key = uuid.UUID(return_id).bytes
    except ValueError as err:
        raise VerdictError(f"return_id {return_id[:80]!r} is not a return id") from err
    row = tx.execute("SELECT seq, state, body FROM returns WHERE return_id = ?", (key,)).fetchone()
    if row is None:
        raise VerdictError(f"no return {return_id} in this store")
    seq, state, body = row
    wanted = "accepted" if approved else "rejected"
    if state == wanted:
        return None, []
    if state != "pending":
        raise VerdictError(f"return {return_id} is {state}; a verdict only settles a pending return")
    tx.execute("UPDATE returns SET state = ? WHERE seq = ?", (wanted, seq))
    changes: list[stock.StockChange | None] = []
    if approved:
        for line in codec.unpack(body)["event"]["lines"]:
            changes.append(stock.restock(tx, line["sku"], line["qty"], "return", client, {"return_id": return_id}))
    return return_view(seq, body, wanted), changes
