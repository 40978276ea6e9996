"""The table of invariants: each row counts its checks and keeps its violations, precise enough to debug.

A violation says what was checked, when (seconds into the day and UTC),
what was expected and what was got, and the ids involved (sale, label,
device, agent incarnation). Violations are printed as they happen and
written to ``violations.jsonl`` in the run dir.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LABELS = "label shows the checkout's price"
HUB = "sale/return/order at the hub once, seq gapless"
DRAIN = "outbox drains after each outage"
SESSION = "kiosk session holds one customer"
RECEIPT = "receipt matches its sale, printed once"
PAPER = "return slip and pick ticket printed once"
FAULT = "fault shows at hub console and /v1/health, then clears"
RESOURCES = "agent RSS, open files, log volume flat"
ROWS = (LABELS, HUB, DRAIN, SESSION, RECEIPT, PAPER, FAULT, RESOURCES)


@dataclass(frozen=True)
class Violation:
    """One broken promise."""

    invariant: str
    what: str
    expected: Any
    got: Any
    at_s: float
    at_utc: str
    ids: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        ids = " ".join(f"{k}={v}" for k, v in self.ids.items())
        return (f"[{self.at_s:7.1f}s {self.at_utc}] {self.invariant}: {self.what}; expected {self.expected!r}, "
                f"got {self.got!r} {ids}").rstrip()


class Checks:
    """Counts per invariant and every violation; thread-safe."""

    def __init__(self, run_dir: Path, started: float, quiet: bool = False):
        self.started = started
        self.quiet = quiet
        self.counts = {row: 0 for row in ROWS}
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self._path = run_dir / "violations.jsonl"
        self._lock = threading.Lock()

    def ok(self, row: str, n: int = 1) -> None:
        """``n`` checks of ``row`` that held."""
        with self._lock:
            self.counts[row] += n

    def fail(self, row: str, what: str, expected: Any, got: Any, **ids: Any) -> None:
        """One check of ``row`` that did not hold."""
        v = Violation(row, what, expected, got, round(time.monotonic() - self.started, 1),
                      datetime.now(timezone.utc).isoformat(timespec="seconds"), ids)
        with self._lock:
            self.counts[row] += 1
            self.violations.append(v)
            with self._path.open("a") as f:
                f.write(json.dumps(asdict(v), default=str) + "\n")
        if not self.quiet:
            print("VIOLATION " + v.line(), file=sys.stderr, flush=True)

    def check(self, row: str, holds: bool, what: str, expected: Any, got: Any, **ids: Any) -> bool:
        """Count a check of ``row``; a violation if it does not hold. Returns ``holds``."""
        if holds:
            self.ok(row)
        else:
            self.fail(row, what, expected, got, **ids)
        return holds

    def note(self, text: str) -> None:
        """Something the report should say that is not a violation (a feature not there yet, a skip)."""
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)
        if not self.quiet:
            print("note: " + text, file=sys.stderr, flush=True)

    def violated(self, row: str) -> list[Violation]:
        with self._lock:
            return [v for v in self.violations if v.invariant == row]
