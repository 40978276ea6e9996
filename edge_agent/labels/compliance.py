"""Price compliance: does a label show what the checkout charges right now? Pure functions.

A label is compliant when its back end has *confirmed* that it shows the
product it is bound to at exactly the price ``catalog.Product.unit_price(now)``
gives, and no upload with another price is still on its way to it. A label
pushed but not confirmed yet is not compliant; neither is one showing a
notice for a product the checkout sells (its price could not be put on a
label), nor one whose push failed (it is recorded as still showing what it
showed before). A notice on a label bound to nothing, or to a SKU the
catalog does not have, is compliant: the checkout charges nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from edge_agent.catalog import Product
from edge_agent.labels.table import Label


def checkout_price(product: Product | None, at: datetime) -> Decimal | None:
    """What the checkout charges for ``product`` at ``at``; None when it does not sell it."""
    return product.unit_price(at) if product is not None else None


def _money(value: Decimal | None) -> str:
    return "no price" if value is None else str(value)


def assess(label: Label, checkout: Decimal | None) -> str | None:
    """None when ``label`` is compliant, else why not, in words for an associate."""
    if label.confirmed_at is None:
        if label.last_error:
            return f"never confirmed; the last push failed: {label.last_error}"
        if label.pushed_at is not None:
            return "pushed; waiting for the label to confirm it"
        if label.desired_hash is None and label.last_error is None:
            return "not planned yet"
        return "not pushed yet"
    if label.shown_sku != label.sku:
        if label.sku is None:
            return f"bound to no product, but still shows {label.shown_sku}"
        shown = label.shown_sku or "a notice"
        return f"shows {shown} instead of {label.sku}"
    if label.shown_price != checkout:
        if label.desired_note and label.desired_price is None and checkout is not None:
            return f"cannot show the price: {label.desired_note}"
        if label.outstanding and label.pushed_price == checkout and label.pushed_sku == label.sku:
            return f"shows {_money(label.shown_price)}; the new price was pushed and waits for the label"
        if label.last_error:
            return f"shows {_money(label.shown_price)}; the update failed: {label.last_error}"
        return f"shows {_money(label.shown_price)}; an update is queued"
    if label.outstanding and (label.pushed_price != label.shown_price or label.pushed_sku != label.shown_sku):
        # The label may still take the other picture at its next check-in.
        return f"a picture with {_money(label.pushed_price)} is on its way to the label"
    return None


@dataclass(frozen=True)
class Entry:
    """One label that does not show the checkout's price: GET /v1/labels/compliance."""

    mac: str
    device: str
    sku: str | None
    shown_price: Decimal | None
    checkout_price: Decimal | None
    since: datetime
    pushed_at: datetime | None
    confirmed_at: datetime | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "mac": self.mac, "device": self.device, "sku": self.sku,
            "shown_price": None if self.shown_price is None else str(self.shown_price),
            "checkout_price": None if self.checkout_price is None else str(self.checkout_price),
            "since": self.since.isoformat(),
            "pushed_at": self.pushed_at.isoformat() if self.pushed_at else None,
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "reason": self.reason,
        }


def entries(labels: list[Label], products: dict[str, Product], at: datetime,
            device_notes: dict[str, str | None] | None = None) -> list[Entry]:
    """Every label of ``labels`` that is not compliant at ``at``, the longest-wrong first;
    ``device_notes`` add why a label's device cannot push now to the reason."""
    out = []
    for label in labels:
        checkout = checkout_price(products.get(label.sku) if label.sku else None, at)
        reason = assess(label, checkout)
        if reason is not None:
            note = (device_notes or {}).get(label.device)
            if note:
                reason = f"{reason} ({note})"
            out.append(Entry(label.mac, label.device, label.sku, label.shown_price if label.confirmed_at else None,
                             checkout, label.wrong_since or at, label.pushed_at, label.confirmed_at, reason))
    out.sort(key=lambda e: (e.since, e.mac))
    return out
