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
from datetime import datetime
from typing import TYPE_CHECKING

from drivers.shelf_label.models import UnknownLabelModel
from edge_agent import catalog
from edge_agent.errors import StoreError
from edge_agent.labels.plan import Desired, desire
from edge_agent.labels.pusher import Job
from edge_agent.labels.table import Label
from edge_core.bus import utcnow
from edge_core.logonce import LogOnce

if TYPE_CHECKING:
    from edge_agent.labels.service import LabelService

log = logging.getLogger(__name__)


class Planner:
    """Plans the labels of one LabelService."""

    def __init__(self, service: "LabelService"):
        self.svc = service
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
        return min((d.config.stock_delay for d in self.svc.devices.values()), default=2.0)

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
        svc = self.svc
        async with self._lock:
            now = utcnow()
            targets = [(lb.mac, lb.sku, lb.model, lb.device) for lb in svc.labels.values()
                       if (skus is None or lb.sku in skus) and (macs is None or lb.mac in macs)]
            if not targets:
                return 0
            wanted = {sku for _, sku, _, _ in targets if sku}
            products = await svc.store.read(lambda c: catalog.products(c, wanted))
            desired = await asyncio.to_thread(self._desire_all, targets, products, now)
            queued = 0
            for mac, sku, _, _ in targets:
                label, d = svc.labels.get(mac), desired.get(mac)
                if label is None or label.sku != sku or d is None:
                    continue  # re-bound meanwhile; its own plan follows
                if isinstance(d, str):
                    svc.push_failed(mac, d)
                    continue
                self.set_desired(label, d, now)
                if sku is not None:
                    if d.changes_at is not None:
                        self.changes_at[sku] = d.changes_at
                    else:
                        self.changes_at.pop(sku, None)
                pusher = svc.pushers.get(label.device)
                again = force or self._unconfirmed_too_long(label, now)
                if pusher is not None and (again or label.pushed_hash != d.hash):
                    pusher.submit(Job(mac, d, again), urgent)
                    queued += 1
            self.plans += 1
            self._reschedule.set()
            svc.monitor.dirty(mac for mac, *_ in targets)
            return queued

    def set_desired(self, label: Label, d: Desired, now: datetime) -> None:
        """Record what ``label`` should show, if that changed."""
        new = (d.hash, d.price, d.note, d.checkout)
        if new != (label.desired_hash, label.desired_price, label.desired_note, label.checkout_price):
            label.desired_hash, label.desired_price, label.desired_note, label.checkout_price = new
            label.planned_at = now
            self.svc.recorder.mark(label)

    def _unconfirmed_too_long(self, label: Label, now: datetime) -> bool:
        """A push its tag has not confirmed within ``stale_after`` (the AP may have lost it): push again."""
        driver = self.svc.devices.get(label.device)
        limit = getattr(driver.config, "stale_after", None) if driver is not None else None
        return (limit is not None and label.outstanding and label.pushed_at is not None
                and (now - label.pushed_at).total_seconds() > limit)

    def _desire_all(self, targets: list[tuple[str, str | None, str, str]], products: dict[str, catalog.Product],
                    now: datetime) -> dict[str, Desired | str]:
        """Runs in a thread: each label's Desired, or why it cannot have one."""
        svc = self.svc
        out: dict[str, Desired | str] = {}
        cache: dict[tuple[str | None, str, str | None], Desired | str] = {}
        for mac, sku, model, device in targets:
            driver = svc.devices.get(device)
            template = driver.config.url_template if driver is not None else None
            url = template.format(sku=sku) if template and sku else None
            key = (sku, model, url)
            if key not in cache:
                try:
                    cache[key] = desire(sku, products.get(sku) if sku else None, model, now, url=url, tz=svc.tz,
                                        unfit=svc.unfit_hashes)
                except UnknownLabelModel as err:
                    cache[key] = f"{err}; bind the label again with a known model"
            out[mac] = cache[key]
        return out

    async def scheduler(self) -> None:
        """Plan again when a promotion starts or ends, and sweep every label every ``sweep_interval``."""
        sweep = min((d.config.sweep_interval for d in self.svc.devices.values()), default=300.0)
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
                for driver in self.svc.devices.values():  # GET /v1/devices shows that sweeps happen
                    driver.ctx.count("sweeps")
            wait = next_sweep - loop.time()
            if self.changes_at:
                wait = min(wait, (min(self.changes_at.values()) - now).total_seconds())
            self._reschedule.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._reschedule.wait()
