"""Pickup orders (buy online, pick up in store): what the hub sends, and their progress here.

The hub sends ``retail.order.created`` on ``hub/{store}/orders`` (parsed
by sync/downlink.py, applied by edge_agent/downlink_apply.py); each new
order is stored in ``orders`` with, in the same transaction, its pick
ticket on the printer that takes them
(``pick_tickets: true``), and goes on the associates' feed (``order.created``).

Associates move an order ``new -> picking -> ready -> collected``
(``POST /v1/orders/{id}/status``); any other move is refused (409), asking
for the status it already has changes nothing (200, ``changed: false``).
``collected`` needs the customer's pickup code (the 6 digits, or the whole
``RP1:<order>:<code>`` of the pickup QR): a wrong one is counted, and after
``MAX_CODE_ATTEMPTS`` wrong codes in a row the order takes no code for
``LOCK`` (429). The store keeps a pickup code only as its keyed hash
(store/keys.py ``code_hash``, compared in constant time) and forgets even
that at collection; no answer but the placing one shows a code (README,
"Personal data"). Each step is a ``retail.order.status`` event to the hub and an
``order.status`` on the feed; at ``collected`` the lines of a hub order
leave store stock (``retail.stock.adjusted``, reason ``pickup``): it is
picked from the shelves, and the goods stay in the store, in the pickup
area, until then. An order placed here came out of online stock when it was
placed and arrives from the chain's warehouse: its collection takes nothing
from store stock.

Orders are placed here too (``place``): the mirror's "Order online"
(``POST /v1/mirror/{device}/order``), a kiosk or an associate
(``POST /v1/orders``). Such an order is checked against the catalog's
``stock_online``, priced by the agent, given a pickup code here (the chain's
``RP1:`` pickup QR form) and stored like a hub order (status ``new``, with
its ``origin``) in one transaction with its pick ticket and its
``retail.order.placed`` event, so the hub hears of it exactly once. The
local ``stock_online`` goes down by what was ordered until the hub's next
catalog item says otherwise. When the hub answers with ``retail.order.created``
for the same ``order_id``, ``receive`` ignores it: the order, its status and
the pickup code the customer holds stay as they are. ``client_order_id`` is
the idempotency key: the same key and body return the same order, another
body 409.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drivers.printer.spool import Job
from drivers.scanner.protocol import CHAIN_FORMS, CodeKind
from edge_agent import catalog, stock
from edge_agent.errors import Conflict, Forbidden, Invalid, NotFound, TooMany
from edge_agent.store import Tx, codec, keys
from edge_agent.store.db import uuid7
from edge_core.bus import utcnow
from sync.topics import OrderCreated

ORDER_STATUS = "retail.order.status"
ORDER_PLACED = "retail.order.placed"
NEXT = {"new": "picking", "picking": "ready", "ready": "collected"}
MAX_CODE_ATTEMPTS = 5
LOCK = timedelta(minutes=15)
# The chain's pickup QR form, from the one table of its code formats.
PICKUP_FORM = next(f for f in CHAIN_FORMS if f.kind is CodeKind.PICKUP)
PICKUP_PREFIX = PICKUP_FORM.prefix

Status = Literal["new", "picking", "ready", "collected"]


class OrderError(Conflict):
    """An order or a status change the store's state does not allow."""


class OrderNotFound(NotFound, OrderError):
    """No order by that number in this store."""


class CodeRequired(Invalid, OrderError):
    """``collected`` without the customer's pickup code."""


class CodeLocked(TooMany, OrderError):
    """Too many wrong pickup codes: the order takes none until ``retry_after`` seconds have passed."""


class WrongCode(Forbidden, OrderError):
    """A wrong pickup code, counted on disk before it is refused."""


class OrderRejected(Invalid, OrderError):
    """An order that cannot be priced: an unknown product, several currencies."""


