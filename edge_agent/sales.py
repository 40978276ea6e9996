"""Checkout: price a sale from the local catalog and record it durably.

The sale row, its stock decrements and its ``retail.sale.completed`` outbox
event commit in one transaction (one ``Store.write``); the client hears 201
only after that commit is on disk. The event's data is stored once, in the
sale's row (``{"event": data, "names": [...], "created_at": ...}``, packed
by store.codec); the outbox reads it from there (store/outbox.py RECORDS). ``client_sale_id`` is the idempotency
key: the same key with the same body returns the stored sale, with another
body it is a conflict.

Points (edge_agent/loyalty.py): ``points_redeemed`` are checked against the
member's card minus what this store already used from it, and their value
comes off the amount to pay; ``total`` is what was paid in money, and a sale
with points also carries ``subtotal`` (the lines) and ``points_value`` (only
then: every byte of a sale counts offline). Points earned follow the
``loyalty:`` rule on the money paid.

``lookup`` reads a sale back for a return: each line with what earlier
returns took (``returned``), what is left (``returnable``) and what
returning one unit of it now gives back, computed as edge_agent/returns.py
computes a refund (the share of what was paid in money, after points, and
of the points redeemed and earned, cumulative over the sale's returns):
``refund_unit`` (money), ``points_restored_unit`` (redeemed points back to
the card) and ``points_reversed_unit`` (earned points taken back); null
when nothing is left to return. Several units at once refund a little
differently (each return rounds once, to the cent and down to the point):
``refund_basis`` gives what returns.py computes that from (``paid``, the
``lines_value`` of the sale's lines, the ``returned_value`` of earlier
returns, the points redeemed and earned), so that a screen says to the cent
what a choice of lines refunds.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from edge_agent import catalog, loyalty, stock
from edge_agent.config import LoyaltyConfig
from edge_agent.errors import Conflict, Invalid, NotFound
from edge_agent.store import Tx, codec
from edge_agent.store.db import uuid7
from edge_core.bus import utcnow

MAX_LINES = 10_000


class SaleConflict(Conflict):
    """The client_sale_id was used before with a different body."""


class SaleRejected(Invalid):
    """The sale cannot be priced: unknown code, mixed currencies, bad points."""


class SaleNotFound(NotFound):
    """No sale of this store by that id or receipt barcode."""


class SaleLineIn(BaseModel):
    """One line as the kiosk sends it: a barcode or SKU and a whole quantity."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    qty: StrictInt = Field(ge=1, le=9999)


# A run of digits, spaces and dashes: a card number is written "4111 1111-1111 1111" too.
_DIGIT_RUNS = re.compile(r"[0-9][0-9 -]*")


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def no_card_number(reference: str | None) -> str | None:
    """``reference`` unless it holds a card number (13 to 19 digits, Luhn-valid, spaces and dashes allowed).

    A full card number (PAN) must not be stored nor sent to the hub (PCI DSS): the
    store keeps what the terminal printed, its reference or the card's last four.
    """
    if reference is None:
        return None
    for run in _DIGIT_RUNS.findall(reference):
        digits = run.replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and _luhn(digits):
            raise ValueError("this looks like a card number; send only its last four digits or the payment "
                             "terminal's reference, never the whole card number")
    return reference


