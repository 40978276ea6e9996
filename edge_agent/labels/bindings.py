"""Which product each label shows: devices.yaml's bulk bindings and the API's.

devices.yaml wins for the labels it lists: its bindings are applied at every
start, replacing what the API set for those labels since. Labels the API
bound and the file does not list are kept. A label the file bound before and
no longer lists is unbound (it then shows "not in use"); the labels of a
device no longer in the file at all are forgotten.

Binding by API is what an associate does at the shelf: scan the label's
barcode (its MAC), then the product's (a barcode or SKU).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from drivers.shelf_label.driver import LabelDriver
from drivers.shelf_label.models import UnknownLabelModel, get_model, model_for_hw_type
from edge_agent.errors import Conflict, DomainError, Invalid, NotFound
from edge_agent.labels.table import Label, params, save
from edge_agent.scans import lookup_scanned
from edge_agent.store import Store, Tx
from edge_core.bus import utcnow

if TYPE_CHECKING:
    from edge_agent.labels.service import LabelService

log = logging.getLogger(__name__)


class BindError(DomainError):
    """A binding or an unbinding the store refuses."""


class BindInvalid(Invalid, BindError):
    """A label, device or model the request names wrongly or ambiguously."""


class BindConflict(Conflict, BindError):
    """This store has no shelf-label device to bind to."""


class BindNotFound(NotFound, BindError):
    """No such product, or no such bound label."""


async def apply_config(store: Store, devices: dict[str, LabelDriver], configured: set[str]) -> None:
    """Write devices.yaml's bindings of ``devices``; ``configured`` are the ids of every device in the file."""
    now = utcnow().isoformat()
    wanted: dict[str, tuple[str, str, str]] = {}
    for dev_id, driver in devices.items():
        for b in driver.config.bindings():
            wanted[b.label] = (dev_id, b.sku, b.model or driver.config.model)

    def write(tx: Tx) -> tuple[int, int, int]:
        existing = {r[0]: r[1:] for r in tx.execute("SELECT mac, device, sku, model, source FROM labels")}
        bound = unbound = gone = 0
        for mac, (dev, sku, model) in wanted.items():
            old = existing.get(mac)
            if old is None:
                tx.execute("INSERT INTO labels (mac, device, sku, model, source, bound_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (mac, dev, sku, model, "config", now))
                bound += 1
            elif old != (dev, sku, model, "config"):
                tx.execute("UPDATE labels SET device = ?, sku = ?, model = ?, source = 'config', bound_at = ? "
                           "WHERE mac = ?", (dev, sku, model, now, mac))
                bound += 1
        for mac, (dev, sku, _, source) in existing.items():
            if dev not in configured:
                tx.execute("DELETE FROM labels WHERE mac = ?", (mac,))
                tx.execute("DELETE FROM label_alerts WHERE subject = ?", (mac,))
                gone += 1
            elif source == "config" and mac not in wanted and sku is not None:
                tx.execute("UPDATE labels SET sku = NULL, bound_at = ? WHERE mac = ?", (now, mac))
                unbound += 1
        for (subject,) in tx.execute("SELECT subject FROM label_alerts WHERE kind = 'device'").fetchall():
            if subject not in configured:
                tx.execute("DELETE FROM label_alerts WHERE subject = ? AND kind = 'device'", (subject,))
        return bound, unbound, gone

    bound, unbound, gone = await store.write(write)
    if bound or unbound or gone:
        log.info("labels: devices.yaml bound %d label(s), unbound %d; %d of removed devices forgotten",
                 bound, unbound, gone)


def _device_for(svc: "LabelService", mac_text: str, device: str | None) -> tuple[LabelDriver, str]:
    """The device a label belongs to, and the label's id as that device writes it."""
    if device is not None:
        driver = svc.devices.get(device)
        if driver is None:
            raise BindInvalid(f"no shelf-label device {device!r}; label devices: {', '.join(sorted(svc.devices))}")
        candidates = [driver]
    else:
        candidates = list(svc.devices.values())
    if not candidates:
        raise BindConflict("this store has no shelf-label device in devices.yaml")
    ids: dict[str, str] = {}
    for driver in candidates:
        try:
            ids[driver.config.id] = driver.label_id(mac_text)
        except ValueError as err:
            if len(candidates) == 1:
                raise BindInvalid(f"label: {err}") from err
    if not ids:
        raise BindInvalid(f"label: {mac_text!r} is not a label id any label device takes")
    if len(ids) == 1:
        dev_id, mac = next(iter(ids.items()))
        return svc.devices[dev_id], mac
    # Several devices: the one already holding the label, else the access point that lists its tag.
    for dev_id, mac in ids.items():
        label = svc.labels.get(mac)
        state = svc.tag_states.get(mac)
        if (label is not None and label.device == dev_id) or (state is not None and state.known):
            return svc.devices[dev_id], mac
    raise BindInvalid(f"several label devices could hold {mac_text}; name one in \"device\": "
                         f"{', '.join(sorted(ids))}")


def _model_for(svc: "LabelService", driver: LabelDriver, mac: str, model: str | None) -> str:
    if model is not None:
        try:
            return get_model(model).name
        except UnknownLabelModel as err:
            raise BindInvalid(f"model: {err}") from err
    old = svc.labels.get(mac)
    default = old.model if old is not None and old.device == driver.config.id else driver.config.model
    state = svc.tag_states.get(mac)
    hw = state.hw_type if state is not None else None
    if hw is not None and get_model(default).hw_type not in (None, hw):
        found = model_for_hw_type(hw)
        if found is None:
            raise BindInvalid(f"the tag reports hwType 0x{hw:02X}, which no label model has; give \"model\"")
        return found.name
    return default


async def bind(svc: "LabelService", mac_text: str, code: str, device: str | None = None,
               model: str | None = None) -> tuple[Label, bool]:
    """Bind a label to the product with barcode or SKU ``code``; (the label, True if it was new)."""
    driver, mac = _device_for(svc, mac_text, device)
    product = await svc.store.read(lambda c: lookup_scanned(c, code))
    if product is None:
        raise BindNotFound(f"no product with barcode or SKU {code!r}")
    model_name = _model_for(svc, driver, mac, model)
    now = utcnow()
    old = svc.labels.get(mac)
    label = Label(mac=mac, device=driver.config.id, sku=product.sku, model=model_name, source="api", bound_at=now)
    if old is not None:
        # Same label, new product: what it shows and what was pushed to it stay true.
        kept = {f: getattr(old, f) for f in ("pushed_hash", "pushed_price", "pushed_sku", "pushed_at", "push_token",
                                             "shown_hash", "shown_price", "shown_sku", "shown_since",
                                             "confirmed_at", "shown_token", "wrong_since")}
        for name, value in kept.items():
            setattr(label, name, value)
    row = params(label)
    await svc.store.write(lambda tx: save(tx.conn, [row]))
    svc.put(label)
    await svc.plan(None, macs={mac}, urgent=True)
    return label, old is None


async def unbind(svc: "LabelService", mac_text: str) -> Label:
    """Bind a label to nothing: it shows "not in use" and stays listed until bound again."""
    label = None
    for driver in svc.devices.values():
        try:
            label = svc.labels.get(driver.label_id(mac_text))
        except ValueError:
            continue
        if label is not None:
            break
    if label is None:
        label = svc.labels.get(mac_text)
    if label is None:
        raise BindNotFound(f"no label {mac_text!r} is bound")
    if label.sku is not None:
        label.sku, label.source, label.bound_at = None, "api", utcnow()
        row = params(label)
        await svc.store.write(lambda tx: save(tx.conn, [row]))
        await svc.plan(None, macs={label.mac}, urgent=True)
    return label
