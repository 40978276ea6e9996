"""Prometheus metrics of one agent, on a registry of its own (no globals).

Built on prometheus_client, the reference client: it writes the text format
(escaping, ``_total``, ``# TYPE``) that Prometheus parses, so nothing here
formats text by hand. Two kinds of figure, by the Prometheus rules:

- a **counter** only goes up while the process runs (a restart starts it at 0
  again, which ``rate()`` and ``increase()`` understand): requests, store
  commits and writes, failed writes, and every per-device figure a driver
  counts with ``ctx.count`` (``scans``, ``pushes``, ``failures`` ...). Their
  sample names end in ``_total``.
- a **gauge** goes up and down: outbox depth, device states, health, and the
  per-device figures a driver sets rather than counts (``DEVICE_GAUGES``:
  tags on an access point, jobs waiting, labels by condition).

The agent keeps its totals itself (``StoreStats``, the drivers' counters),
so ``refresh`` copies them just before a scrape and a collector yields them
as counter families; prometheus_client's ``Counter`` only offers ``inc``,
which would need a second copy of every total.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, Metric

from drivers.base import DeviceState
from edge_agent.health import REASON_CODES, assess

if TYPE_CHECKING:
    from edge_agent.agent import Agent

# Per-device figures that drivers and the label monitor set to a current value
# (``ctx.counters[name] = ...``) instead of counting: exported as gauges. Every
# other per-device figure is a count (``ctx.count(name)``) and a counter.
DEVICE_GAUGES = frozenset({
    "tags",                  # shelf_label.oepl: tags the access point knows
    "waiting",               # printers: jobs behind the one printing
    "labels", "labels_non_compliant", "labels_stale", "labels_low_battery",  # shelf labels (labels/health.py)
})

# StoreStats field -> (counter name without _total, help).
_STORE_TOTALS = (
    ("commits", "edge_store_commits", "group commits since start"),
    ("writes", "edge_store_writes", "writes committed since start"),
    ("failed_writes", "edge_store_failed_writes", "writes that failed since start"),
)


class _Totals:
    """A collector of the agent's own monotonic totals, as of the last ``refresh``."""

    def __init__(self) -> None:
        self.store: dict[str, int] = {}
        self.device: dict[tuple[str, str], int] = {}  # (device, counter) -> total

    def collect(self) -> Iterator[Metric]:
        for attr, name, doc in _STORE_TOTALS:
            yield CounterMetricFamily(name, doc, value=self.store.get(attr, 0))
        per_device = CounterMetricFamily("edge_device_counter", "per-device counts since the device's driver started",
                                         labels=["device", "counter"])
        for (device, counter), value in sorted(self.device.items()):
            per_device.add_metric([device, counter], value)
        yield per_device


class Metrics:
    """The agent's metrics; ``refresh`` reads the agent's state just before a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Info("edge_agent", "agent build and store", registry=r)
        self.http_requests = Counter(
            "edge_http_requests_total", "local API requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "edge_http_request_seconds", "local API latency", ["route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.totals = _Totals()
        r.register(self.totals)
        self.outbox_depth = Gauge("edge_outbox_depth", "events waiting for the hub's ack", registry=r)
        # The seq of the newest event: a position, read against the hub's ack, not a count of this process.
        self.outbox_last_seq = Gauge("edge_outbox_last_seq", "highest seq assigned", registry=r)
        self.store_largest_group = Gauge("edge_store_largest_group", "most writes in one commit", registry=r)
        self.device_state = Gauge(
            "edge_device_state", "1 for the state each device is in", ["device", "kind", "state"], registry=r
        )
        self.device_gauge = Gauge(
            "edge_device_gauge", "per-device current values (tags, jobs waiting, labels by condition)",
            ["device", "gauge"], registry=r
        )
        self.degraded = Gauge("edge_health_degraded", "1 while GET /v1/health says degraded", registry=r)
        self.reasons = Gauge("edge_health_reasons", "GET /v1/health's reasons for degraded, by code", ["code"],
                             registry=r)
        self.labels_past_grace = Gauge("edge_labels_past_grace",
                                       "shelf labels showing another price than the checkout past their grace",
                                       registry=r)

    async def refresh(self, agent: "Agent") -> None:
        """Copy the agent's current figures into the gauges and the totals."""
        from edge_agent.store import outbox

        self.info.info({"version": agent.version, "store": agent.config.store.id})
        self.outbox_depth.set(await agent.store.read(outbox.depth))
        stats = agent.store.stats
        self.outbox_last_seq.set(agent.store.last_seq)
        self.store_largest_group.set(stats.largest_group)
        health = await assess(agent)
        self.degraded.set(1 if health["status"] == "degraded" else 0)
        codes = collections.Counter(r["code"] for r in health["reasons"])
        for code in REASON_CODES | set(codes):
            self.reasons.labels(code).set(codes.get(code, 0))
        self.labels_past_grace.set((health["labels"] or {}).get("past_grace", 0))
        device_totals: dict[tuple[str, str], int] = {}
        for snap in agent.supervisor.snapshot():
            for state in DeviceState:
                self.device_state.labels(snap.id, snap.kind, state.value).set(1 if snap.state == state else 0)
            for name, value in snap.counters.items():
                if name in DEVICE_GAUGES:
                    self.device_gauge.labels(snap.id, name).set(value)
                else:
                    device_totals[(snap.id, name)] = value
        # One assignment each: a scrape running alongside sees the old totals or the new, never half.
        self.totals.store = {attr: getattr(stats, attr) for attr, _, _ in _STORE_TOTALS}
        self.totals.device = device_totals
