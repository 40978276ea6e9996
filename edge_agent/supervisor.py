"""The device supervisor: one asyncio task owns each device.

Each owner loops: ``starting`` -> open -> ``online`` (health checks every
``check_interval`` and the driver's ``run``) -> on a DeviceError, ``offline``
(not there) or ``error`` (there, but failing) -> wait a capped, jittered
exponential backoff -> open again. A failure is logged once when it begins
and once when the device recovers, not on every retry. Nothing a device does
can stop the agent or another device.

Everyone else reads ``snapshot()``: frozen ``DeviceSnapshot``s. State changes
are published on the bus as ``device.state`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from drivers.base import DeviceConfig, DeviceState, Driver, DriverContext
from edge_agent.bus import EventBus, utcnow
from edge_agent.errors import DeviceError, DeviceMissing, TransportClosed

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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``GET /v1/devices`` and the health topic."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "last_error": self.last_error,
            "counters": dict(self.counters),
        }


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: ``initial * 2**n`` up to ``cap`` seconds."""

    initial: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.cap, self.initial * (2 ** min(attempt, 30)))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class DeviceOwner:
    """The one task that holds a device's driver; publishes its state."""

    def __init__(self, driver: Driver, bus: EventBus, backoff: Backoff):
        self.driver = driver
        self.bus = bus
        self.backoff = backoff
        self.lock = asyncio.Lock()
        cfg = driver.config
        self._snapshot = DeviceSnapshot(cfg.id, cfg.kind, DeviceState.OFFLINE, utcnow())
        self._task: asyncio.Task[None] | None = None
        self._failing_since: datetime | None = None
        self._reopen = asyncio.Event()
        driver._busy_hook = self._busy

    @property
    def snapshot(self) -> DeviceSnapshot:
        """The device's current state, with a copy of its counters."""
        return replace(self._snapshot, counters=dict(self.driver.ctx.counters))

    def start(self) -> None:
        """Start the owner task."""
        self._task = asyncio.create_task(self._loop(), name=f"device:{self._snapshot.id}")

    async def stop(self) -> None:
        """Cancel the owner task and close the driver."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    def reopen(self) -> None:
        """Close and reopen the device now, skipping any backoff wait."""
        self._reopen.set()

    def _set(self, state: DeviceState, error: str | None = None) -> None:
        old = self._snapshot
        if old.state == state and old.last_error == (error or old.last_error):
            return
        self._snapshot = replace(
            old, state=state, since=utcnow() if old.state != state else old.since, last_error=error or old.last_error
        )
        self.bus.publish("device.state", {**self.snapshot.as_dict(), "previous": old.state.value})

    @contextlib.asynccontextmanager
    async def _busy(self) -> AsyncIterator[None]:
        async with self.lock:
            self._set(DeviceState.BUSY)
            try:
                yield
            finally:
                if self._snapshot.state == DeviceState.BUSY:
                    self._set(DeviceState.ONLINE)

    async def _close(self) -> None:
        try:
            await asyncio.wait_for(self.driver.close(), self.driver.op_timeout)
        except (DeviceError, OSError, asyncio.TimeoutError) as err:
            log.debug("%s: close failed: %s", self._snapshot.id, err)

    def _failed(self, err: Exception) -> None:
        state = DeviceState.OFFLINE if isinstance(err, _ABSENT) else DeviceState.ERROR
        message = str(err) or type(err).__name__
        if self._failing_since is None:
            self._failing_since = utcnow()
            log.warning("%s (%s): %s: %s", self._snapshot.id, self._snapshot.kind, state.value, message)
        self.driver.ctx.count("failures")
        self._set(state, message)

    def _recovered(self) -> None:
        if self._failing_since is not None:
            down = (utcnow() - self._failing_since).total_seconds()
            log.warning("%s (%s): back online after %.1f s", self._snapshot.id, self._snapshot.kind, down)
            self._failing_since = None
        self._set(DeviceState.ONLINE)

    async def _session(self) -> None:
        """One open-to-failure session of the device."""
        driver = self.driver
        self._set(DeviceState.STARTING)
        try:
            await asyncio.wait_for(driver.open(), driver.op_timeout)
        except asyncio.TimeoutError as err:
            raise DeviceMissing(f"no answer while opening within {driver.op_timeout} s") from err
        self._recovered()
        runner = asyncio.create_task(driver.run(), name=f"device-run:{self._snapshot.id}")
        try:
            while True:
                reopen = asyncio.create_task(self._reopen.wait())
                done, _ = await asyncio.wait(
                    {runner, reopen}, timeout=driver.check_interval, return_when=asyncio.FIRST_COMPLETED
                )
                reopen.cancel()
                if runner in done:
                    runner.result()  # raises the driver's error, if any
                    raise TransportClosed("the driver's session ended")
                if self._reopen.is_set():
                    return
                async with self.lock:
                    try:
                        await asyncio.wait_for(driver.check(), driver.op_timeout)
                    except asyncio.TimeoutError as err:
                        raise DeviceError(f"health check took over {driver.op_timeout} s") from err
                if self._snapshot.state == DeviceState.ERROR:
                    self._recovered()
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner

    async def _loop(self) -> None:
        attempt = 0
        while True:
            self._reopen.clear()
            try:
                await self._session()
                attempt = 0  # an asked-for reopen: go straight back
            except (DeviceError, OSError) as err:
                self._failed(err)
            except Exception as err:  # noqa: BLE001 - a driver bug must not kill its owner
                log.exception("%s: driver bug", self._snapshot.id)
                self._failed(DeviceError(f"driver error: {type(err).__name__}: {err}"))
            await self._close()
            if self._reopen.is_set():
                attempt = 0
                continue
            delay = self.backoff.delay(attempt)
            attempt += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._reopen.wait(), delay)


DriverFactory = Callable[[DeviceConfig, DriverContext], Driver]


class Supervisor:
    """Owns every configured device; ``start()`` returns at once, devices come up on their own."""

    def __init__(
        self,
        devices: list[DeviceConfig],
        registry: dict[str, type[Driver]],
        bus: EventBus,
        backoff: Backoff = Backoff(),
        factory: DriverFactory | None = None,
    ):
        self.bus = bus
        self.owners: dict[str, DeviceOwner] = {}
        for cfg in devices:
            if not cfg.enabled:
                continue
            ctx = DriverContext(cfg.id, bus, logging.getLogger(f"edge_agent.device.{cfg.id}"))
            driver = factory(cfg, ctx) if factory else registry[cfg.kind](cfg, ctx)
            self.owners[cfg.id] = DeviceOwner(driver, bus, backoff)

    async def start(self) -> None:
        """Start one owner task per device."""
        for owner in self.owners.values():
            owner.start()

    async def stop(self) -> None:
        """Stop every device, in parallel."""
        await asyncio.gather(*(o.stop() for o in self.owners.values()))

    def snapshot(self) -> list[DeviceSnapshot]:
        """Every device's current state."""
        return [o.snapshot for o in self.owners.values()]

    def driver(self, device_id: str) -> Driver:
        """The driver of one device (KeyError if unknown)."""
        return self.owners[device_id].driver
