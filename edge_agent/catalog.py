"""The local catalog: products by SKU and barcode, prices as decimal strings.

Items arrive from the hub (``retail.catalog.updated``) or, for the demo and
for stores setting up, from a JSON file (``edge-agent catalog-import``). An
item older than the stored ``version`` for its SKU is ignored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from edge_core.bus import utcnow

# The hub's catalog item and its promotion are wire payloads (sync/topics.py); re-exported here.
from sync.topics import CatalogItem as CatalogItem
from sync.topics import Promo as Promo

Money = Decimal


class Product(BaseModel):
    """A product as the local API shows it."""

    sku: str
    barcodes: list[str]
    name: str
    price: Money
    currency: str
    promo: Promo | None
    stock_store: int
    stock_online: int
    rating: float | None
    reviews: int
    version: int

    def unit_price(self, at: datetime | None = None) -> Money:
        """What the checkout charges now: the promo price while it runs."""
        at = at or utcnow()
        if self.promo is not None and self.promo.active(at) and self.promo.price < self.price:
            return self.promo.price
        return self.price


def money(value: Decimal) -> str:
    """An amount as the API and the events write it: a decimal string with two places."""
    return str(value.quantize(Decimal("0.01")))


class ItemIn(BaseModel):
    """A product and a quantity as a client names them: by ``code`` (a barcode or SKU, as scanned) or by ``sku``."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(default=None, min_length=1, max_length=64, description="a barcode or SKU")
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    qty: StrictInt = Field(default=1, ge=1, le=9999)

    @model_validator(mode="after")
    def _one_name(self) -> "ItemIn":
        if self.code is None and self.sku is None:
            raise ValueError("name the product: give code (a barcode or SKU) or sku")
        if self.code is not None and self.sku is not None:
            raise ValueError("give code (a barcode or SKU) or sku, not both")
        return self

    @property
    def ref(self) -> str:
        """What the client named the product by, for messages."""
        return self.code or self.sku or ""


def find(conn: sqlite3.Connection, item: ItemIn) -> Product | None:
    """The product ``item`` names: by SKU only when it gave ``sku``, else by barcode or SKU."""
    if item.sku is not None:
        return products(conn, [item.sku]).get(item.sku)
    return lookup(conn, item.code or "")


def upsert(conn: sqlite3.Connection, items: list[CatalogItem]) -> tuple[int, int]:
    """Store items not older than what is stored; returns (applied, ignored as stale).

    An item's ``stock_store`` (local files only) seeds the count of a product
    the store does not have yet. A product it has keeps its count: importing
    the same file again (every ``make run`` does) must not undo the day's
    sales silently, without an event the hub would hear of."""
    applied = stale = 0
    for item in items:
        row = conn.execute("SELECT version FROM products WHERE sku = ?", (item.sku,)).fetchone()
        if row is not None and item.version < row[0]:
            stale += 1
            continue
        promo = item.promo.model_dump_json() if item.promo else None
        conn.execute(
            """INSERT INTO products (sku, name, price, currency, promo, rating, reviews, stock_online, version,
                                     stock_store)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, coalesce(?, 0))
               ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price = excluded.price,
                   currency = excluded.currency, promo = excluded.promo, rating = excluded.rating,
                   reviews = excluded.reviews, stock_online = excluded.stock_online, version = excluded.version,
                   stock_store = products.stock_store""",
            (item.sku, item.name, str(item.price), item.currency, promo, item.rating, item.reviews,
             item.stock_online, item.version, item.stock_store),
        )
        conn.execute("DELETE FROM barcodes WHERE sku = ?", (item.sku,))
        conn.executemany(
            "INSERT INTO barcodes (code, sku) VALUES (?, ?) ON CONFLICT (code) DO UPDATE SET sku = excluded.sku",
            [(code, item.sku) for code in item.barcodes],
        )
        applied += 1
    return applied, stale


_SELECT = """SELECT sku, name, price, currency, promo, rating, reviews, stock_store, stock_online, version,
                    (SELECT json_group_array(code) FROM barcodes b WHERE b.sku = p.sku)
             FROM products p"""


def _product(row: tuple[Any, ...]) -> Product:
    sku, name, price, currency, promo, rating, reviews, stock_store, stock_online, version, codes = row
    return Product(
        sku=sku, barcodes=json.loads(codes), name=name, price=Decimal(price), currency=currency,
        promo=Promo.model_validate_json(promo) if promo else None, stock_store=stock_store,
        stock_online=stock_online, rating=rating, reviews=reviews, version=version,
    )


def lookup(conn: sqlite3.Connection, code: str) -> Product | None:
    """A product by barcode, or else by SKU."""
    row = conn.execute(_SELECT + " WHERE sku = (SELECT sku FROM barcodes WHERE code = ?)", (code,)).fetchone()
    if row is None:
        row = conn.execute(_SELECT + " WHERE sku = ?", (code,)).fetchone()
    return _product(row) if row else None


def products(conn: sqlite3.Connection, skus: Iterable[str] | None = None, chunk: int = 500) -> dict[str, Product]:
    """Products by SKU: those of ``skus`` that exist, or every product when None."""
    if skus is None:
        return {p.sku: p for p in map(_product, conn.execute(_SELECT))}
    wanted = list(dict.fromkeys(skus))
    out: dict[str, Product] = {}
    for i in range(0, len(wanted), chunk):
        part = wanted[i:i + chunk]
        rows = conn.execute(_SELECT + f" WHERE sku IN ({', '.join('?' * len(part))})", part)
        out.update((p.sku, p) for p in map(_product, rows))
    return out
