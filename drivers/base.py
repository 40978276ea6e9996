"""What every driver is: a ``kind``, a pydantic ``Config``, capabilities, and
four coroutines the supervisor calls (``open``, ``check``, ``run``, ``close``).

A driver also declares what the rest of the system learns from it, so that a
new kind is its folder plus one line in drivers/registry.py: its remote
actions (``commands``, shown in every device snapshot as ``actions`` and
offered by both consoles), its health fields (``health_fields``: the counters
its snapshot always shows, from 0) and its emulator for ``make run``
(``demo_emulator``: a ``DemoEmulator`` the demo starts and stops).

A driver never handles its own retries: it raises a ``DeviceError`` and the
supervisor (edge_agent/supervisor.py) marks the device, backs off and calls
``open`` again. A driver's constructor only stores; ``open`` acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from edge_core.bus import Bus


class DeviceState(str, enum.Enum):
    """A device's state as the supervisor sees it (CONTRACT section 3)."""

    OFFLINE = "offline"    # not there, or not reachable; retried with backoff
    STARTING = "starting"  # being opened
    ONLINE = "online"      # open and healthy
    BUSY = "busy"          # online and doing a job (printing, pushing labels)
    ERROR = "error"        # there, but failing (paper out, bad replies)


class Reporting(str, enum.Enum):
    """How a driver learns about its device: it is told (push) or it asks (poll)."""

    PUSH = "push"
    POLL = "poll"


# Device ids appear in topics, URLs and logs: keep them to a safe alphabet.
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class DeviceConfig(BaseModel):
    """Keys every device entry has; each driver's ``Config`` extends this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN, description="unique in the file")
    kind: str
    name: str | None = Field(default=None, max_length=120)
    enabled: bool = True

    def claims(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """What only one device in the file may have (a shelf label, say), each with the path
        of the key that names it, relative to this device; the config reports a second claim."""
        return []

    def clients(self) -> list[tuple[str, str, tuple[str | int, ...]]]:
        """The api clients this device names, each as (name, the role it must have, the path of its
        key relative to this device); the config reports a name that is no client of that role."""
        return []


@dataclass
class DriverContext:
    """What the supervisor hands a driver: its id, the bus, a logger, counters."""

    device_id: str
    bus: "Bus"
    log: logging.Logger
    counters: dict[str, int] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a per-device counter shown in ``GET /v1/devices``."""
        self.counters[name] = self.counters.get(name, 0) + n


# Every device has this remote action: the supervisor closes and reopens it.
REOPEN = "reopen"


@dataclass(frozen=True)
class DemoSite:
    """Where ``make run`` starts a device's emulator.

    ``workdir`` is the agent's working directory (a relative device path, such
    as a pty's, resolves from it); ``run_dir`` the demo's data directory (for
    what an emulator shows: receipts, screens); ``environ`` the demo's
    environment (its ``EDGE_DEMO_*`` knobs)."""

    workdir: Path
    run_dir: Path
    environ: Mapping[str, str] = field(default_factory=dict)


class DemoEmulator(Protocol):
    """A device's stand-in for ``make run``: its constructor stores, ``start`` and ``stop`` act."""

    # The loopback TCP port it will listen on (the demo keeps other parts off it), or None.
    tcp_port: int | None

    async def start(self) -> None:
        """Start serving; OSError when its port or path cannot be had."""
        ...

    async def stop(self) -> None:
        """Stop serving; safe to call once whatever ``start`` did."""
        ...

    def banner(self) -> list[tuple[str, str]]:
        """Lines for the demo's banner: (label, what to look at)."""
        ...


class Driver(ABC):
    """Base of every device driver; subclasses set the class attributes."""

    kind: ClassVar[str]
    Config: ClassVar[type[DeviceConfig]]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Remote actions the hub may ask for (hub/{store}/cmd), besides ``reopen``
    # which every device has; ``command`` carries them out.
    commands: ClassVar[frozenset[str]] = frozenset()
    # The counters (``ctx.count``) its snapshot always shows, from 0 before the first.
    health_fields: ClassVar[tuple[str, ...]] = ()
    reporting: ClassVar[Reporting] = Reporting.POLL
    # Seconds between health checks while online.
    check_interval: ClassVar[float] = 5.0
    # Seconds ``open`` and ``check`` may take before the device counts as failed.
    op_timeout: ClassVar[float] = 5.0
    # Longest wait between retries, below the supervisor's backoff cap, for
    # devices people unplug and replug by hand (scanners): a cheap ``open``
    # tried every second brings one back soon after it is plugged in.
    retry_cap: ClassVar[float | None] = None

    @classmethod
    def actions(cls) -> tuple[str, ...]:
        """Every remote action of this kind: ``reopen`` first, then ``commands`` in order."""
        return (REOPEN, *sorted(cls.commands - {REOPEN}))

    @classmethod
    def demo_emulator(cls, config: DeviceConfig, site: DemoSite) -> DemoEmulator | None:
        """The emulator ``make run`` starts for this device, or None when it needs none (simulated,
        or pointed at real hardware). Only stores: the demo calls ``start``."""
        return None

    def __init__(self, config: DeviceConfig, ctx: DriverContext):
        self.config = config
        self.ctx = ctx
        # Set by the supervisor; a driver wraps a job in ``async with self.busy():``.
        self._busy_hook: Any = None
        # Set by the supervisor; see ``fault``.
        self._fault_hook: Any = None

    @abstractmethod
    async def open(self) -> None:
        """Open the transport and make sure the device answers; raise DeviceError if not."""

    @abstractmethod
    async def close(self) -> None:
        """Release the transport; must not raise and must be safe to call twice."""

    async def check(self) -> None:
        """Health check while online; raise DeviceError when the device is unwell."""

    async def run(self) -> None:
        """Work that lasts while the device is open (reading scans, draining a queue).

        Returning or raising ``DeviceError`` ends the session and the supervisor
        reopens the device. The default waits forever: a polled device has
        nothing to do between checks.
        """
        await asyncio.Event().wait()

    async def command(self, action: str, args: dict[str, Any]) -> Any:
        """Carry out one of ``commands``; the result goes back to the hub as JSON."""
        raise NotImplementedError(action)

    def fault(self, reason: str | None) -> None:
        """Show the device as ``error`` with ``reason`` while its session goes on, or with None as working again.

        For a condition the driver waits out on an open link, polling the
        device until it clears (a printer out of paper): raising instead would
        close the link and reopen it on every retry. Outside a supervisor it
        does nothing.
        """
        if self._fault_hook is not None:
            self._fault_hook(reason)

    def busy(self) -> Any:
        """Async context manager that shows the device as ``busy`` while a job runs.

        Outside a supervisor (a driver driven directly, as in tests) it does nothing.
        """
        if self._busy_hook is None:
            return contextlib.nullcontext()
        return self._busy_hook()