class StatusIn(BaseModel):
    """Body of ``POST /v1/orders/{id}/status``."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["picking", "ready", "collected"]
    pickup_code: str | None = Field(default=None, min_length=1, max_length=128,
                                    description="needed for collected: the code, or the pickup QR as scanned")


@dataclass
class Outcome:
    """What a status request did; ``wrong_code`` is set (and committed) when the code was wrong."""

    order: dict[str, Any]
    changed: bool
    wrong_code: bool = False
    changes: list[stock.StockChange | None] = field(default_factory=list)
    event: dict[str, Any] | None = None


_COLUMNS = ("order_id, status, member_id, lines, ready_by, received_at, updated_at, code_attempts, locked_until, "
            "origin, member_pseudonym")


def _view(conn: Any, row: tuple, products: dict[str, catalog.Product] | None = None) -> dict[str, Any]:
    order_id, status, member_id, lines, ready_by, received_at, updated_at, attempts, locked_until, origin, alias = row
    lines = json.loads(lines)
    if products is None:
        products = catalog.products(conn, [ln["sku"] for ln in lines])
    out = []
    for ln in lines:
        p = products.get(ln["sku"])
        out.append({"sku": ln["sku"], "qty": ln["qty"], "name": p.name if p else None,
                    "stock_store": p.stock_store if p else None})
    view = {"order_id": order_id, "status": status, "member_id": member_id, "ready_by": ready_by,
            "received_at": received_at, "updated_at": updated_at, "lines": out,
            "items": sum(ln["qty"] for ln in lines), "code_attempts": attempts, "locked_until": locked_until,
            "origin": origin}
    if alias is not None:
        view["member_pseudonym"] = alias  # swept (edge_agent/privacy.py): the member id is no longer kept
    return view


def list_orders(conn: Any, status: str, limit: int) -> list[dict[str, Any]]:
    """Orders oldest first: ``open`` (not collected), ``all``, or one status."""
    where, args = {"all": ("", ()), "open": (" WHERE status != 'collected'", ())}.get(
        status, (" WHERE status = ?", (status,)))
    rows = conn.execute(f"SELECT {_COLUMNS} FROM orders{where} ORDER BY received_at, order_id LIMIT ?",
                        (*args, limit)).fetchall()
    skus = {ln["sku"] for r in rows for ln in json.loads(r[3])}
    products = catalog.products(conn, skus)
    return [_view(conn, r, products) for r in rows]


def get(conn: Any, order_id: str) -> dict[str, Any] | None:
    """One order, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else _view(conn, row)


def receive(tx: Tx, orders: list[OrderCreated], printing: Any) -> list[tuple[dict[str, Any], Job | None]]:
    """Store new orders from the hub (a known order id is ignored) and queue their pick tickets."""
    now = utcnow().isoformat()
    new = []
    for o in orders:
        lines = [ln.model_dump() for ln in o.lines]
        ready_by = o.ready_by.isoformat() if o.ready_by else None
        cur = tx.execute(
            """INSERT INTO orders (order_id, pickup_code, member_id, lines, ready_by, received_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING""",
            (o.order_id, keys.code_hash(tx.secret, o.order_id, o.pickup_code), o.member_id, json.dumps(lines),
             ready_by, now, now))
        if not cur.rowcount:
            continue
        view = get(tx.conn, o.order_id)
        assert view is not None
        job = None
        if printing is not None:
            ticket = {"order_id": o.order_id, "member_id": o.member_id,
                      "received_at": now, "ready_by": ready_by,
                      "lines": [{"sku": ln["sku"], "qty": ln["qty"], "name": ln["name"] or ""} for ln in view["lines"]]}
            job = printing.queue_pick_ticket(tx, ticket)
        new.append((view, job))
    return new


def _code_matches(key: bytes, given: str, order_id: str, stored: str) -> bool:
    """``given`` (the code, or the pickup QR as scanned) against the stored hash, in constant time."""
    value = given.strip()
    if value.upper().startswith(PICKUP_PREFIX):
        scanned_order, _, value = value[len(PICKUP_PREFIX):].rpartition(":")
        if scanned_order != order_id:
            return False
    return bool(stored) and keys.code_matches(key, order_id, value, stored)


