"""The label service: keeps every shelf label showing what the checkout charges, and owns each label's state.

    bus: catalog.updated ────────────────┐
    bus: stock.changed, stock.sold ──────┤ (after stock_delay, coalesced)
    promotions starting or ending ───────┼─> plan ─> per-device push queues ─> driver.push
    sweep every sweep_interval ──────────┘     (content_hash: only labels whose content changed)
    driver.check() polls ─> observed() ─> confirmations, drift, tag health ─> monitor ─> alerts

The labels live in memory, loaded from the store at start and written back by
the ``Recorder``; bindings come from devices.yaml (applied at every start) and
from the API (kept: edge_agent/usecases/labels.py writes them, then hands the
label to ``put``). Plans run one at a time, so an older plan never overwrites
a newer one. The CPU-heavy parts run off the event loop, which keeps serving
the API and the scanners: content hashes in a thread (planner.py), drawing in
a worker process (renderer.py).

A label's state changes here and nowhere else: the helpers (planner, pushers,
monitor, views, bindings) read labels through ``label``, ``all_labels``,
``device_labels`` and ``tag_state`` and report what they found through the
methods below (``set_desired``, ``pushed``, ``push_failed``, ``mark_wrong``,
``mark_right``, ``put``); each of those changes the label and marks it for
the recorder. The labels they read are the service's own objects, to read
only. watch.py's pure functions change labels only when ``_apply`` hands
them the service's labels.
"""

from __future__ import annotations

import asyncio
import logging
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from drivers.base import DeviceState
from drivers.shelf_label.config import LabelDeviceConfig
from drivers.shelf_label.driver import LabelDriver, PushResult, Snapshot, TagState
from edge_agent import catalog, stock
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig
from edge_agent.labels import bindings, health, watch
from edge_agent.labels.alerts import Alerts
from edge_agent.labels.plan import Desired
from edge_agent.labels.planner import Planner
from edge_agent.labels.pusher import DevicePusher, Job
from edge_agent.labels.renderer import Renderer
from edge_agent.labels.table import Label, Recorder, load
from edge_agent.store import Store
from edge_agent.supervisor import Supervisor
from edge_core.bus import BusEvent, utcnow
from edge_core.logonce import LogOnce
from edge_core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ALL = None  # plan every label
_UP = {DeviceState.ONLINE, DeviceState.BUSY}
# Content hashes whose price did not fit their model, remembered so that a sweep
# does not draw them again just to find out (see plan.desire's ``unfit``).
_UNFIT_MAX = 10_000


