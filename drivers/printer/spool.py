"""What a printer driver needs from the durable print queue: jobs, their states, alerts. No I/O.

The queue itself lives in the agent's store (edge_agent/printing.py); a
driver sees it only through ``Spool``, handed to it in
``DriverContext.extras["print_spool"]``. A job moves::

    queued ──> printing ──> done
      ^  │        │ └─────> failed (bad document data, too many interrupted attempts)
      │  │        │
      │  └────────┴── link dropped, power cut, agent restart:
      │               back to queued with reprint=True
      └── retry of a failed job (reprint=True if it had started before)

A job is rendered at print time from its kind and data, so a copy that may
have printed before carries the "REPRINT" mark (documents.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.printer.documents import DocumentKind

SPOOL = "print_spool"  # the DriverContext.extras key


class JobState(str, enum.Enum):
    """Where a print job is (the ``state`` column of ``print_jobs``)."""

    QUEUED = "queued"
    PRINTING = "printing"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """One print job as stored."""

    id: str
    device: str
    kind: DocumentKind
    data: dict[str, Any]
    state: JobState
    reprint: bool = False
    attempts: int = 0
    replaced: int = 0
    reason: str | None = None
    ref: str | None = None  # what the document is of: a sale id for a receipt
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``GET /v1/print/jobs``; the document data is left out."""
        return {
            "id": self.id, "device": self.device, "kind": self.kind, "state": self.state.value,
            "reprint": self.reprint, "attempts": self.attempts, "replaced": self.replaced, "reason": self.reason,
            "ref": self.ref, "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class Spool(Protocol):
    """The print queue as a driver uses it; every call that changes a job returns once it is on disk."""

    async def next_job(self, device: str, timeout: float) -> tuple[Job | None, int]:
        """The oldest queued job of ``device`` and how many are queued; waits up to ``timeout`` s for one."""

    async def submit(self, device: str, kind: DocumentKind, data: dict[str, Any]) -> Job:
        """Queue a new job."""

    async def started(self, job: Job) -> Job:
        """queued -> printing, one more attempt; the job as it now is."""

    async def done(self, job: Job, replaced: int) -> None:
        """printing -> done; ``replaced``: characters printed as "?"."""

    async def failed(self, job: Job, reason: str) -> None:
        """-> failed with ``reason``; the job is not tried again unless retried."""

    async def interrupted(self, device: str, reason: str) -> int:
        """Every ``printing`` job of ``device`` back to queued with reprint set; how many."""

    async def alert(self, device: str, code: str, message: str, *, cleared: bool = False,
                    warning: bool = False) -> None:
        """Tell associates and the hub that ``device`` needs someone (soon, if ``warning``), or, ``cleared``,
        that it no longer does."""