def set_status(tx: Tx, order_id: str, body: StatusIn, client: str) -> Outcome:
    """Move the order to ``body.status``; OrderError when that move is not allowed."""
    row = tx.execute("SELECT status, pickup_code, code_attempts, locked_until, lines, origin FROM orders "
                     "WHERE order_id = ?", (order_id,)).fetchone()
    if row is None:
        raise OrderNotFound(f"no pickup order {order_id!r} in this store")
    current, code, attempts, locked_until, lines, origin = row
    target = body.status
    if target == current:
        return Outcome(_must_get(tx, order_id), changed=False)
    if NEXT.get(current) != target:
        after = f"it can only go to {NEXT[current]}" if current in NEXT else "nothing follows"
        raise OrderError(f"order {order_id} is {current}: it cannot go to {target}; {after}")
    now = utcnow()
    if target == "collected":
        if locked_until is not None and now < datetime.fromisoformat(locked_until):
            err = CodeLocked(f"order {order_id} took {MAX_CODE_ATTEMPTS} wrong pickup codes; it takes none "
                             f"until {locked_until}: check the customer's order confirmation")
            err.retry_after = max(1, int((datetime.fromisoformat(locked_until) - now).total_seconds()) + 1)
            raise err
        if body.pickup_code is None:
            raise CodeRequired(f"order {order_id}: collected needs the customer's pickup_code")
        if not _code_matches(tx.secret, body.pickup_code, order_id, code):
            attempts += 1
            locked = (now + LOCK).isoformat() if attempts >= MAX_CODE_ATTEMPTS else None
            tx.execute("UPDATE orders SET code_attempts = ?, locked_until = ? WHERE order_id = ?",
                       (0 if locked else attempts, locked, order_id))
            view = _must_get(tx, order_id)
            view["wrong_attempts"] = attempts
            return Outcome(view, changed=False, wrong_code=True)
    data = {"order_id": order_id, "status": target, "previous": current, "client": client, "at": now.isoformat()}
    event = tx.emit(ORDER_STATUS, data)
    # status_seq: a collected order is swept once this event is acknowledged (edge_agent/privacy.py); its
    # pickup code has done its work and goes now.
    tx.execute("UPDATE orders SET status = ?, updated_at = ?, code_attempts = 0, locked_until = NULL, status_seq = ?, "
               "pickup_code = CASE WHEN ? = 'collected' THEN '' ELSE pickup_code END WHERE order_id = ?",
               (target, now.isoformat(), event.seq, target, order_id))
    changes = []
    if target == "collected" and origin == "hub":  # a placed order's goods never were store stock
        for line in json.loads(lines):
            changes.append(stock.restock(tx, line["sku"], -line["qty"], "pickup", client, {"order_id": order_id}))
    return Outcome(_must_get(tx, order_id), changed=True, changes=changes, event=data)


def _must_get(tx: Tx, order_id: str) -> dict[str, Any]:
    view = get(tx.conn, order_id)
    assert view is not None
    return view


# Orders placed in this store ------------------------------------------------

class OrderIn(BaseModel):
    """Body of ``POST /v1/orders`` and ``POST /v1/mirror/{device}/order``: a pickup order from online stock."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: uuid.UUID = Field(description="idempotency key: the same key again returns the same order")
    lines: list[catalog.ItemIn] = Field(min_length=1, max_length=100)
    member_id: str | None = Field(default=None, min_length=1, max_length=64)


@dataclass(frozen=True)
class Placement:
    """Who places an order, and from where: what its event says besides the order."""

    origin: str                 # "mirror", or the placing client's role: "kiosk", "associate", "admin"
    station: str                # the api client that placed it
    store_id: str
    store_name: str
    device: str | None = None   # the mirror's device id, for "mirror"

    def fingerprint(self, body: OrderIn) -> bytes:
        """Hash of the body and where it was placed, to tell a retry from another order with a reused key."""
        text = "\0".join((body.model_dump_json(), self.origin, self.station, self.device or ""))
        return hashlib.sha256(text.encode()).digest()[:16]


@dataclass
class Placed:
    """What ``place`` did: the order as its client sees it, and for a new one its feed view and pick ticket."""

    order: dict[str, Any]
    replayed: bool
    feed: dict[str, Any] | None = None
    job: Job | None = None


def pickup_code(order_id: str) -> tuple[str, str]:
    """A new 6-digit pickup code for ``order_id`` and its pickup QR text (``RP1:<order>:<code>``)."""
    code = f"{secrets.randbelow(10**6):06d}"
    if not PICKUP_FORM.pattern.fullmatch(f"{order_id}:{code}"):
        raise ValueError(f"order id {order_id!r} does not fit the chain's pickup QR form ({PICKUP_FORM.what})")
    return code, f"{PICKUP_PREFIX}{order_id}:{code}"


def _priced(tx: Tx, body: OrderIn) -> tuple[list[dict[str, Any]], Decimal, str]:
    """The order's lines merged by SKU, each priced now and checked against online stock; (lines, total, currency)."""
    now = utcnow()
    wanted: dict[str, int] = {}
    found: dict[str, catalog.Product] = {}
    for i, item in enumerate(body.lines):
        product = catalog.find(tx.conn, item)
        if product is None:
            what = "SKU" if item.sku is not None else "barcode or SKU"
            raise OrderRejected(f"lines[{i}]: no product with {what} {item.ref!r} in this store's catalog")
        found[product.sku] = product
        wanted[product.sku] = wanted.get(product.sku, 0) + item.qty
    short = [f"only {max(found[sku].stock_online, 0)} of {sku} online, the order asks for {qty}"
             for sku, qty in wanted.items() if qty > found[sku].stock_online]
    if short:
        raise OrderError("; ".join(short) + ": order fewer, or take them from the store")
    currencies = {found[sku].currency for sku in wanted}
    if len(currencies) > 1:
        raise OrderRejected(f"lines are priced in several currencies: {', '.join(sorted(currencies))}")
    lines = []
    total = Decimal(0)
    for sku, qty in wanted.items():
        unit = found[sku].unit_price(now)
        total += unit * qty
        lines.append({"sku": sku, "name": found[sku].name, "qty": qty, "unit_price": catalog.money(unit),
                      "amount": catalog.money(unit * qty)})
    return lines, total, currencies.pop()


