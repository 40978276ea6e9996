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

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from edge_agent.bus import utcnow

Money = Decimal
# SQLite's INTEGER is 64-bit signed: a larger number would fail the write, not the validation.
SQLITE_MAX_INT = 2**63 - 1


class Promo(BaseModel):
    """A promotion: a lower price for a while."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price: Money = Field(ge=0, le=10_000_000, decimal_places=2)
    label: str | None = Field(default=None, max_length=80)
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def active(self, at: datetime) -> bool:
        """True when ``at`` falls inside the promotion's window."""
        return (self.starts_at is None or self.starts_at <= at) and (self.ends_at is None or at < self.ends_at)


class CatalogItem(BaseModel):
    """One product as the hub sends it (CONTRACT section 4, retail.catalog.updated)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    barcodes: list[str] = Field(default_factory=list, max_length=32)
    name: str = Field(min_length=1, max_length=300)
    price: Money = Field(ge=0, le=10_000_000, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    promo: Promo | None = None
    rating: float | None = Field(default=None, ge=0, le=5)
    reviews: int = Field(default=0, ge=0, le=SQLITE_MAX_INT)
    stock_online: int = Field(default=0, ge=0, le=SQLITE_MAX_INT)
    stock_store: int | None = Field(default=None, ge=-SQLITE_MAX_INT, le=SQLITE_MAX_INT,
                                    description="only from local files, and only for a product the store does not have yet: "
                                                "a count changes by sales, returns, adjustments and the hub's "
                                                "retail.stock.set, each an event")
    version: int = Field(default=0, ge=0, le=SQLITE_MAX_INT)

    @field_validator("barcodes")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not (1 <= len(code) <= 64 and code.isprintable() and " " not in code):
                raise ValueError(f"barcode {code!r} must be 1-64 printable characters without spaces")
        return codes


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
