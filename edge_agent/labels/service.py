"""The label service: keeps every shelf label showing what the checkout charges.

    bus: catalog.updated ────────────────┐
    bus: stock.changed, stock.sold ──────┤ (after stock_delay, coalesced)
    promotions starting or ending ───────┼─> plan ─> per-device push queues ─> driver.push
    sweep every sweep_interval ──────────┘     (content_hash: only labels whose content changed)
    driver.check() polls ─> observed() ─> confirmations, drift, tag health ─> monitor ─> alerts

The labels live in memory (``labels``), loaded from the store at start and
written back by the ``Recorder``; bindings come from devices.yaml (applied at
every start) and from the API (kept). Plans run one at a time, so an older
plan never overwrites a newer one. The CPU-heavy parts run off the event
loop, which keeps serving the API and the scanners: content hashes in a
thread (planner.py), drawing in a worker process (renderer.py).
"""

from __future__ import annotations

import asyncio
import logging
import zoneinfo
from typing import Any

from drivers.base import DeviceState
from drivers.shelf_label.driver import LabelDriver, PushResult, Snapshot, TagState
from edge_agent import stock
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig
from edge_agent.labels import bindings, health, watch
from edge_agent.labels.alerts import Alerts
from edge_agent.labels.plan import Desired
from edge_agent.labels.planner import Planner
from edge_agent.labels.pusher import DevicePusher
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
    """Plans, pushes and watches the labels of every shelf-label device."""

    def __init__(self, config: AgentConfig, store: Store, bus: EventBus, supervisor: Supervisor,
                 render_processes: int = 1):
        self.config = config
        self.store = store
        self.bus = bus
        self.supervisor = supervisor
        self.tz = zoneinfo.ZoneInfo(config.store.timezone)
        self.devices: dict[str, LabelDriver] = {
            dev_id: owner.driver for dev_id, owner in supervisor.owners.items()
            if isinstance(owner.driver, LabelDriver)}
        self.labels: dict[str, Label] = {}
        self.tag_states: dict[str, TagState] = {}
        self._by_device: dict[str, list[Label]] | None = None
        self.recorder = Recorder(store, self.labels)
        self.alerts = Alerts(store, bus)
        self.pushers: dict[str, DevicePusher] = {}
        self.renderer = Renderer(render_processes)
        self.monitor = health.Monitor(self)
        self.planner = Planner(self)
        self.unfit_hashes: dict[str, str] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._snapshot_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._log_once = LogOnce(log)
        self.started = False

    # Life cycle -------------------------------------------------------------

    async def start(self) -> None:
        """Load the labels, apply devices.yaml's bindings, attach to the drivers, start planning."""
        if not self.devices and not await self.store.read(lambda c: c.execute("SELECT 1 FROM labels LIMIT 1")
                                                           .fetchone()):
            return  # no label devices and no labels: nothing to do
        await bindings.apply_config(self.store, self.devices, {d.id for d in self.config.devices})
        for label in await self.store.read(lambda c: load(c)):
            self.put(label)
        await self.alerts.load()
        for dev_id, driver in self.devices.items():
            driver.attach(self)
            self.pushers[dev_id] = DevicePusher(self, driver, self.renderer, lambda d=dev_id: self.device_up(d))
            self.pushers[dev_id].start()
        self.recorder.start()
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
        log.info("labels: %d label(s) on %d device(s)", len(self.labels), len(self.devices))

    async def stop(self) -> None:
        """Stop pushing and planning; write back what changed."""
        if not self.started:
            return
        self.started = False
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        self.planner.close()
        await asyncio.gather(*(p.stop() for p in self.pushers.values()))
        await self.recorder.stop()
        await asyncio.to_thread(self.renderer.close)

    def device_note(self, device_id: str) -> str | None:
        """Why a label device cannot push now (not configured, offline, in error), or None."""
        owner = self.supervisor.owners.get(device_id)
        if owner is None or device_id not in self.devices:
            return f"label device {device_id} is not in devices.yaml (or disabled)"
        snap = owner.snapshot
        if snap.state in _UP:
            return None
        return f"label device {device_id} is {snap.state.value}" + (f": {snap.last_error}" if snap.last_error else "")

    def device_up(self, device_id: str) -> bool:
        """True when the label device takes pushes (online or busy)."""
        owner = self.supervisor.owners.get(device_id)
        return owner is not None and owner.snapshot.state in _UP

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
        elif event.type == "device.state" and data.get("id") in self.devices:
            self.monitor.device_state(data["id"], data.get("state"), data.get("last_error"))
            up = data.get("state") in {s.value for s in _UP}
            self.pushers[data["id"]].set_online(up)

    # Planning (planner.py) ----------------------------------------------------

    def request_plan(self, skus: set[str] | None, macs: set[str] | None = None) -> None:
        """Plan the labels of ``skus`` (all when None), and ``macs``, soon."""
        self.planner.request(skus, macs)

    async def plan(self, skus: set[str] | None = ALL, *, macs: set[str] | None = None, force: bool = False,
                   urgent: bool = False) -> int:
        """Plan now (see Planner.plan); returns how many labels were queued."""
        return await self.planner.plan(skus, macs=macs, force=force, urgent=urgent)

    # What the drivers report (drivers.shelf_label.driver.LabelSink) ----------

    def device_labels(self, device_id: str) -> list[Label]:
        """The labels bound to (or last bound to) ``device_id``."""
        if self._by_device is None:
            self._by_device = {}
            for lb in self.labels.values():
                self._by_device.setdefault(lb.device, []).append(lb)
        return self._by_device.get(device_id, [])

    def put(self, label: Label) -> None:
        """Add or replace a label in memory."""
        self.labels[label.mac] = label
        self._by_device = None

    def watched(self, device_id: str) -> list[str]:
        """The device's labels, those waiting for a confirmation first."""
        mine = self.device_labels(device_id)
        return [lb.mac for lb in sorted(mine, key=lambda lb: not lb.outstanding)]

    def observed(self, snapshot: Snapshot) -> None:
        """Keep the newest poll of each device; the watcher handles it. The tags' states are
        taken at once: the push workers check a tag's hardware type before pushing to it."""
        self.tag_states.update((mac, s) for mac, s in snapshot.tags.items()
                               if mac in self.labels and self.labels[mac].device == snapshot.device)
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
        pusher = self.pushers.get(snapshot.device)
        outcome = watch.apply(snapshot, self.labels, now, pusher.inflight if pusher is not None else frozenset())
        for label in outcome.changed:
            self.recorder.mark(label)
        if outcome.drifted:
            log.info("labels: %d label(s) of %s no longer show what was pushed; pushing again",
                     len(outcome.drifted), snapshot.device)
            self.request_plan(set(), set(outcome.drifted))
        self.monitor.dirty(outcome.confirmed + outcome.drifted)
        self.monitor.tags_seen(snapshot, now)

    # What the push workers report -------------------------------------------

    def pushed(self, mac: str, d: Desired, result: PushResult, token: str | None, planned: str | None = None) -> None:
        """The back end accepted ``d`` for ``mac`` (drawn for the plan with hash ``planned``: a notice
        when its price did not fit); a file shows it at once."""
        label = self.labels.get(mac)
        if label is None:
            return
        now = utcnow()
        label.pushed_hash, label.pushed_price, label.pushed_sku = d.hash, d.price, d.sku
        label.pushed_at, label.push_token = now, token
        label.last_error = label.error_at = None
        if d.hash != label.desired_hash and (planned is None or planned == label.desired_hash):
            # The notice drawn instead of this plan's price. Only for the plan still wanted: a
            # newer plan made while this push was on its way is queued and must not be undone.
            self.planner.set_desired(label, d, now)
        if result.confirmed:
            watch.confirm(label, result.token, now)
            self.monitor.dirty([mac])
        self.recorder.mark(label)

    def push_failed(self, mac: str, error: str) -> None:
        """``mac`` could not be pushed: it shows what it showed before."""
        label = self.labels.get(mac)
        if label is None:
            return
        label.last_error, label.error_at = error[:500], utcnow()
        self.recorder.mark(label)
        self.monitor.dirty([mac])

    def unfit(self, wanted: Desired, drawn: Desired) -> None:
        """``wanted``'s price did not fit its model; ``drawn`` is the notice shown instead."""
        if len(self.unfit_hashes) >= _UNFIT_MAX:
            self.unfit_hashes.pop(next(iter(self.unfit_hashes)))
        self.unfit_hashes[wanted.hash] = drawn.note or ""