def place(tx: Tx, body: OrderIn, at: Placement, printing: Any) -> Placed:
    """Place a pickup order from online stock: the order row, its pick ticket and ``retail.order.placed``, at once.

    OrderError (409) for a reused ``client_order_id`` with another body or
    more than online stock; OrderRejected (422) for an unknown product.
    """
    fingerprint = at.fingerprint(body)
    row = tx.execute("SELECT request_hash, body, order_id FROM placed_orders WHERE client_order_id = ?",
                     (body.client_order_id.bytes,)).fetchone()
    if row is not None:
        if row[0] != fingerprint:
            raise OrderError(f"client_order_id {body.client_order_id} was already used for a different order")
        order = codec.unpack(row[1])
        status = tx.execute("SELECT status FROM orders WHERE order_id = ?", (row[2],)).fetchone()
        return Placed({**order, "status": status[0] if status else order["status"]}, replayed=True)
    lines, total, currency = _priced(tx, body)
    order_id = str(uuid7())
    code, qr = pickup_code(order_id)
    now = utcnow().isoformat()
    data = {
        "order_id": order_id, "client_order_id": str(body.client_order_id), "pickup_code": code,
        "member_id": body.member_id,
        "lines": [{k: ln[k] for k in ("sku", "qty", "unit_price")} for ln in lines],
        "total": catalog.money(total), "currency": currency, "origin": at.origin, "store": at.store_id,
        "station": at.station, "device": at.device, "placed_at": now,
    }
    tx.execute("""INSERT INTO orders (order_id, pickup_code, member_id, lines, ready_by, received_at, updated_at, origin)
                  VALUES (?, ?, ?, ?, NULL, ?, ?, ?)""",
               (order_id, keys.code_hash(tx.secret, order_id, code), body.member_id, json.dumps(data["lines"]), now, now,
                at.origin))
    for ln in lines:
        tx.execute("UPDATE products SET stock_online = max(stock_online - ?, 0) WHERE sku = ?", (ln["qty"], ln["sku"]))
    event = tx.emit(ORDER_PLACED, data)
    order = {**data, "pickup_qr": qr, "status": "new", "lines": lines, "items": sum(ln["qty"] for ln in lines),
             "store_name": at.store_name, "seq": event.seq}
    tx.execute("INSERT INTO placed_orders (order_id, client_order_id, request_hash, seq, body) VALUES (?, ?, ?, ?, ?)",
               (order_id, body.client_order_id.bytes, fingerprint, event.seq, codec.pack(order)))
    feed = _must_get(tx, order_id)
    job = None
    if printing is not None:
        ticket = {"order_id": order_id, "member_id": body.member_id, "received_at": now,
                  "ready_by": None, "lines": [{"sku": ln["sku"], "qty": ln["qty"], "name": ln["name"]} for ln in lines]}
        job = printing.queue_pick_ticket(tx, ticket)
    return Placed(order, replayed=False, feed=feed, job=job)
