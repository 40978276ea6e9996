"""What every actor, checker and fault shares during one day: the rig, the ledger, the table, the clock.

``Outages`` records when each fault window opened and closed, so that a
checker can excuse what a fault explains (labels on an access point that is
down) and nothing else, and start its grace again when the fault clears; an
actor can hold off while one is open (the hub's downlink while a second PC
shares the store's MQTT session).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak.checks import Checks
from soak.ledger import Ledger
from soak.rig import Rig

CATALOG = json.loads((Path(__file__).resolve().parents[2] / "demo" / "catalog.json").read_text())
SKUS = [item["sku"] for item in CATALOG]
BARCODES = {item["sku"]: item["barcodes"][0] for item in CATALOG}


class Outages:
    """Named fault windows: ``begin(name)``, ``end(name)``; ``since_clear(names)`` for grace periods."""

    def __init__(self) -> None:
        self._open: dict[str, float] = {}
        self._closed: dict[str, float] = {}
        self._lock = threading.Lock()

    def begin(self, name: str) -> None:
        with self._lock:
            self._open[name] = time.monotonic()

    def end(self, name: str) -> None:
        with self._lock:
            self._open.pop(name, None)
            self._closed[name] = time.monotonic()

    def active(self, *names: str) -> bool:
        with self._lock:
            return any(n in self._open for n in names)

    def since_clear(self, *names: str) -> float:
        """Seconds since the last of ``names`` ended; 0 while one is open; infinity if none ever was."""
        with self._lock:
            if any(n in self._open for n in names):
                return 0.0
            ends = [self._closed[n] for n in names if n in self._closed]
        return time.monotonic() - max(ends) if ends else float("inf")


@dataclass
class Day:
    """One soak run's shared state."""

    rig: Rig
    ledger: Ledger
    checks: Checks
    seed: int
    minutes: float
    stop: threading.Event = field(default_factory=threading.Event)
    outages: Outages = field(default_factory=Outages)
    open_gaps: set[tuple[str, int]] = field(default_factory=set)  # (stream, seq) missing at the hub at the last look
    feed: Any = None  # invariants.FeedLog, once started
    # Held by the hub actor while it sends on the downlink, and taken by a fault that must know nothing
    # is in flight when it pauses the downlink (the second PC: see identity.second_pc).
    downlink: threading.Lock = field(default_factory=threading.Lock)
    injected: list[dict] = field(default_factory=list)  # the stale events the soak published (identity.stale_event)
    help: Any = None  # assist.HelpLog: the day's calls for help
    fleet: Any = None  # fleet.Fleet: the hub's versions of the store's devices.yaml

    def rng(self, name: str) -> random.Random:
        """A random generator of its own for one actor, from the day's seed."""
        return random.Random(f"{self.seed}:{name}")

    def think(self, rng: random.Random, low: float, high: float) -> bool:
        """A think-time (scaled to the day); False once the day is over."""
        return not self.stop.wait(rng.uniform(low, high))
