"""The table of invariants: each row counts its checks and keeps its violations, precise enough to debug.

A violation says what was checked, when (seconds into the day and UTC),
what was expected and what was got, and the ids involved (sale, label,
device, agent incarnation). Violations are printed as they happen and
written to ``violations.jsonl`` in the run dir.

A row that checked (almost) nothing proves nothing: ``require_minimums``
makes a row with fewer checks than ``minimum(row, minutes)`` a violation of
that row. The minimums (``MINIMUMS``: a floor, plus so many per minute of the
day) sit well below what a day of that length makes (a 5-minute day makes
about 900 label checks, 200 at the hub, 170 session checks, 560 receipt
checks, 40 slips, 26 fault signals, 16 identity checks, 7 resource checks,
1,500 answers, 33 fleet checks), so that only a row whose checker stopped or never ran falls
short.
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
HUB = "sale/return/order at the hub once, each stream gapless"
DRAIN = "outbox drains after each outage"
SESSION = "kiosk session holds one customer"
RECEIPT = "receipt matches its sale, printed once"
PAPER = "return slip and pick ticket printed once"
FAULT = "fault shows at hub console and /v1/health, then clears"
IDENTITY = "second PC and stale event seen, then cleared"
RESOURCES = "agent RSS, open files, log volume flat"
HOSTILE = "an intruder on the Wi-Fi stops no checkout"
PRIVACY = "a member leaves the store after retention, not before"
HELP = "a kiosk's call for help reaches a band, is taken or cancelled"
FLEET = "hub's config version applied, refused or rolled back"
ANSWERS = "every call and scan answered, no 5xx or crash"
ROWS = (LABELS, HUB, DRAIN, SESSION, RECEIPT, PAPER, FAULT, IDENTITY, HOSTILE, PRIVACY, HELP, FLEET, RESOURCES,
        ANSWERS)

# row -> (floor, per minute of the day): the fewest checks a row may make (see require_minimums).
MINIMUMS: dict[str, tuple[int, float]] = {
    LABELS: (20, 40.0),      # 15 labels every 2 s once their grace is past
    HUB: (18, 5.0),          # gaps and conflicts after each of the 9 faults and at the end, then each 201
    DRAIN: (6, 0.0),         # broker restart, hub's downtime, agent's restart, second PC (its own, the agent's), end
    SESSION: (4, 4.0),       # two probes after each checkout, "new customer" or walk-away with a member
    RECEIPT: (10, 20.0),     # a handful per sale
    PAPER: (1, 1.0),         # a slip per return, a ticket per pickup order
    FAULT: (25, 0.0),        # 4 device faults x 4 signals, broker 3, hub down 4, agent kill 2
    IDENTITY: (14, 0.0),     # agent kill 2, second PC 9, stale event 5 (console alerts included)
    HOSTILE: (7, 0.0),       # the intruder: sales, health, 413s, files, log lines, files given back; no token in a log
    PRIVACY: (10, 10.0),     # each swept sale once, each unacknowledged one per look, the sweep's lateness per look
    HELP: (6, 2.0),          # each call's delivery and outcome, the off-duty alert's 4, none open at the end
    FLEET: (30, 0.0),        # adoption 4, a good version 9, a refused one 5, a rolled back one 9, drift 6, end 1
    RESOURCES: (1, 0.0),     # the log's tracebacks; growth once an incarnation has lived past warm-up
    ANSWERS: (50, 60.0),     # every API call the actors make, every member QR scanned
}


def minimum(row: str, minutes: float) -> int:
    """The fewest checks ``row`` must make in a day of ``minutes``."""
    floor, per_minute = MINIMUMS[row]
    return max(floor, int(per_minute * minutes))


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
        """Something the report should say that is not a violation: only what a store's day legitimately
        does (a scan lost while its scanner was unplugged or the agent restarting)."""
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)
        if not self.quiet:
            print("note: " + text, file=sys.stderr, flush=True)

    def require_minimums(self, minutes: float) -> None:
        """Each row that made fewer checks than its minimum for a day of ``minutes``: one violation."""
        with self._lock:
            counts = dict(self.counts)
        for row in ROWS:
            need = minimum(row, minutes)
            if counts[row] < need:
                self.fail(row, f"too few checks for a {minutes:g}-minute day (a checker stopped or never ran)",
                          f">= {need}", counts[row])

    def violated(self, row: str) -> list[Violation]:
        with self._lock:
            return [v for v in self.violations if v.invariant == row]
