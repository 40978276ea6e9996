"""Prometheus metrics of one agent, on a registry of its own (no globals)."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from drivers.base import DeviceState
from edge_agent.health import REASON_CODES, assess

if TYPE_CHECKING:
    from edge_agent.agent import Agent


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
        self.outbox_depth = Gauge("edge_outbox_depth", "events waiting for the hub's ack", registry=r)
        self.outbox_last_seq = Gauge("edge_outbox_last_seq", "highest seq assigned", registry=r)
        self.store_commits = Gauge("edge_store_commits_total", "group commits since start", registry=r)
        self.store_writes = Gauge("edge_store_writes_total", "writes committed since start", registry=r)
        self.store_failed = Gauge("edge_store_failed_writes_total", "writes that failed since start", registry=r)
        self.store_largest_group = Gauge("edge_store_largest_group", "most writes in one commit", registry=r)
        self.device_state = Gauge(
            "edge_device_state", "1 for the state each device is in", ["device", "kind", "state"], registry=r
        )
        self.device_counter = Gauge(
            "edge_device_counter", "per-device counters", ["device", "counter"], registry=r
        )
        self.degraded = Gauge("edge_health_degraded", "1 while GET /v1/health says degraded", registry=r)
        self.reasons = Gauge("edge_health_reasons", "GET /v1/health's reasons for degraded, by code", ["code"],
                             registry=r)
        self.labels_past_grace = Gauge("edge_labels_past_grace",
                                       "shelf labels showing another price than the checkout past their grace",
                                       registry=r)

    async def refresh(self, agent: "Agent") -> None:
        """Copy the agent's current figures into the gauges."""
        from edge_agent.store import outbox

        self.info.info({"version": agent.version, "store": agent.config.store.id})
        self.outbox_depth.set(await agent.store.read(outbox.depth))
        stats = agent.store.stats
        self.outbox_last_seq.set(agent.store.last_seq)
        self.store_commits.set(stats.commits)
        self.store_writes.set(stats.writes)
        self.store_failed.set(stats.failed_writes)
        self.store_largest_group.set(stats.largest_group)
        health = await assess(agent)
        self.degraded.set(1 if health["status"] == "degraded" else 0)
        codes = collections.Counter(r["code"] for r in health["reasons"])
        for code in REASON_CODES | set(codes):
            self.reasons.labels(code).set(codes.get(code, 0))
        self.labels_past_grace.set((health["labels"] or {}).get("past_grace", 0))
        for snap in agent.supervisor.snapshot():
            for state in DeviceState:
                self.device_state.labels(snap.id, snap.kind, state.value).set(1 if snap.state == state else 0)
            for name, value in snap.counters.items():
                self.device_counter.labels(snap.id, name).set(value)
