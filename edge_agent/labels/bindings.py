"""Which product each label shows: devices.yaml's bulk bindings and the API's.

devices.yaml wins for the labels it lists: its bindings are applied at every
start, replacing what the API set for those labels since. Labels the API
bound and the file does not list are kept. A label the file bound before and
no longer lists is unbound (it then shows "not in use"); the labels of a
device no longer in the file at all are forgotten.

Binding by API is what an associate does at the shelf: scan the label's
barcode (its MAC), then the product's (a barcode or SKU). The flow itself
(the write, then the label pushed) is edge_agent/usecases/labels.py; here
are its rules: which device and model a label gets (``resolve``), what a
re-bound label keeps (``rebound``), and the errors it refuses with.

A label may have a ``zone`` (its shelf's area), from its devices.yaml entry
or from the API; its alerts carry it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from drivers.shelf_label.config import LabelDeviceConfig, check_zone
from drivers.shelf_label.driver import LabelDriver, TagState
from drivers.shelf_label.models import UnknownLabelModel, get_model, model_for_hw_type
from edge_agent.errors import Conflict, DomainError, Invalid, NotFound
from edge_agent.labels.table import Label
from edge_agent.store import Store, Tx
from edge_core.bus import utcnow

log = logging.getLogger(__name__)


class BindError(DomainError):
    """A binding or an unbinding the store refuses."""


class BindInvalid(Invalid, BindError):
    """A label, device or model the request names wrongly or ambiguously."""


class BindConflict(Conflict, BindError):
    """This store has no shelf-label device to bind to."""


class BindNotFound(NotFound, BindError):
    """No such product, or no such bound label."""


# What a re-bound label keeps: what it shows and what was pushed to it stay true.
_KEPT = ("pushed_hash", "pushed_price", "pushed_sku", "pushed_at", "push_token", "shown_hash", "shown_price",
         "shown_sku", "shown_since", "confirmed_at", "shown_token", "wrong_since")


class Labels(Protocol):
    """What binding reads of the label service (service.py)."""

    def label(self, mac: str) -> Label | None: ...
    def tag_state(self, mac: str) -> TagState | None: ...
    def device_config(self, device_id: str) -> LabelDeviceConfig | None: ...
    def label_ids(self, text: str) -> dict[str, str | ValueError]: ...
    def find(self, text: str) -> Label | None: ...


@dataclass(frozen=True)
class Target:
    """Where a label binds: its device, its id as that device writes it, its model."""

    device: str
    mac: str
    model: str


async def apply_config(store: Store, devices: dict[str, LabelDriver], configured: set[str]) -> None:
    """Write devices.yaml's bindings of ``devices``; ``configured`` are the ids of every device in the file."""
    now = utcnow().isoformat()
    wanted: dict[str, tuple[str, str, str, str | None]] = {}
    for dev_id, driver in devices.items():
        for b in driver.config.bindings():
            wanted[b.label] = (dev_id, b.sku, b.model or driver.config.model, b.zone)

    def write(tx: Tx) -> tuple[int, int, int]:
        existing = {r[0]: r[1:] for r in tx.execute("SELECT mac, device, sku, model, zone, source FROM labels")}
        bound = unbound = gone = 0
        for mac, (dev, sku, model, zone) in wanted.items():
            old = existing.get(mac)
            if old is None:
                tx.execute("INSERT INTO labels (mac, device, sku, model, zone, source, bound_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (mac, dev, sku, model, zone, "config", now))
                bound += 1
            elif old[:3] != (dev, sku, model) or old[4] != "config":
                tx.execute("UPDATE labels SET device = ?, sku = ?, model = ?, zone = ?, source = 'config', "
                           "bound_at = ? WHERE mac = ?", (dev, sku, model, zone, now, mac))
                bound += 1
            elif old[3] != zone:  # only its zone moved: the binding itself stands
                tx.execute("UPDATE labels SET zone = ? WHERE mac = ?", (zone, mac))
        for mac, (dev, sku, _, _, source) in existing.items():
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


def _device_for(svc: Labels, mac_text: str, device: str | None) -> tuple[str, str]:
    """The device a label belongs to, and the label's id as that device writes it."""
    every = svc.label_ids(mac_text)
    if device is not None:
        if device not in every:
            raise BindInvalid(f"no shelf-label device {device!r}; label devices: {', '.join(sorted(every))}")
        candidates = {device: every[device]}
    else:
        candidates = every
    if not candidates:
        raise BindConflict("this store has no shelf-label device in devices.yaml")
    ids = {dev_id: mac for dev_id, mac in candidates.items() if isinstance(mac, str)}
    if not ids:
        if len(candidates) == 1:
            raise BindInvalid(f"label: {next(iter(candidates.values()))}")
        raise BindInvalid(f"label: {mac_text!r} is not a label id any label device takes")
    if len(ids) == 1:
        return next(iter(ids.items()))
    # Several devices: the one already holding the label, else the access point that lists its tag.
    for dev_id, mac in ids.items():
        label = svc.label(mac)
        state = svc.tag_state(mac)
        if (label is not None and label.device == dev_id) or (state is not None and state.known):
            return dev_id, mac
    raise BindInvalid(f"several label devices could hold {mac_text}; name one in \"device\": "
                      f"{', '.join(sorted(ids))}")


def _model_for(svc: Labels, device: str, mac: str, model: str | None) -> str:
    if model is not None:
        try:
            return get_model(model).name
        except UnknownLabelModel as err:
            raise BindInvalid(f"model: {err}") from err
    old = svc.label(mac)
    config = svc.device_config(device)
    assert config is not None  # _device_for named a label device
    default = old.model if old is not None and old.device == device else config.model
    state = svc.tag_state(mac)
    hw = state.hw_type if state is not None else None
    if hw is not None and get_model(default).hw_type not in (None, hw):
        found = model_for_hw_type(hw)
        if found is None:
            raise BindInvalid(f"the tag reports hwType 0x{hw:02X}, which no label model has; give \"model\"")
        return found.name
    return default


def resolve(svc: Labels, mac_text: str, device: str | None = None, model: str | None = None) -> Target:
    """Where label ``mac_text`` binds: BindInvalid for a label id no device takes, an unknown device or model,
    or a label several devices could hold; BindConflict when the store has no label device."""
    dev_id, mac = _device_for(svc, mac_text, device)
    return Target(dev_id, mac, _model_for(svc, dev_id, mac, model))


def check_zone_text(zone: str | None) -> str | None:
    """``zone`` if it can name a zone; BindInvalid saying what a zone is if not."""
    try:
        return check_zone(zone)
    except ValueError as err:
        raise BindInvalid(f"zone: {err}") from err


def rebound(old: Label | None, target: Target, sku: str | None, zone: str | None, at: datetime) -> Label:
    """Label ``target`` bound by the API to ``sku`` (None: to nothing) in ``zone``. The same label bound
    anew keeps what it shows and what was pushed to it: those stay true."""
    label = Label(mac=target.mac, device=target.device, sku=sku, model=target.model, source="api", bound_at=at,
                  zone=zone)
    if old is not None:
        for name in _KEPT:
            setattr(label, name, getattr(old, name))
    return label


def unbound(label: Label, at: datetime) -> Label:
    """``label`` bound to nothing by the API (a new Label); what it shows and was pushed to it stay true."""
    return replace(label, sku=None, source="api", bound_at=at)


def find(svc: Labels, mac_text: str) -> Label:
    """The label ``mac_text`` names; BindNotFound if there is none."""
    label = svc.find(mac_text)
    if label is None:
        raise BindNotFound(f"no label {mac_text!r} in this store")
    return label
