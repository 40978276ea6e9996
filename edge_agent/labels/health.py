"""The label monitor: compliance over time, tag health and device health, as alerts and counters.

Each pass assesses labels (compliance.assess, with the checkout's price read
live from the catalog): the ones that changed since the last pass, and all
of them every ``interval`` seconds (a quarter of the shortest grace time,
within 0.2 to 30 s), which also catches what only the clock changes. A label
that stops being compliant gets ``wrong_since``; one that stays wrong past
its device's ``compliance_grace`` raises one ``price`` alert, cleared when
it is compliant again. Tag health (stale, low battery) comes from each poll;
a label device offline or in error raises a ``device`` alert. Every alert
about a label says its device, id, product and zone (``alert_data``).

``summary`` is what ``GET /v1/health`` shows; each device's counters get
``labels``, ``labels_non_compliant``, ``labels_stale`` and
``labels_low_battery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from drivers.shelf_label.config import LabelDeviceConfig
from drivers.shelf_label.driver import Snapshot
from edge_agent import catalog
from edge_agent.errors import StoreError
from edge_agent.labels import watch
from edge_agent.labels.alerts import Alerts, Change
from edge_agent.labels.compliance import assess, checkout_price
from edge_agent.labels.table import Label
from edge_core.bus import utcnow
from edge_core.logonce import LogOnce

log = logging.getLogger(__name__)

DEFAULT_GRACE = 300.0
_DOWN = ("offline", "error")


def _money(value: Any) -> str | None:
    return None if value is None else str(value)


class Labels(Protocol):
    """What the monitor needs of the label service (service.py): its labels to read, where to record
    since when one is wrong, and the devices' counters."""

    def all_labels(self) -> list[Label]: ...
    def label(self, mac: str) -> Label | None: ...
    def device_labels(self, device_id: str) -> list[Label]: ...
    async def products(self, skus: Iterable[str | None]) -> dict[str, catalog.Product]: ...
    def mark_wrong(self, mac: str, at: datetime) -> datetime | None: ...
    def mark_right(self, mac: str) -> None: ...
    def queued(self) -> int: ...
    def set_counters(self, device_id: str, counters: dict[str, int]) -> None: ...


def alert_data(label: Label, **data: Any) -> dict[str, Any]:
    """What every alert about ``label`` says of it: its device, id, product and zone (None when it has none),
    so that the wristbands can send a wrong label to the associates of its zone."""
    return {"device": label.device, "mac": label.mac, "sku": label.sku, "zone": label.zone, **data}


