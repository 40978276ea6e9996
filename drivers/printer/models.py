"""The data each document is fed: pydantic models, lenient about extra keys. No I/O.

``SaleReceipt`` validates the sale body ``POST /v1/sales`` stores
(edge_agent/sales.py: ``id``, ``created_at``, lines with ``amount``) plus
what the printer driver adds (store name and address, e-receipt URL,
points balance); unknown keys such as ``seq`` are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator


class DocumentData(BaseModel):
    """Base of every document's data."""

    # Unknown keys are ignored: the stored sale body carries seq, client, ... too.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Payment(DocumentData):
    """How the customer paid (or was refunded): ``cash | card | qr | points`` and a reference."""

    method: str = Field(min_length=1, max_length=32)
    reference: str | None = Field(default=None, max_length=128)


class Line(DocumentData):
    """One sale or return line; ``line_total`` is also read from the stored sale's ``amount``."""

    sku: str = Field(max_length=64)
    name: str = Field(default="", max_length=300)
    qty: Decimal = Field(gt=0)
    unit_price: Decimal
    line_total: Decimal = Field(validation_alias=AliasChoices("line_total", "amount"))
    promo: str | None = Field(default=None, max_length=120, description="promotion label printed under the line")

    @field_validator("promo", mode="before")
    @classmethod
    def _promo_label(cls, value: Any) -> Any:
        # The catalog's promo is an object ({price, label, ...}); print its label.
        if isinstance(value, Mapping):
            return value.get("label") or (f"Promo {value['price']}" if "price" in value else None)
        return value


class ReturnLine(Line):
    """A returned line; an online order's lines have no price at the store (the hub refunds them)."""

    unit_price: Decimal | None = None  # type: ignore[assignment]
    line_total: Decimal | None = Field(  # type: ignore[assignment]
        default=None, validation_alias=AliasChoices("line_total", "amount"))


class Promotion(DocumentData):
    """A promotion on the whole sale: its label and amount (negative for a discount)."""

    label: str = Field(max_length=120)
    amount: Decimal


class StoreInfo(DocumentData):
    """Header every document shares."""

    store_name: str = Field(default="", max_length=120)
    store_address: str | None = Field(default=None, max_length=300)


class SaleReceipt(StoreInfo):
    """A completed sale as the receipt prints it (CONTRACT: ``POST /v1/sales`` 201 body)."""

    id: str = Field(min_length=1, max_length=64, validation_alias=AliasChoices("id", "sale_id"))
    time: datetime = Field(validation_alias=AliasChoices("time", "created_at"))
    lines: list[Line]
    promotions: list[Promotion] = Field(default_factory=list)
    total: Decimal
    currency: str = Field(max_length=8)
    payment: Payment
    member_id: str | None = Field(default=None, max_length=64)
    points_earned: int = 0
    points_redeemed: int = 0
    points_balance: int | None = None
    receipt_url: str | None = Field(default=None, max_length=1000,
                                    validation_alias=AliasChoices("receipt_url", "e_receipt_url"))


class ReturnSlip(StoreInfo):
    """A return accepted at the store, of a store sale or an online order."""

    id: str = Field(min_length=1, max_length=64, validation_alias=AliasChoices("id", "return_id"))
    time: datetime = Field(validation_alias=AliasChoices("time", "created_at"))
    sale_id: str | None = Field(default=None, max_length=64)
    order_id: str | None = Field(default=None, max_length=64)
    lines: list[ReturnLine]
    total: Decimal | None = Field(default=None, description="the refund; None: the hub refunds (online orders)")
    currency: str = Field(max_length=8)
    refund: Payment
    state: str | None = Field(default=None, max_length=16, description="'pending' until the hub has judged it")
    reason: str | None = Field(default=None, max_length=300)
    member_id: str | None = Field(default=None, max_length=64)
    points_reversed: int = 0
    points_restored: int = 0
    points_balance: int | None = None


class PickLine(DocumentData):
    """One line to pick: what, how many, and where it is kept."""

    sku: str = Field(max_length=64)
    name: str = Field(default="", max_length=300)
    qty: int = Field(gt=0)
    location: str | None = Field(default=None, max_length=64)


class PickTicket(StoreInfo):
    """A pickup order from the hub (CONTRACT: retail.order.created), names filled in from the catalog."""

    order_id: str = Field(min_length=1, max_length=64)
    pickup_code: str = Field(min_length=1, max_length=32)
    time: datetime
    lines: list[PickLine]
    member_id: str | None = Field(default=None, max_length=64)
    ready_by: datetime | None = None
    note: str | None = Field(default=None, max_length=300)


class TestPage(StoreInfo):
    """What the test page shows besides the printer's own abilities."""

    __test__ = False  # not a pytest test class, despite the name

    device_id: str = Field(default="", max_length=64)
    time: datetime
