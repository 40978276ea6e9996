"""What every driver is: a ``kind``, a pydantic ``Config``, capabilities, and
four coroutines the supervisor calls (``open``, ``check``, ``run``, ``close``).

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

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


class Driver(ABC):
    """Base of every device driver; subclasses set the class attributes."""

    kind: ClassVar[str]
    Config: ClassVar[type[DeviceConfig]]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Remote actions the hub may ask for (hub/{store}/cmd), besides ``reopen``
    # which every device has; ``command`` carries them out.
    commands: ClassVar[frozenset[str]] = frozenset()
    reporting: ClassVar[Reporting] = Reporting.POLL
    # Seconds between health checks while online.
    check_interval: ClassVar[float] = 5.0
    # Seconds ``open`` and ``check`` may take before the device counts as failed.
    op_timeout: ClassVar[float] = 5.0
    # Longest wait between retries, below the supervisor's backoff cap, for
    # devices people unplug and replug by hand (scanners): a cheap ``open``
    # tried every second brings one back soon after it is plugged in.
    retry_cap: ClassVar[float | None] = None

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
