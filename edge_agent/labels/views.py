"""What the API shows of labels: the service's labels (its newest knowledge; the
store has them a batch later), the catalog's live prices, the last poll's tag
health. Built in the event loop in slices, so a store with ten thousand
labels does not hold up the API for the length of a listing. Everything is
read through the service's methods; nothing here changes a label."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from edge_agent import catalog
from edge_agent.labels import bindings
from edge_agent.labels.compliance import Entry, assess, checkout_price, entries
from edge_agent.labels.table import Label
from edge_core.bus import utcnow

if TYPE_CHECKING:
    from edge_agent.labels.service import LabelService

SLICE = 500


async def _products(svc: "LabelService", labels: list[Label]) -> dict[str, catalog.Product]:
    return await svc.products(lb.sku for lb in labels)


def view(svc: "LabelService", label: Label, products: dict[str, catalog.Product]) -> dict[str, Any]:
    """One label as ``GET /v1/labels`` lists it."""
    now = utcnow()
    checkout = checkout_price(products.get(label.sku) if label.sku else None, now)
    reason = assess(label, checkout)
    note = svc.device_note(label.device) if reason else None
    if note:
        reason = f"{reason} ({note})"
    state = svc.tag_state(label.mac)
    confirmed = label.confirmed_at is not None
    return {
        "mac": label.mac, "device": label.device, "sku": label.sku, "model": label.model, "source": label.source,
        "zone": label.zone, "bound_at": label.bound_at.isoformat(),
        # What the back end confirmed the label shows (a notice has no price).
        "price": str(label.shown_price) if confirmed and label.shown_price is not None else None,
        "content_hash": label.shown_hash if confirmed else None,
        "shown_since": label.shown_since.isoformat() if label.shown_since else None,
        "confirmed_at": label.confirmed_at.isoformat() if label.confirmed_at else None,
        # What it should show, and what the checkout charges now.
        "desired_price": str(label.desired_price) if label.desired_price is not None else None,
        "desired_hash": label.desired_hash,
        "notice": label.desired_note if label.desired_hash and label.desired_price is None else None,
        "checkout_price": str(checkout) if checkout is not None else None,
        # The last upload its back end accepted.
        "pushed_price": str(label.pushed_price) if label.pushed_price is not None else None,
        "pushed_hash": label.pushed_hash,
        "pushed_at": label.pushed_at.isoformat() if label.pushed_at else None,
        "compliant": reason is None,
        "reason": reason,
        "non_compliant_since": label.wrong_since.isoformat() if reason and label.wrong_since else None,
        "last_error": label.last_error,
        "error_at": label.error_at.isoformat() if label.error_at else None,
        # The last poll of the tag.
        "battery_mv": state.battery_mv if state else None,
        "last_seen": state.last_seen.isoformat() if state and state.last_seen else None,
        "rssi": state.rssi if state else None,
        "pending": state.pending if state else None,
        "known_to_device": state.known if state else None,
        "alerts": svc.label_alerts(label.mac),
    }


async def listing(svc: "LabelService", *, device: str | None = None, sku: str | None = None,
                  macs: list[str] | None = None) -> list[dict[str, Any]]:
    """Labels as the API lists them, by MAC."""
    await svc.settle()
    chosen = ([lb for lb in map(svc.label, macs) if lb is not None] if macs is not None
              else svc.all_labels())
    chosen = sorted((lb for lb in chosen if (device is None or lb.device == device) and (sku is None or lb.sku == sku)),
                    key=lambda lb: lb.mac)
    products = await _products(svc, chosen)
    out = []
    for i in range(0, len(chosen), SLICE):
        if i:
            await asyncio.sleep(0)
        out += [view(svc, lb, products) for lb in chosen[i:i + SLICE]]
    return out


async def one(svc: "LabelService", text: str) -> dict[str, Any]:
    """The label ``text`` names (its MAC in any spelling a label device takes, or a file key), as
    ``GET /v1/labels/{mac}`` shows it; bindings.BindNotFound if there is none."""
    label = bindings.find(svc, text)
    return (await listing(svc, macs=[label.mac]))[0]


async def compliance(svc: "LabelService") -> list[Entry]:
    """Every label that does not show what the checkout charges now, the longest-wrong first."""
    await svc.settle()
    labels = svc.all_labels()
    products = await _products(svc, labels)
    now = utcnow()
    notes = {dev: svc.device_note(dev) for dev in {lb.device for lb in labels}}
    out: list[Entry] = []
    for i in range(0, len(labels), SLICE):
        if i:
            await asyncio.sleep(0)
        out += entries(labels[i:i + SLICE], products, now, notes)
    # A label wrong since a moment ago (the catalog changed, the monitor has not looked yet) is
    # recorded as wrong from now, so that the monitor and the next call say the same "since".
    for i, e in enumerate(out):
        label = svc.label(e.mac)
        if label is not None and label.wrong_since is None:
            out[i] = replace(e, since=svc.found_wrong(label, now))
    out.sort(key=lambda e: (e.since, e.mac))
    return out
