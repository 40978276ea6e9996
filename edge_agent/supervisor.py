"""The device supervisor: one asyncio task owns each device.

Each owner loops: ``starting`` -> open -> ``online`` (health checks every
``check_interval`` and the driver's ``run``) -> on a DeviceError, ``offline``
(not there) or ``error`` (there, but failing) -> wait a capped, jittered
exponential backoff (edge_core/backoff.py) -> open again. Retries of a failing device stay in
``offline``/``error`` (``since`` is when the failure began); the backoff starts
over once the device is back online. A ``run()`` that returns ends the
session like an unplug; any other exception is a driver bug and shows as
``error``. A failure is logged once when it begins and once when the device
recovers, not on every retry. Nothing a device does can stop the agent or
another device.

Everyone else reads ``snapshot()``: frozen ``DeviceSnapshot``s. State changes
are published on the bus as ``device.state`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from drivers.base import DeviceConfig, DeviceState, Driver, DriverContext
from edge_agent.bus import EventBus
from edge_core.backoff import Backoff
from edge_core.bus import utcnow
from edge_core.errors import DeviceError, DeviceMissing, DeviceTimeout, TransportClosed

log = logging.getLogger(__name__)

# Errors that mean "the device is not there" rather than "it is there and failing".
_ABSENT = (DeviceMissing, TransportClosed)


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """A device as the API and health reports show it."""

    id: str
    kind: str
    state: DeviceState
    since: datetime
    last_error: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    # The remote actions its driver declares (``reopen`` first): what the consoles offer.
    actions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``GET /v1/devices`` and the health topic."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "last_error": self.last_error,
            "counters": dict(self.counters),
            "actions": list(self.actions),
        }


class DeviceOwner:
    """The one task that holds a device's driver; publishes its state."""

    # Seconds stop() waits for the owner task to end (a driver that ignores
    # cancellation must not hold up the agent's shutdown).
    stop_timeout: float = 3.0

    def __init__(self, driver: Driver, bus: EventBus, backoff: Backoff):
        self.driver = driver
        self.bus = bus
        self.backoff = backoff
        self.lock = asyncio.Lock()
        cfg = driver.config
        self._snapshot = DeviceSnapshot(cfg.id, cfg.kind, DeviceState.OFFLINE, utcnow(), actions=driver.actions())
        self._task: asyncio.Task[None] | None = None
        self._failing_since: datetime | None = None
        self._attempt = 0
        self._reopen = asyncio.Event()
        driver._busy_hook = self._busy
        driver._fault_hook = self._fault

    @property
    def snapshot(self) -> DeviceSnapshot:
        """The device's current state, with a copy of its counters (its declared health fields from 0)."""
        return replace(self._snapshot, counters={**dict.fromkeys(self.driver.health_fields, 0),
                                                 **self.driver.ctx.counters})

    def start(self) -> None:
        """Start the owner task (once; a second call while it runs does nothing)."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.create_task(self._loop(), name=f"device:{self._snapshot.id}")

    async def stop(self) -> None:
        """Cancel the owner task, wait for it (bounded) and close the driver."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait, not ``await task``: it never swallows a cancellation
            # of stop() itself, and it bounds the wait.
            await asyncio.wait({task}, timeout=self.stop_timeout)
            if not task.done():
                log.error("%s: owner task ignored cancellation for %.0f s; abandoning it",
                          self._snapshot.id, self.stop_timeout)
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s: owner task had died", self._snapshot.id, exc_info=task.exception())
        await self._close()

    def reopen(self) -> None:
        """Close and reopen the device now, skipping any backoff wait."""
        self._reopen.set()

    def _set(self, state: DeviceState, error: str | None = None) -> None:
        """Enter ``state``; publish ``device.state`` if the state or the error changed.

        ``since`` moves only when the state changes. ``last_error`` is the most
        recent failure and is kept after recovery, so a flapping device shows
        why it last failed; a new failure replaces it.
        """
        old = self._snapshot
        last_error = error if error is not None else old.last_error
        if old.state == state and old.last_error == last_error:
            return
        since = utcnow() if old.state != state else old.since
        self._snapshot = replace(old, state=state, since=since, last_error=last_error)
        self.bus.publish("device.state", {**self.snapshot.as_dict(), "previous": old.state.value})

    @contextlib.asynccontextmanager
    async def _busy(self) -> AsyncIterator[None]:
        async with self.lock:
            # Only an online device turns busy: a job tried on an offline one
            # must not make it look online when the job ends.
            was_online = self._snapshot.state == DeviceState.ONLINE
            if was_online:
                self._set(DeviceState.BUSY)
            try:
                yield
            finally:
                if was_online and self._snapshot.state == DeviceState.BUSY:
                    self._set(DeviceState.ONLINE)

    def _fault(self, reason: str | None) -> None:
        """The driver's word that its open device cannot work now (``reason``) or works again (None)."""
        if reason is not None:
            self._failed(DeviceError(reason))
        elif self._snapshot.state == DeviceState.ERROR:
            self._recovered()

    async def _close(self) -> None:
        """Close the driver; never raises (a driver bug in close must not kill the owner)."""
        try:
            async with asyncio.timeout(self.driver.op_timeout):
                await self.driver.close()
        except (DeviceError, OSError) as err:  # TimeoutError is an OSError
            log.debug("%s: close failed: %s", self._snapshot.id, err)
        except Exception:  # noqa: BLE001 - close must not raise, even when it has a bug
            log.debug("%s: close raised", self._snapshot.id, exc_info=True)

    def _failed(self, err: BaseException, bug: bool = False) -> None:
        """Mark the device failing; log only when the failure begins."""
        state = DeviceState.OFFLINE if isinstance(err, _ABSENT) else DeviceState.ERROR
        message = str(err) or type(err).__name__
        if bug:
            message = f"driver error: {type(err).__name__}: {message}"
        if self._failing_since is None:
            self._failing_since = utcnow()
            log.warning("%s (%s): %s: %s", self._snapshot.id, self._snapshot.kind, state.value, message,
                        exc_info=err if bug else None)
        self.driver.ctx.count("failures")
        self._set(state, message)

    def _recovered(self) -> None:
        """Mark the device online; log once if it had been failing."""
        self._attempt = 0  # the next failure starts the backoff from the beginning
        if self._failing_since is not None:
            down = (utcnow() - self._failing_since).total_seconds()
            log.warning("%s (%s): back online after %.1f s", self._snapshot.id, self._snapshot.kind, down)
            self._failing_since = None
        self._set(DeviceState.ONLINE)

    async def _session(self) -> None:
        """One open-to-failure session; returns normally only for a requested reopen."""
        driver = self.driver
        if self._failing_since is None:
            # A retry of a failing device stays offline/error: flipping to
            # ``starting`` on every retry would move ``since`` and flood the bus.
            self._set(DeviceState.STARTING)
        # asyncio.timeout rather than wait_for: on 3.11 wait_for can swallow a
        # cancellation that races with the inner call finishing, and stop()
        # would then wait on an owner that never ends.
        async with _deadline(driver.op_timeout, DeviceMissing,
                             f"no answer while opening within {driver.op_timeout} s"):
            await driver.open()
        self._recovered()
        runner = asyncio.create_task(driver.run(), name=f"device-run:{self._snapshot.id}")
        reopen = asyncio.create_task(self._reopen.wait(), name=f"device-reopen:{self._snapshot.id}")
        try:
            while True:
                await asyncio.wait({runner, reopen}, timeout=driver.check_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                if runner.done():
                    if runner.cancelled():  # only the driver itself can have done that
                        raise RuntimeError("run() raised CancelledError")
                    runner.result()  # raises the driver's error, if any
                    raise TransportClosed("the driver's run() returned; the session ended")
                if reopen.done():
                    return
                async with self.lock:
                    async with _deadline(driver.op_timeout, DeviceTimeout,
                                         f"health check took over {driver.op_timeout} s"):
                        await driver.check()
        finally:
            # Our own helper tasks end with the session, whatever ended it.
            # asyncio.wait (not ``await runner``) so that a cancellation of this
            # task, e.g. by stop(), is never swallowed here.
            reopen.cancel()
            runner.cancel()
            await asyncio.wait({runner, reopen}, timeout=self.stop_timeout)

    async def _loop(self) -> None:
        while True:
            self._reopen.clear()
            try:
                await self._session()
            except (DeviceError, OSError) as err:
                self._failed(err)
            except asyncio.CancelledError as err:
                if _being_cancelled():
                    raise  # stop(): end the owner
                # A CancelledError we did not ask for came out of the driver.
                self._failed(err, bug=True)
            except Exception as err:  # noqa: BLE001 - a driver bug must not kill its owner
                self._failed(err, bug=True)
            await self._close()
            if self._reopen.is_set():
                continue  # asked for: reopen at once, no backoff
            delay = self.backoff.delay(self._attempt)
            if self.driver.retry_cap is not None:
                delay = min(delay, self.driver.retry_cap)
            self._attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._reopen.wait()


@contextlib.asynccontextmanager
async def _deadline(seconds: float, error: type[DeviceError], message: str) -> AsyncIterator[None]:
    """Raise ``error(message)`` when the body runs over ``seconds``; the body's own errors pass."""
    cm = asyncio.timeout(seconds)
    try:
        async with cm:
            yield
    except TimeoutError as err:
        if cm.expired():
            raise error(message) from err
        raise


def _being_cancelled() -> bool:
    """True when the running task itself has been asked to cancel."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


DriverFactory = Callable[[DeviceConfig, DriverContext], Driver]


class Supervisor:
    """Owns every configured device; ``start()`` returns at once, devices come up on their own.

    ``add``, ``remove`` and ``replace`` change the set of devices while the
    agent runs (a new devices.yaml from the hub, edge_agent/config_apply.py):
    only the device named is touched. A device removed or replaced is stopped
    as at the agent's own stop, so what it had in flight ends as it does then
    (a print job cut short is queued again by the durable print queue).
    """

    def __init__(
        self,
        devices: list[DeviceConfig],
        registry: dict[str, type[Driver]],
        bus: EventBus,
        backoff: Backoff = Backoff(),
        factory: DriverFactory | None = None,
        extras: dict[str, Any] | None = None,
    ):
        self.bus = bus
        self.registry = registry
        self.backoff = backoff
        self.factory = factory
        # ``extras``: services of the agent some drivers use, by name (the
        # print queue for printers); every driver sees the same ones.
        self.extras = dict(extras or {})
        self.owners: dict[str, DeviceOwner] = {}
        self.configs: dict[str, DeviceConfig] = {}
        self._started = False
        for cfg in devices:
            if cfg.enabled:
                self._own(cfg)

    def _own(self, cfg: DeviceConfig) -> DeviceOwner:
        ctx = DriverContext(cfg.id, self.bus, logging.getLogger(f"edge_agent.device.{cfg.id}"),
                            extras=dict(self.extras))
        driver = self.factory(cfg, ctx) if self.factory else self.registry[cfg.kind](cfg, ctx)
        owner = self.owners[cfg.id] = DeviceOwner(driver, self.bus, self.backoff)
        self.configs[cfg.id] = cfg
        return owner

    async def add(self, cfg: DeviceConfig) -> None:
        """Own a new device and start it (a disabled one is left out); ValueError if its id is taken."""
        if cfg.id in self.owners:
            raise ValueError(f"device {cfg.id!r} is already supervised")
        if not cfg.enabled:
            return
        owner = self._own(cfg)
        if self._started:
            owner.start()

    async def remove(self, device_id: str) -> None:
        """Stop a device and forget it (nothing for an unknown id)."""
        owner = self.owners.pop(device_id, None)
        self.configs.pop(device_id, None)
        if owner is not None:
            await owner.stop()
            # Its last word: it is no longer in snapshot() (device.state said its states until now).
            self.bus.publish("device.removed", {"id": device_id, "kind": owner.snapshot.kind})

    async def replace(self, cfg: DeviceConfig) -> None:
        """Stop a device and start it again with a new config (its driver made anew)."""
        old = self.owners.pop(cfg.id, None)
        self.configs.pop(cfg.id, None)
        if old is not None:
            await old.stop()
        await self.add(cfg)

    async def start(self) -> None:
        """Start one owner task per device."""
        self._started = True
        for owner in self.owners.values():
            owner.start()

    async def stop(self) -> None:
        """Stop every device, in parallel."""
        self._started = False
        await asyncio.gather(*(o.stop() for o in self.owners.values()))

    def snapshot(self) -> list[DeviceSnapshot]:
        """Every device's current state."""
        return [o.snapshot for o in self.owners.values()]

    def driver(self, device_id: str) -> Driver:
        """The driver of one device (KeyError if unknown)."""
        return self.owners[device_id].driver
