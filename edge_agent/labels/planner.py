"""When and what to plan: catalog and stock changes, promotions starting or ending,
and a sweep of every label every ``sweep_interval``.

Requests made while a plan runs are merged into the next one (a burst of ten
thousand one-item catalog events is a handful of plans), and plans run one
at a time, so an older plan never overwrites a newer one. Working out each
label's content hash is CPU work (~0.1 ms a label) and runs in a thread.

A store count changes with every sale, so stock changes wait ``stock_delay``
seconds from the first one, gathering the rest, before their labels are
planned: fifty sales of one product in a rush are one or two pushes, not
fifty, and a label still follows the shelf within seconds. Prices never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Protocol

from drivers.shelf_label.config import LabelDeviceConfig
from drivers.shelf_label.models import UnknownLabelModel
from edge_agent import catalog
from edge_agent.errors import StoreError
from edge_agent.labels.plan import Desired, desire
from edge_agent.labels.table import Label
from edge_core.bus import utcnow
from edge_core.logonce import LogOnce

log = logging.getLogger(__name__)


class Labels(Protocol):
    """What the planner needs of the label service (service.py): its labels to read, and where to
    report what each should show."""

    def all_labels(self) -> list[Label]: ...
    def label(self, mac: str) -> Label | None: ...
    def unfit_notes(self) -> dict[str, str]: ...
    async def products(self, skus: Iterable[str | None]) -> dict[str, catalog.Product]: ...
    def set_desired(self, mac: str, d: Desired, now: datetime) -> Label | None: ...
    def push_failed(self, mac: str, error: str) -> None: ...
    def queue(self, mac: str, d: Desired, force: bool, urgent: bool) -> bool: ...
    def assess_soon(self, macs: Iterable[str]) -> None: ...
    def count(self, device_id: str, name: str, n: int = 1) -> None: ...


class Planner:
    """Plans the labels of one LabelService."""

    def __init__(self, labels: Labels, configs: Mapping[str, LabelDeviceConfig], tz: tzinfo):
        self.labels = labels
        self.configs = dict(configs)
        self.tz = tz
        self.changes_at: dict[str, datetime] = {}  # sku -> when its label changes by itself
        self.plans = 0
        self._lock = asyncio.Lock()
        self._skus: set[str] | None = set()  # to plan; None = every label
        self._macs: set[str] = set()
        self._wanted = asyncio.Event()
        self._reschedule = asyncio.Event()
        self._stock: set[str] = set()  # SKUs whose counts changed, waiting for stock_delay
        self._stock_timer: asyncio.TimerHandle | None = None
        self._log_once = LogOnce(log)

    def stock_delay(self) -> float:
        """Seconds a store count change waits for more (the shortest of the label devices')."""
        return min((c.stock_delay for c in self.configs.values()), default=2.0)

    def request(self, skus: set[str] | None, macs: set[str] | None = None) -> None:
        """Plan the labels of ``skus`` (all when None) and ``macs`` soon."""
        if skus is None or self._skus is None:
            self._skus = None
        else:
            self._skus |= skus
        self._macs |= macs or set()
        self._wanted.set()

    def request_stock(self, skus: set[str]) -> None:
        """The store counts of ``skus`` changed: plan their labels ``stock_delay`` seconds after the
        first change not planned yet, together with every change made meanwhile."""
        self._stock |= skus
        if self._stock_timer is None and self._stock:
            self._stock_timer = asyncio.get_running_loop().call_later(self.stock_delay(), self._stock_due)

    def _stock_due(self) -> None:
        self._stock_timer = None
        skus, self._stock = self._stock, set()
        self.request(skus)

    def close(self) -> None:
        """Drop a stock change waiting for its delay (the next start plans every label anyway)."""
        if self._stock_timer is not None:
            self._stock_timer.cancel()
            self._stock_timer = None
        self._stock.clear()

    async def run(self) -> None:
        """Carry out requests, merged, until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            skus, self._skus = self._skus, set()
            macs, self._macs = self._macs, set()
            try:
                if skus is None or skus:
                    await self.plan(skus)
                if macs and skus is not None:
                    await self.plan(None, macs=macs)
            except StoreError as err:
                log.warning("labels: planning failed, retrying at the next change or sweep: %s", err)
            except Exception as err:  # noqa: BLE001 - one bad plan must not stop the labels for the rest of the day
                self._log_once.error(("plan", type(err).__name__),
                                     "labels: planning failed unexpectedly, retrying at the next change or sweep: "
                                     "%s: %s", type(err).__name__, err)

    async def plan(self, skus: set[str] | None = None, *, macs: set[str] | None = None, force: bool = False,
                   urgent: bool = False) -> int:
        """Work out what the labels of ``skus`` (every label when None; only ``macs`` if given) should
        show, and queue those whose content changed (all of them with ``force``; ``urgent`` first);
        returns how many were queued."""
        labels = self.labels
        async with self._lock:
            now = utcnow()
            targets = [(lb.mac, lb.sku, lb.model, lb.device) for lb in labels.all_labels()
                       if (skus is None or lb.sku in skus) and (macs is None or lb.mac in macs)]
            if not targets:
                return 0
            products = await labels.products(sku for _, sku, _, _ in targets)
            desired = await asyncio.to_thread(self._desire_all, targets, products, now, labels.unfit_notes())
            queued = 0
            for mac, sku, _, _ in targets:
                label, d = labels.label(mac), desired.get(mac)
                if label is None or label.sku != sku or d is None:
                    continue  # re-bound meanwhile; its own plan follows
                if isinstance(d, str):
                    labels.push_failed(mac, d)
                    continue
                labels.set_desired(mac, d, now)
                if sku is not None:
                    if d.changes_at is not None:
                        self.changes_at[sku] = d.changes_at
                    else:
                        self.changes_at.pop(sku, None)
                again = force or self._unconfirmed_too_long(label, now)
                if (again or label.pushed_hash != d.hash) and labels.queue(mac, d, again, urgent):
                    queued += 1
            self.plans += 1
            self._reschedule.set()
            labels.assess_soon(mac for mac, *_ in targets)
            return queued

    def _unconfirmed_too_long(self, label: Label, now: datetime) -> bool:
        """A push its tag has not confirmed within ``stale_after`` (the AP may have lost it): push again."""
        limit = getattr(self.configs.get(label.device), "stale_after", None)
        return (limit is not None and label.outstanding and label.pushed_at is not None
                and (now - label.pushed_at).total_seconds() > limit)

    def _desire_all(self, targets: list[tuple[str, str | None, str, str]], products: dict[str, catalog.Product],
                    now: datetime, unfit: dict[str, str]) -> dict[str, Desired | str]:
        """Runs in a thread: each label's Desired, or why it cannot have one."""
        out: dict[str, Desired | str] = {}
        cache: dict[tuple[str | None, str, str | None], Desired | str] = {}
        for mac, sku, model, device in targets:
            config = self.configs.get(device)
            template = config.url_template if config is not None else None
            url = template.format(sku=sku) if template and sku else None
            key = (sku, model, url)
            if key not in cache:
                try:
                    cache[key] = desire(sku, products.get(sku) if sku else None, model, now, url=url, tz=self.tz,
                                        unfit=unfit)
                except UnknownLabelModel as err:
                    cache[key] = f"{err}; bind the label again with a known model"
            out[mac] = cache[key]
        return out

    async def scheduler(self) -> None:
        """Plan again when a promotion starts or ends, and sweep every label every ``sweep_interval``."""
        sweep = min((c.sweep_interval for c in self.configs.values()), default=300.0)
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + sweep
        while True:
            now = utcnow()
            due = {sku for sku, at in self.changes_at.items() if at <= now}
            if due:
                for sku in due:
                    self.changes_at.pop(sku, None)
                self.request(due)
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + sweep
                self.request(None)
                for device_id in self.configs:  # GET /v1/devices shows that sweeps happen
                    self.labels.count(device_id, "sweeps")
            wait = next_sweep - loop.time()
            if self.changes_at:
                wait = min(wait, (min(self.changes_at.values()) - now).total_seconds())
            self._reschedule.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._reschedule.wait()