class Payment(BaseModel):
    """What the payment terminal returned; the agent records it, moves no money."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["cash", "card", "qr", "points"]
    reference: str | None = Field(default=None, max_length=128,
                                  description="the terminal's reference or the card's last four; never a card number")

    @field_validator("reference")
    @classmethod
    def _no_card(cls, value: str | None) -> str | None:
        return no_card_number(value)


class SaleIn(BaseModel):
    """Body of ``POST /v1/sales``."""

    model_config = ConfigDict(extra="forbid")

    client_sale_id: uuid.UUID
    lines: list[SaleLineIn] = Field(min_length=1, max_length=MAX_LINES)
    member_id: str | None = Field(default=None, min_length=1, max_length=64)
    points_redeemed: StrictInt = Field(default=0, ge=0, le=100_000_000)
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


# The session member of a client that need not have one (staff, the benchmarks).
ANY_MEMBER = object()


def record(tx: Tx, sale: SaleIn, client: str, store_id: str, rule: LoyaltyConfig = LoyaltyConfig(), *,
           session_member: object = ANY_MEMBER,
           changes: list[stock.StockChange | None] | None = None) -> tuple[dict[str, Any], bool]:
    """Price and store ``sale``; returns (the sale, True if it was a replay).

    ``session_member``: the member attached to a kiosk's session (None if
    none); a kiosk redeems points only for that member. The stock changes
    made are appended to ``changes`` when given (for the low-stock alert).
    """
    key = str(sale.client_sale_id)
    fingerprint = sale.fingerprint()
    row = tx.execute("SELECT request_hash, seq, body FROM sales WHERE client_sale_id = ?",
                     (sale.client_sale_id.bytes,)).fetchone()
    if row is not None:
        if row[0] != fingerprint:
            raise SaleConflict(f"client_sale_id {key} was already used for a different sale")
        return sale_view(row[1], row[2]), True
    if sale.points_redeemed and not sale.member_id:
        raise SaleRejected("points_redeemed needs member_id: points are redeemed from a member's card")
    if sale.points_redeemed and session_member is not ANY_MEMBER and session_member != sale.member_id:
        raise SaleRejected(f"a kiosk redeems points only for the member whose card was scanned at it; "
                           f"member {sale.member_id} is not attached to this kiosk's session")

    now = utcnow()
    lines: list[dict[str, Any]] = []
    currencies: set[str] = set()
    total = Decimal(0)
    seen: dict[str, catalog.Product | None] = {}  # a long sale repeats its codes
    for i, line in enumerate(sale.lines):
        if line.code not in seen:
            seen[line.code] = catalog.lookup(tx.conn, line.code)
        product = seen[line.code]
        if product is None:
            raise SaleRejected(f"lines[{i}]: unknown code {line.code!r}")
        unit = product.unit_price(now)
        amount = unit * line.qty
        total += amount
        currencies.add(product.currency)
        lines.append({"sku": product.sku, "name": product.name, "qty": line.qty,
                      "unit_price": _money(unit), "amount": _money(amount)})
        moved = stock.change(tx, product.sku, -line.qty)
        if changes is not None:
            changes.append(moved)
    if len(currencies) > 1:
        raise SaleRejected(f"lines are priced in several currencies: {', '.join(sorted(currencies))}")
    currency = currencies.pop()

    points_value = _redeem(tx, sale, total, currency, rule, now) if sale.points_redeemed else Decimal(0)
    paid = total - points_value
    if sale.payment.method == "points" and paid > 0:
        raise SaleRejected(f"payment method 'points' needs points to cover the whole total; {_money(paid)} "
                           f"{currency} is left to pay: pay it by cash, card or qr")

    # Time-ordered, so the sale id index grows at its right edge.
    sale_id = uuid7()
    points_earned = loyalty.earned(paid, rule) if sale.member_id else 0
    data = {
        "sale_id": str(sale_id),
        "client_sale_id": key,
        "store": store_id,
        "client": client,
        "lines": [{k: ln[k] for k in ("sku", "qty", "unit_price")} for ln in lines],
        "total": _money(paid),
        "currency": currency,
        "member_id": sale.member_id,
        "points_earned": points_earned,
        "points_redeemed": sale.points_redeemed,
        "payment": sale.payment.model_dump(),
    }
    if sale.points_redeemed:
        data["subtotal"] = _money(total)
        data["points_value"] = _money(points_value)
    if points_earned:
        loyalty.earn(tx.conn, sale.member_id, points_earned)  # not on the card yet: for the balance printed
    event = tx.emit("retail.sale.completed", data)
    created_at = now.isoformat()
    body = codec.pack({"event": data, "names": [ln["name"] for ln in lines], "created_at": created_at})
    tx.execute(
        "INSERT INTO sales (seq, sale_id, client_sale_id, request_hash, body) VALUES (?, ?, ?, ?, ?)",
        (event.seq, sale_id.bytes, sale.client_sale_id.bytes, fingerprint, body),
    )
    # What sale_view(event.seq, body) gives, without unpacking what was just packed.
    view_lines = [{"sku": ln["sku"], "qty": ln["qty"], "unit_price": ln["unit_price"], "name": ln["name"],
                   "amount": ln["amount"]} for ln in lines]
    return {**data, "id": data["sale_id"], "lines": view_lines, "created_at": created_at, "seq": event.seq}, False


def _redeem(tx: Tx, sale: SaleIn, total: Decimal, currency: str, rule: LoyaltyConfig, now: Any) -> Decimal:
    """Check ``points_redeemed`` against the member's card, count them as used; their value."""
    points, member = sale.points_redeemed, sale.member_id
    assert member is not None
    balance = loyalty.balance(tx.conn, member, now)
    if balance is None:
        raise SaleRejected(f"member {member} has no card in this store, so its points balance is unknown and "
                           "no points can be redeemed; the hub sends the card when the member arrives")
    if points > balance.available:
        raise SaleRejected(f"points_redeemed {points} is more than member {member}'s balance of "
                           f"{balance.available} points")
    value = loyalty.redemption_value(points, rule)
    if value > total:
        most = loyalty.floor_int(total / rule.point_value)
        raise SaleRejected(f"{points} points are worth {_money(value)} {currency}, more than the total "
                           f"{_money(total)}; redeem at most {most} points")
    loyalty.use(tx.conn, member, points)
    return value


