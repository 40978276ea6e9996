"""One label device's push queue: draw (renderer.py), push with bounded
concurrency, retry with backoff, report each outcome to the service.

The queue holds the newest job per label: a label planned again while it
waits is pushed once, with the newest content, and a label is never pushed by
two workers at once. Workers wait while the device is not online (the
supervisor says so on the bus). A push that still fails after ``retries``
goes back to the queue and the device's workers back off (doubling up to
``poll_interval``, the pace at which the device is checked anyway), so an
access point answering 500 to every upload is not hammered; the label is
recorded as showing what it showed before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from drivers.shelf_label.driver import LabelDriver, PushResult, TagState
from drivers.shelf_label.models import UnknownLabelModel, get_model
from drivers.shelf_label.oepl import TagNotFound
from edge_agent.labels.plan import Desired
from edge_agent.labels.renderer import Renderer
from edge_agent.labels.table import Label
from edge_core.backoff import Backoff
from edge_core.errors import DeviceError
from edge_core.logonce import LogOnce
from edge_core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Push ``desired`` to label ``mac``; ``force`` even if it was pushed before."""

    mac: str
    desired: Desired
    force: bool = False


def facts(d: Desired) -> dict[str, str]:
    """What the picture of ``d`` shows, in words, for a back end that keeps it (the PNG's text chunks)."""
    out = {"sku": d.sku} if d.sku else {}
    if d.price is not None and d.content is not None:
        out |= {"price": str(d.price), "currency": d.content.currency}
    else:
        out["notice"] = d.notice or ""
    return out


class Outcomes(Protocol):
    """What the push workers read of the label service (service.py), and how they report to it."""

    def label(self, mac: str) -> Label | None: ...
    def tag_state(self, mac: str) -> TagState | None: ...
    def pushed(self, mac: str, d: Desired, result: PushResult, token: str | None,
               planned: str | None = None) -> None: ...
    def push_failed(self, mac: str, error: str) -> None: ...
    def unfit(self, wanted: Desired, drawn: Desired) -> None: ...


class DevicePusher:
    """The push workers of one label device."""

    def __init__(self, service: Outcomes, driver: LabelDriver, renderer: Renderer,
                 online: Callable[[], bool]):
        self.service = service
        self.driver = driver
        self.device = driver.config.id
        self.renderer = renderer
        self.is_online = online
        cfg = driver.config
        self.concurrency = cfg.concurrency
        self.retries = cfg.retries
        # 0.25 s doubling up to poll_interval (within 0.5-30 s), jittered (edge_core/backoff.py).
        self.backoff = Backoff(initial=0.25, cap=max(0.5, min(30.0, cfg.poll_interval)))
        self.pending: dict[str, Job] = {}
        self.inflight: set[str] = set()
        self._forced_inflight: set[str] = set()  # labels being pushed by a forced job
        self.failures = 0  # pushes in a row that failed after their retries
        self.online = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._log_once = LogOnce(log)

    def start(self) -> None:
        """Start the workers."""
        if self.is_online():
            self.online.set()
        self._tasks = [asyncio.create_task(self._worker(), name=f"labels-push:{self.device}:{i}")
                       for i in range(self.concurrency)]

    async def stop(self) -> None:
        """Cancel the workers; what is queued is planned again at the next start."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    def set_online(self, online: bool) -> None:
        """The device came up (workers resume) or went down (they wait)."""
        if online:
            self.failures = 0
            self.online.set()
            self._wake.set()
        else:
            self.online.clear()

    def submit(self, job: Job, urgent: bool = False) -> None:
        """Queue ``job``, replacing a queued job for the same label; ``urgent`` goes first."""
        old = self.pending.pop(job.mac, None)
        if old is not None and old.force and not job.force:
            job = Job(job.mac, job.desired, force=True)
        if urgent:
            self.pending = {job.mac: job, **self.pending}
        else:
            self.pending[job.mac] = job
        self._wake.set()

    def forced(self, mac: str) -> bool:
        """Whether a forced push of ``mac`` (a re-push, a refresh) is queued or under way."""
        job = self.pending.get(mac)
        return (job is not None and job.force) or mac in self._forced_inflight

    @property
    def busy(self) -> int:
        """Labels queued or being pushed."""
        return len(self.pending) + len(self.inflight)

    def _take(self) -> Job | None:
        for mac in self.pending:
            if mac not in self.inflight:
                return self.pending.pop(mac)
        return None

    async def _worker(self) -> None:
        while True:
            await self.online.wait()
            if self.failures:
                await asyncio.sleep(self.backoff.delay(self.failures))
            job = self._take()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.inflight.add(job.mac)
            if job.force:
                self._forced_inflight.add(job.mac)
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - one label's bug must not stop the device's pushes
                log.exception("labels: pushing %s failed unexpectedly", job.mac)
                self.service.push_failed(job.mac, f"internal error: {type(err).__name__}: {err}")
            finally:
                self.inflight.discard(job.mac)
                self._forced_inflight.discard(job.mac)
                if job.mac in self.pending:
                    self._wake.set()

    async def _run(self, job: Job) -> None:
        svc = self.service
        label = svc.label(job.mac)
        if label is None or label.device != self.device:
            return  # unbound or moved meanwhile
        desired = job.desired
        if not job.force and label.pushed_hash == desired.hash:
            return  # pushed before: confirmed, or waiting for the tag
        state: TagState | None = svc.tag_state(job.mac)
        try:
            model = get_model(desired.model)
        except UnknownLabelModel as err:
            svc.push_failed(job.mac, str(err))
            return
        if state is not None and state.hw_type is not None and model.hw_type is not None \
                and state.hw_type != model.hw_type:
            svc.push_failed(job.mac, f"label model {model.name} is for hwType 0x{model.hw_type:02X} but the tag "
                                     f"reports 0x{state.hw_type:02X}; bind it again with the right model")
            return
        try:
            image, drawn = await self.renderer.draw(desired, self.driver.picture)
        except Exception as err:  # noqa: BLE001 - a missing font, a Pillow error: recorded, never fatal
            self._log_once.warning(("render", type(err).__name__), "labels: cannot draw %s: %s", job.mac, err)
            svc.push_failed(job.mac, f"cannot draw the label: {err}")
            return
        # Compare by content hash, never by identity: what comes back from the render worker is
        # a copy (pickled across the process), so an identity check took every label for a
        # price that did not fit, and from the next plan on every label showed "ask staff".
        if drawn.hash != desired.hash:
            svc.unfit(desired, drawn)  # the price did not fit: a notice instead
            if not job.force and label.pushed_hash == drawn.hash:
                return
        token = state.token if state is not None else None
        for attempt in range(self.retries + 1):
            if not self.is_online():
                self.submit(job)  # pushed when the device is back
                return
            try:
                result = await self.driver.push(job.mac, image, content_hash=drawn.hash, alias=label.sku,
                                                facts=facts(drawn))
            except TagNotFound as err:
                svc.push_failed(job.mac, str(err))
                return
            except DeviceError as err:
                if attempt < self.retries:
                    await asyncio.sleep(self.backoff.delay(attempt))
                    continue
                self.failures += 1
                self._log_once.warning(("push", self.device), "labels: %s: pushes fail: %s", self.device, err)
                svc.push_failed(job.mac, f"{type(err).__name__}: {err}")
                if job.mac not in self.pending:
                    self.pending[job.mac] = job  # again once the device takes pushes
                return
            self.failures = 0
            svc.pushed(job.mac, drawn, result, token, desired.hash)
            return