class Monitor:
    """Compliance, alerts and counters of the label service."""

    def __init__(self, labels: Labels, alerts: Alerts, configs: Mapping[str, LabelDeviceConfig]):
        self.labels = labels
        self.alerts = alerts
        self.configs = dict(configs)
        self.wrong: dict[str, datetime] = {}  # mac -> since when not compliant
        self.reasons: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._changes: list[Change] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one pass at a time: an alert is raised once
        self.passes = 0
        self._log_once = LogOnce(log)

    def interval(self) -> float:
        """Seconds between full passes."""
        graces = [c.compliance_grace for c in self.configs.values()] or [DEFAULT_GRACE]
        return max(0.2, min(30.0, min(graces) / 4))

    def grace(self, device: str) -> float:
        """The compliance grace time of ``device``'s labels."""
        config = self.configs.get(device)
        return config.compliance_grace if config is not None else DEFAULT_GRACE

    def dirty(self, macs: Iterable[str]) -> None:
        """Assess these labels at the next pass, soon."""
        self._dirty.update(macs)
        self._wake.set()

    def summary(self) -> dict[str, Any]:
        """Labels, how many are not compliant and since when the oldest is not, how many wait to
        be pushed, and the label alerts that are up."""
        oldest = min(self.wrong.values(), default=None)
        return {"labels": len(self.labels.all_labels()), "non_compliant": len(self.wrong),
                "oldest_non_compliant_since": oldest.isoformat() if oldest else None,
                "queued": self.labels.queued(),
                "alerts": len(self.alerts.active)}

    async def run(self) -> None:
        """Pass after pass, until cancelled."""
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_full - loop.time())):
                    await self._wake.wait()
            self._wake.clear()
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + self.interval()
            try:
                await self.check(full)
            except StoreError as err:
                log.warning("labels: compliance check failed, retrying: %s", err)
            except Exception as err:  # noqa: BLE001 - alerts must keep coming for the rest of the day
                self._log_once.error(("check", type(err).__name__), "labels: compliance check failed "
                                     "unexpectedly, retrying: %s: %s", type(err).__name__, err)

    async def settle(self) -> None:
        """Finish a pass under way and assess what changed since (the API does, so that it
        shows when a label went wrong rather than when it was asked)."""
        async with self._lock:
            if self._dirty or self._changes:
                await self._check(False)

    def found_wrong(self, label: Label, at: datetime) -> datetime:
        """``label`` was found not compliant at ``at`` (by whoever looked first): since when it is."""
        since = self.labels.mark_wrong(label.mac, at) or at
        self.wrong[label.mac] = since
        return since

    async def check(self, full: bool = True) -> None:
        """One pass: assess, keep ``wrong_since``, raise and clear alerts, update counters."""
        async with self._lock:
            await self._check(full)

    async def _check(self, full: bool) -> None:
        service = self.labels
        if full:
            self._dirty = set()
            labels = service.all_labels()
        else:
            macs, self._dirty = self._dirty, set()
            labels = [lb for lb in map(service.label, macs) if lb is not None]
        changes, self._changes = self._changes, []
        products = await service.products(lb.sku for lb in labels)
        now = utcnow()
        for label in labels:
            checkout = checkout_price(products.get(label.sku) if label.sku else None, now)
            reason = assess(label, checkout)
            if reason is None:
                self.wrong.pop(label.mac, None)
                self.reasons.pop(label.mac, None)
                service.mark_right(label.mac)
                if self.alerts.is_up(label.mac, "price"):
                    changes.append(Change(label.mac, "price", False, None, alert_data(
                        label, shown_price=_money(label.shown_price), checkout_price=_money(checkout),
                        message=f"label {label.mac} ({label.sku}) shows the checkout's price again")))
                continue
            since = self.found_wrong(label, now)
            self.reasons[label.mac] = reason
            if now - since >= timedelta(seconds=self.grace(label.device)):
                changes.append(Change(label.mac, "price", True, since, alert_data(
                    label, shown_price=_money(label.shown_price if label.confirmed_at else None),
                    checkout_price=_money(checkout),
                    message=f"label {label.mac} ({label.sku}) does not show the checkout's price: {reason}")))
        if full:
            for mac in [m for m in self.wrong if service.label(m) is None]:
                self.wrong.pop(mac, None)
                self.reasons.pop(mac, None)
        try:
            await self.alerts.apply(changes)
        except StoreError:
            self._changes[:0] = changes  # raised or cleared at the next pass
            raise
        self.passes += 1
        self._count()

    def tags_seen(self, snapshot: Snapshot, now: datetime) -> None:
        """Stale tags and low batteries of one poll, as alert changes for the next pass."""
        cfg = self.configs.get(snapshot.device)
        stale_after = getattr(cfg, "stale_after", None)
        low_mv = getattr(cfg, "low_battery_mv", None)
        if stale_after is None and low_mv is None:
            return
        alerts = self.alerts
        for label in self.labels.device_labels(snapshot.device):
            state = snapshot.tags.get(label.mac)
            if stale_after is not None and state is not None:
                stale = label.sku is not None and watch.is_stale(label, state, now, stale_after)
                seen = state.last_seen.isoformat() if state.last_seen else None
                self._changes.append(Change(label.mac, "stale", stale, state.last_seen or label.bound_at, alert_data(
                    label, last_seen=seen,
                    message=f"label {label.mac} ({label.sku}) not heard from since {seen or 'it was bound'}")))
            if low_mv is not None and state is not None:
                low = watch.battery_low(state, low_mv, alerts.is_up(label.mac, "battery"))
                if low is not None:
                    self._changes.append(Change(label.mac, "battery", low, now, alert_data(
                        label, battery_mv=state.battery_mv,
                        message=f"label {label.mac} ({label.sku}) battery at {state.battery_mv} mV")))
        self._wake.set()

    def device_state(self, device: str, state: str | None, error: str | None) -> None:
        """A label device went down (offline, error) or came back."""
        down = state in _DOWN
        self._changes.append(Change(device, "device", down, utcnow(), {
            "device": device, "state_now": state,
            "message": f"label device {device} is {state}: {error}" if down else f"label device {device} is {state}"}))
        self._wake.set()

    def _count(self) -> None:
        alerts = self.alerts.active
        counts = {dev_id: dict.fromkeys(("labels", "labels_non_compliant", "labels_stale", "labels_low_battery"), 0)
                  for dev_id in self.configs}
        for label in self.labels.all_labels():
            c = counts.get(label.device)
            if c is None:
                continue
            c["labels"] += 1
            c["labels_non_compliant"] += label.mac in self.wrong
            c["labels_stale"] += (label.mac, "stale") in alerts
            c["labels_low_battery"] += (label.mac, "battery") in alerts
        for dev_id, c in counts.items():
            self.labels.set_counters(dev_id, c)
