"""The data each document is fed: pydantic models, lenient about extra keys. No I/O.

``SaleReceipt`` validates the sale body ``POST /v1/sales`` stores
(edge_agent/sales.py: ``id``, ``created_at``, lines with ``amount``, and
``subtotal``/``points_value`` when points were redeemed) plus what the print
queue adds (store name and address, e-receipt URL, points balance, and per
promoted line its ``regular_price`` and ``promo`` label from the catalog);
unknown keys such as ``seq`` are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

# How the print queue once labelled a points redemption among the promotions.
LEGACY_POINTS_LABEL = "Points redeemed ("


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
    regular_price: Decimal | None = Field(
        default=None, description="the unit price before the promotion; printed with the saving when higher")

    @field_validator("promo", mode="before")
    @classmethod
    def _promo_label(cls, value: Any) -> Any:
        # The catalog's promo is an object ({price, label, ...}); print its label.
        if isinstance(value, Mapping):
            return value.get("label") or (f"Promo {value['price']}" if "price" in value else None)
        return value

    @property
    def saving(self) -> Decimal:
        """What the promotion took off this line (0 without a higher regular price)."""
        if self.regular_price is None or self.unit_price is None or self.regular_price <= self.unit_price:
            return Decimal(0)
        return (self.regular_price - self.unit_price) * self.qty


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
    points_value: Decimal | None = Field(default=None, description="what the redeemed points paid, in money")
    points_balance: int | None = None
    receipt_url: str | None = Field(default=None, max_length=1000,
                                    validation_alias=AliasChoices("receipt_url", "e_receipt_url"))

    @model_validator(mode="before")
    @classmethod
    def _points_once(cls, data: Any) -> Any:
        # Jobs queued before points_value was printed by itself carry the redemption as a
        # promotion labelled "Points redeemed (N)" too: print it once.
        if isinstance(data, Mapping) and data.get("points_value") is not None and data.get("promotions"):
            promotions = data["promotions"]
            if isinstance(promotions, list):
                kept = [p for p in promotions if not (isinstance(p, Mapping) and
                                                      str(p.get("label", "")).startswith(LEGACY_POINTS_LABEL))]
                data = {**data, "promotions": kept}
        return data

    @property
    def saving(self) -> Decimal:
        """What promotions took off the sale: each line's and the sale-wide discounts (not points)."""
        lines = sum((ln.saving for ln in self.lines), Decimal(0))
        return lines - sum((p.amount for p in self.promotions if p.amount < 0), Decimal(0))


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
    # Tickets queued before it was left out may still carry it: accepted, never printed.
    pickup_code: str | None = Field(default=None, max_length=32, description="not printed: the customer's secret")
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