class LabelService:
    """Plans, pushes and watches the labels of every shelf-label device; the one owner of their state."""

    def __init__(self, config: AgentConfig, store: Store, bus: EventBus, supervisor: Supervisor,
                 render_processes: int = 1):
        self.config = config
        self.store = store
        self.bus = bus
        self.supervisor = supervisor
        self.tz = zoneinfo.ZoneInfo(config.store.timezone)
        self._devices: dict[str, LabelDriver] = {
            dev_id: owner.driver for dev_id, owner in supervisor.owners.items()
            if isinstance(owner.driver, LabelDriver)}
        self.devices: Mapping[str, LabelDriver] = MappingProxyType(self._devices)
        self._labels: dict[str, Label] = {}
        self._tag_states: dict[str, TagState] = {}
        self._by_device: dict[str, list[Label]] | None = None
        self._recorder = Recorder(store, self._labels)
        self.alerts = Alerts(store, bus)
        self._pushers: dict[str, DevicePusher] = {}
        self._renderer = Renderer(render_processes)
        configs = {dev_id: d.config for dev_id, d in self._devices.items()}
        self.monitor = health.Monitor(self, self.alerts, configs)
        self.planner = Planner(self, configs, self.tz)
        self._unfit: dict[str, str] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._snapshot_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._urgent: set[asyncio.Task[int]] = set()
        self._log_once = LogOnce(log)
        self.started = False

    # Life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Load the labels, apply devices.yaml's bindings, attach to the drivers, start planning."""
        if not self._devices and not await self.store.read(lambda c: c.execute("SELECT 1 FROM labels LIMIT 1")
                                                            .fetchone()):
            return  # no label devices and no labels: nothing to do
        await bindings.apply_config(self.store, self._devices, {d.id for d in self.config.devices})
        for label in await self.store.read(lambda c: load(c)):
            self._labels[label.mac] = label
        self._by_device = None
        await self.alerts.load()
        for dev_id, driver in self._devices.items():
            driver.attach(self)
            self._pushers[dev_id] = DevicePusher(self, driver, self._renderer, lambda d=dev_id: self.device_up(d))
            self._pushers[dev_id].start()
        self._recorder.start()
        sub = self.bus.subscribe("catalog.updated", stock.STOCK_CHANGED, stock.STOCK_SOLD, "device.state",
                                 maxsize=10_000)
        self._tasks = [
            asyncio.create_task(self._listen(sub), name="labels-bus"),
            asyncio.create_task(self.planner.run(), name="labels-planner"),
            asyncio.create_task(self.planner.scheduler(), name="labels-scheduler"),
            asyncio.create_task(self._watcher(), name="labels-watcher"),
            asyncio.create_task(self.monitor.run(), name="labels-monitor"),
        ]
        self.started = True
        self.request_plan(ALL)
        log.info("labels: %d label(s) on %d device(s)", len(self._labels), len(self._devices))

    async def stop(self) -> None:
        """Stop pushing and planning; write back what changed."""
        if not self.started:
            return
        self.started = False
        await cancel_and_wait(*self._tasks, *self._urgent)
        self._tasks = []
        self.planner.close()
        await asyncio.gather(*(p.stop() for p in self._pushers.values()))
        await self._recorder.stop()
        await asyncio.to_thread(self._renderer.close)

    async def flush(self) -> None:
        """Return once every label changed so far is written to the store."""
        await self._recorder.flush()

    # What the helpers read ----------------------------------------------------

    @property
    def labels(self) -> Mapping[str, Label]:
        """Every label by id, read-only (a label changes through the methods of this service)."""
        return MappingProxyType(self._labels)

    def label(self, mac: str) -> Label | None:
        """The label ``mac``, to read; None if there is none."""
        return self._labels.get(mac)

    def all_labels(self) -> list[Label]:
        """Every label, to read."""
        return list(self._labels.values())

    def device_labels(self, device_id: str) -> list[Label]:
        """The labels bound to (or last bound to) ``device_id``."""
        if self._by_device is None:
            self._by_device = {}
            for lb in self._labels.values():
                self._by_device.setdefault(lb.device, []).append(lb)
        return self._by_device.get(device_id, [])

    def tag_state(self, mac: str) -> TagState | None:
        """What the last poll of its device said about label ``mac``."""
        return self._tag_states.get(mac)

    def device_config(self, device_id: str) -> LabelDeviceConfig | None:
        """The devices.yaml entry of label device ``device_id``."""
        driver = self._devices.get(device_id)
        return driver.config if driver is not None else None

    def label_ids(self, text: str) -> dict[str, str | ValueError]:
        """``text`` as each label device names a label, or why that device cannot take it."""
        out: dict[str, str | ValueError] = {}
        for dev_id, driver in self._devices.items():
            try:
                out[dev_id] = driver.label_id(text)
            except ValueError as err:
                out[dev_id] = err
        return out

    def find(self, text: str) -> Label | None:
        """The label ``text`` names, as given or as any label device writes it."""
        for mac in self.label_ids(text).values():
            if isinstance(mac, str) and mac in self._labels:
                return self._labels[mac]
        return self._labels.get(text)

    def label_alerts(self, mac: str) -> list[str]:
        """The kinds of the alerts up for label ``mac``."""
        return sorted(k for (s, k) in self.alerts.active if s == mac)

    def queued(self) -> int:
        """Labels waiting to be pushed or being pushed."""
        return sum(p.busy for p in self._pushers.values())

    def forced(self, device_id: str, mac: str) -> bool:
        """True while a forced push of label ``mac`` (a re-push) is queued or under way at ``device_id``."""
        pusher = self._pushers.get(device_id)
        return pusher is not None and pusher.forced(mac)

    def inflight(self, device_id: str) -> frozenset[str]:
        """The labels of ``device_id`` being pushed right now."""
        pusher = self._pushers.get(device_id)
        return frozenset(pusher.inflight) if pusher is not None else frozenset()

    def summary(self) -> dict[str, Any] | None:
        """What ``GET /v1/health`` shows of the labels (None when the service did not start): the monitor's
        summary, plus ``past_grace`` (labels wrong past their grace: their price alerts) and since when the
        oldest of them is."""
        if not self.started:
            return None
        out = self.monitor.summary()
        price = [since for (_, kind), since in self.alerts.active.items() if kind == "price"]
        out["past_grace"] = len(price)
        out["oldest_past_grace_since"] = min(price).isoformat() if price else None
        return out

    def unfit_notes(self) -> dict[str, str]:
        """Content hashes whose price did not fit their model, and why (a copy, for a thread to read)."""
        return dict(self._unfit)

    async def products(self, skus: Iterable[str | None]) -> dict[str, catalog.Product]:
        """The catalog's products of ``skus`` as the checkout sells them now."""
        wanted = {s for s in skus if s}
        return await self.store.read(lambda c: catalog.products(c, wanted)) if wanted else {}

    async def settle(self) -> None:
        """Have the monitor look at what changed, so that a reader sees when a label went wrong."""
        await self.monitor.settle()

    def found_wrong(self, label: Label, at: datetime) -> datetime:
        """``label`` was found not compliant at ``at`` by a reader: since when it is (the monitor keeps it)."""
        return self.monitor.found_wrong(label, at)

    def device_note(self, device_id: str) -> str | None:
        """Why a label device cannot push now (not configured, offline, in error), or None."""
        owner = self.supervisor.owners.get(device_id)
        if owner is None or device_id not in self._devices:
            return f"label device {device_id} is not in devices.yaml (or disabled)"
        snap = owner.snapshot
        if snap.state in _UP:
            return None
        return f"label device {device_id} is {snap.state.value}" + (f": {snap.last_error}" if snap.last_error else "")

    def device_up(self, device_id: str) -> bool:
        """True when the label device takes pushes (online or busy)."""
        owner = self.supervisor.owners.get(device_id)
        return owner is not None and owner.snapshot.state in _UP

    # What changes a label ----------------------------------------------------

    def hold(self, mac: str) -> None:
        """A flow is writing ``mac``'s binding: its old row is not written back until ``release``."""
        self._recorder.hold(mac)

    def release(self, mac: str) -> None:
        """The flow's write of ``mac`` is over (and ``put`` done, if it succeeded)."""
        self._recorder.release(mac)

    def put(self, label: Label) -> None:
        """Add or replace a label (a binding written to the store) and write it back with the next batch."""
        self._labels[label.mac] = label
        self._by_device = None
        self._recorder.mark(label)

    def set_desired(self, mac: str, d: Desired, now: datetime) -> Label | None:
        """Record what ``mac`` should show, if that changed; the label, or None if it is gone."""
        label = self._labels.get(mac)
        if label is None:
            return None
        new = (d.hash, d.price, d.note, d.checkout)
        if new != (label.desired_hash, label.desired_price, label.desired_note, label.checkout_price):
            label.desired_hash, label.desired_price, label.desired_note, label.checkout_price = new
            label.planned_at = now
            self._recorder.mark(label)
        return label

    def mark_wrong(self, mac: str, at: datetime) -> datetime | None:
        """``mac`` was found not compliant at ``at`` (by whoever looked first): since when it is."""
        label = self._labels.get(mac)
        if label is None:
            return None
        if label.wrong_since is None:
            label.wrong_since = at
            self._recorder.mark(label)
        return label.wrong_since

    def mark_right(self, mac: str) -> None:
        """``mac`` shows the checkout's price again."""
        label = self._labels.get(mac)
        if label is not None and label.wrong_since is not None:
            label.wrong_since = None
            self._recorder.mark(label)

    def pushed(self, mac: str, d: Desired, result: PushResult, token: str | None, planned: str | None = None) -> None:
        """The back end accepted ``d`` for ``mac`` (drawn for the plan with hash ``planned``: a notice
        when its price did not fit); a file shows it at once."""
        label = self._labels.get(mac)
        if label is None:
            return
        now = utcnow()
        label.pushed_hash, label.pushed_price, label.pushed_sku = d.hash, d.price, d.sku
        label.pushed_at, label.push_token = now, token
        label.last_error = label.error_at = None
        if d.hash != label.desired_hash and (planned is None or planned == label.desired_hash):
            # The notice drawn instead of this plan's price. Only for the plan still wanted: a
            # newer plan made while this push was on its way is queued and must not be undone.
            self.set_desired(mac, d, now)
        if result.confirmed:
            watch.confirm(label, result.token, now)
            self.monitor.dirty([mac])
        self._recorder.mark(label)

    def push_failed(self, mac: str, error: str) -> None:
        """``mac`` could not be pushed: it shows what it showed before."""
        label = self._labels.get(mac)
        if label is None:
            return
        label.last_error, label.error_at = error[:500], utcnow()
        self._recorder.mark(label)
        self.monitor.dirty([mac])

    def unfit(self, wanted: Desired, drawn: Desired) -> None:
        """``wanted``'s price did not fit its model; ``drawn`` is the notice shown instead."""
        if len(self._unfit) >= _UNFIT_MAX:
            self._unfit.pop(next(iter(self._unfit)))
        self._unfit[wanted.hash] = drawn.note or ""

    # Pushing -------------------------------------------------------------------

    def queue(self, mac: str, d: Desired, force: bool, urgent: bool) -> bool:
        """Queue ``d`` for label ``mac`` at its device's pusher; False when it has none."""
        label = self._labels.get(mac)
        pusher = self._pushers.get(label.device) if label is not None else None
        if pusher is None:
            return False
        pusher.submit(Job(mac, d, force), urgent)
        return True

    def assess_soon(self, macs: Iterable[str]) -> None:
        """Have the monitor look at these labels at its next pass."""
        self.monitor.dirty(macs)

    def count(self, device_id: str, name: str, n: int = 1) -> None:
        """Add to a label device's counter (GET /v1/devices shows it)."""
        driver = self._devices.get(device_id)
        if driver is not None:
            driver.ctx.count(name, n)

    def set_counters(self, device_id: str, counters: dict[str, int]) -> None:
        """Set a label device's label counters."""
        driver = self._devices.get(device_id)
        if driver is not None:
            driver.ctx.counters.update(counters)

    # The bus ----------------------------------------------------------------

    async def _listen(self, sub: Any) -> None:
        dropped = 0
        try:
            async for event in sub:
                if sub.dropped != dropped:  # we fell behind: some changes are lost, look at everything
                    dropped = sub.dropped
                    self.request_plan(ALL)
                try:
                    self._on_event(event)
                except Exception as err:  # noqa: BLE001 - one odd event must not deafen the labels for the day
                    self._log_once.error(("event", event.type), "labels: cannot handle %s %r: %s: %s",
                                         event.type, event.data, type(err).__name__, err)
        finally:
            sub.close()

    def _on_event(self, event: BusEvent) -> None:
        data = event.data
        if event.type == "catalog.updated":
            self.request_plan(set(data.get("skus") or ()))
        elif event.type == stock.STOCK_CHANGED and isinstance(data.get("sku"), str):
            self.planner.request_stock({data["sku"]})
        elif event.type == stock.STOCK_SOLD and isinstance(data.get("skus"), list):
            self.planner.request_stock({s for s in data["skus"] if isinstance(s, str)})
        elif event.type == "device.state" and data.get("id") in self._devices:
            self.monitor.device_state(data["id"], data.get("state"), data.get("last_error"))
            up = data.get("state") in {s.value for s in _UP}
            self._pushers[data["id"]].set_online(up)

    # Planning (planner.py) ----------------------------------------------------

    def request_plan(self, skus: set[str] | None, macs: set[str] | None = None) -> None:
        """Plan the labels of ``skus`` (all when None), and ``macs``, soon."""
        self.planner.request(skus, macs)

    async def plan(self, skus: set[str] | None = ALL, *, macs: set[str] | None = None, force: bool = False,
                   urgent: bool = False) -> int:
        """Plan now (see Planner.plan); returns how many labels were queued."""
        return await self.planner.plan(skus, macs=macs, force=force, urgent=urgent)

    def push_soon(self, macs: set[str], *, force: bool = False) -> asyncio.Task[int]:
        """Plan ``macs`` now and queue them ahead of any bulk update (``force``: even unchanged), in a task of
        the service's own: it runs to its end even when whoever asked has gone. The task gives how many
        labels were queued."""
        task = asyncio.create_task(self.plan(ALL, macs=macs, force=force, urgent=True), name="labels-urgent")
        self._urgent.add(task)
        task.add_done_callback(self._urgent_done)
        return task

    def _urgent_done(self, task: asyncio.Task[int]) -> None:
        self._urgent.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The sweep plans the label again; whoever awaited the task has the error too.
            err = task.exception()
            self._log_once.warning(("urgent", type(err).__name__), "labels: planning a label at once failed, the "
                                   "next sweep plans it: %s: %s", type(err).__name__, err)

    # What the drivers report (drivers.shelf_label.driver.LabelSink) ----------

    def watched(self, device_id: str) -> list[str]:
        """The device's labels, those waiting for a confirmation first."""
        mine = self.device_labels(device_id)
        return [lb.mac for lb in sorted(mine, key=lambda lb: not lb.outstanding)]

    def observed(self, snapshot: Snapshot) -> None:
        """Keep the newest poll of each device; the watcher handles it. The tags' states are
        taken at once: the push workers check a tag's hardware type before pushing to it."""
        self._tag_states.update((mac, s) for mac, s in snapshot.tags.items()
                                if mac in self._labels and self._labels[mac].device == snapshot.device)
        self._snapshots[snapshot.device] = snapshot
        self._snapshot_ready.set()

    async def refresh(self, device_id: str, labels: list[str] | None) -> dict[str, Any]:
        """The ``refresh_labels`` command: push again, changed or not."""
        macs = {lb.mac for lb in self.device_labels(device_id)}
        if labels is not None:
            unknown = sorted(set(labels) - macs)
            if unknown:
                raise ValueError(f"not bound to {device_id}: {', '.join(unknown[:10])}")
            macs = set(labels)
        queued = await self.plan(ALL, macs=macs, force=True)
        return {"device": device_id, "queued": queued}

    async def _watcher(self) -> None:
        while True:
            await self._snapshot_ready.wait()
            self._snapshot_ready.clear()
            snapshots, self._snapshots = self._snapshots, {}
            for snapshot in snapshots.values():
                try:
                    self._apply(snapshot)
                except Exception as err:  # noqa: BLE001 - the next poll is looked at all the same
                    self._log_once.error(("poll", snapshot.device), "labels: cannot apply a poll of %s: %s: %s",
                                         snapshot.device, type(err).__name__, err)

    def _apply(self, snapshot: Snapshot) -> None:
        now = utcnow()
        # A label being pushed may already show the new picture at the back end before
        # ``pushed`` records it: that poll must not take our own push for drift.
        outcome = watch.apply(snapshot, self._labels, now, self.inflight(snapshot.device))
        for label in outcome.changed:
            self._recorder.mark(label)
        if outcome.drifted:
            log.info("labels: %d label(s) of %s no longer show what was pushed; pushing again",
                     len(outcome.drifted), snapshot.device)
            self.request_plan(set(), set(outcome.drifted))
        self.monitor.dirty(outcome.confirmed + outcome.drifted)
        self.monitor.tags_seen(snapshot, now)
