"""What the actors were told happened: every 201, binding, fault window, and counts of what they did.

The invariants judge the store against this record, never against what the
agent says about itself: a sale is in the ledger once the agent answered
201 for it, and must then be at the hub exactly once and printed once.
Every method is thread-safe (the actors are threads).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sale:
    """A sale the agent answered 201 for."""

    sale_id: str
    station: str
    body: dict[str, Any]       # what was posted
    answer: dict[str, Any]     # the 201's body
    promos: dict[str, tuple[str, str]]  # sku -> (label, price) of the promotion running as the kiosk saw it
    print_job: str | None
    at: float                  # monotonic time of the answer
    incarnation: int           # which run of the agent answered


@dataclass
class Ledger:
    """The soak's record of business events, label bindings, outages and actor counts."""

    started: float = field(default_factory=time.monotonic)
    sales: dict[str, Sale] = field(default_factory=dict)
    returns: dict[str, dict[str, Any]] = field(default_factory=dict)   # return id -> the 201's body
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)    # placed here: order id -> the 201's body
    # Sales a second PC running as the store answered 201 for (the identity fault): at the hub once,
    # though no kiosk of this store printed or returns them.
    elsewhere: dict[str, dict[str, Any]] = field(default_factory=dict)
    hub_orders: dict[str, str] = field(default_factory=dict)           # sent by the hub: order id -> pickup code
    collected: set[str] = field(default_factory=set)                   # orders collected (hub and placed)
    returned: Counter = field(default_factory=Counter)                 # (sale or order id, sku) -> units returned
    bindings: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # label -> (sku, since)
    members: dict[str, int] = field(default_factory=dict)              # member id -> points on its last card
    kills: list[float] = field(default_factory=list)                   # monotonic times of agent SIGKILLs
    actions: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    figures: dict[str, str] = field(default_factory=dict)  # measured, for the report (help delivery p99, ...)
    fleet: list[str] = field(default_factory=list)  # each fleet operation and how it came out (soak/fleet.py)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def elapsed(self) -> float:
        """Seconds since the day began."""
        return time.monotonic() - self.started

    def did(self, action: str, n: int = 1) -> None:
        """Count one thing an actor did."""
        with self.lock:
            self.actions[action] += n

    def add_sale(self, sale: Sale) -> None:
        with self.lock:
            self.sales[sale.sale_id] = sale

    def sales_list(self) -> list[Sale]:
        with self.lock:
            return list(self.sales.values())

    def bind(self, label: str, sku: str | None) -> None:
        """Record that ``label`` now shows ``sku`` (its change time is now)."""
        with self.lock:
            self.bindings[label] = (sku, time.monotonic())

    def binding(self, label: str) -> tuple[str | None, float]:
        with self.lock:
            return self.bindings.get(label, (None, self.started))