def _one_back(event: dict[str, Any], whole: Decimal, before: Decimal, price: Decimal | None) -> dict[str, Any]:
    """What returning one unit priced ``price`` gives back now (nulls when ``price`` is None), as returns.py
    computes it: shares of the sale's money paid and of its points, cumulative from ``before`` of ``whole``."""
    if price is None:
        return {"refund_unit": None, "points_restored_unit": None, "points_reversed_unit": None}
    after = before + price
    refund = loyalty.refund_between(Decimal(event["total"]), before, after, whole)
    return {"refund_unit": str(refund.quantize(loyalty.CENT)),
            "points_restored_unit": loyalty.points_between(event.get("points_redeemed") or 0, before, after, whole),
            "points_reversed_unit": loyalty.points_between(event.get("points_earned") or 0, before, after, whole)}


def lookup(conn: sqlite3.Connection, sale_id: uuid.UUID | None, ref: str = "") -> dict[str, Any]:
    """The sale ``sale_id`` for a return: its lines with ``returned`` and ``returnable``; SaleNotFound if none.

    ``ref`` is what the client named (for the message) when it was no sale id at all (``sale_id`` None).
    Returned units are those of every return of the sale not rejected, as
    ``POST /v1/returns`` counts them; a SKU sold on two lines fills the first first. A return's id (a
    return slip's barcode) is SaleNotFound that says so.
    """
    if sale_id is None:
        raise SaleNotFound(f"{ref[:80]!r} is neither a sale id nor a receipt barcode (40 digits or RS1:<id>)")
    row = conn.execute("SELECT seq, body FROM sales WHERE sale_id = ?", (sale_id.bytes,)).fetchone()
    if row is None:
        # A return slip's barcode carries the return's id as a receipt's carries the sale's: say which it is.
        slip = conn.execute("SELECT s.sale_id FROM returns r LEFT JOIN sales s ON s.seq = r.sale_seq "
                            "WHERE r.return_id = ?", (sale_id.bytes,)).fetchone()
        if slip is not None:
            of = f" (a return of sale {uuid.UUID(bytes=slip[0])})" if slip[0] is not None else ""
            raise SaleNotFound(f"this is a return slip{of}, not a sale: scan the barcode on the sale's receipt")
        raise SaleNotFound(f"no sale {sale_id} in this store")
    seq, stored = row[0], codec.unpack(row[1])
    event = stored["event"]
    back: Counter[str] = Counter()
    for (body,) in conn.execute("SELECT body FROM returns WHERE sale_seq = ? AND state != 'rejected'", (seq,)):
        for line in codec.unpack(body)["event"]["lines"]:
            back[line["sku"]] += line["qty"]
    # As returns.py prices a return: each SKU at its one price, shares of the whole before and with a return.
    prices = {line["sku"]: Decimal(line["unit_price"]) for line in event["lines"]}
    whole = sum((prices[line["sku"]] * line["qty"] for line in event["lines"]), Decimal(0))
    before = sum((prices[sku] * qty for sku, qty in back.items() if sku in prices), Decimal(0))
    lines = []
    for line, name in zip(event["lines"], stored["names"], strict=True):
        returned = min(line["qty"], back[line["sku"]])
        back[line["sku"]] -= returned
        returnable = line["qty"] - returned
        lines.append({"sku": line["sku"], "name": name, "qty": line["qty"], "unit_price": line["unit_price"],
                      "amount": _money(Decimal(line["unit_price"]) * line["qty"]), "returned": returned,
                      "returnable": returnable,
                      **_one_back(event, whole, before, prices[line["sku"]] if returnable and whole > 0 else None)})
    return {"sale_id": event["sale_id"], "time": stored["created_at"], "total": event["total"],
            "currency": event["currency"], "payment": {"method": event["payment"]["method"]},
            "member_id": event.get("member_id"), "lines": lines,
            "refund_basis": {"paid": event["total"], "lines_value": _money(whole), "returned_value": _money(before),
                             "points_redeemed": event.get("points_redeemed") or 0,
                             "points_earned": event.get("points_earned") or 0}}
