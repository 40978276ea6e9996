"""``GET /metrics`` of the hub: Prometheus text, computed at scrape time from what the hub holds.

Nothing is counted on the ingest path: the worker's counters (HubStats) and
the fleet in memory are read when Prometheus asks, so a hub without a
scraper pays nothing. Per store: presence, health age, outbox, clock offset,
devices by state, labels, print queue; per device its current state (one
series each); alerts by rule, severity and state. monitoring/ has the alert
rules and the Grafana dashboard built on these names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sync.console.facts import STATES, devices, labels, number, parse_time, printing
from sync.console.facts import reasons as summary_reasons


class HubCollector:
    """A prometheus_client collector over the hub's live objects."""

    def __init__(self, parts: Callable[[], dict[str, Any]]):
        self._parts = parts  # -> {"stats", "connected", "fleet", "evaluator", "broadcaster", "desk"}

    def collect(self) -> Iterator[Metric]:
        p = self._parts()
        stats, fleet, ev, desk = p["stats"], p["fleet"], p["evaluator"], p["desk"]
        for name, attr, doc in (("events", "events", "events stored"), ("batches", "batches", "batches stored"),
                                ("duplicates", "duplicates", "events received again and ignored"),
                                ("refused", "rejected", "payloads refused"), ("acks", "acks", "acks published")):
            yield CounterMetricFamily(f"edge_hub_{name}", doc, value=getattr(stats, attr))
        yield GaugeMetricFamily("edge_hub_broker_connected", "1 while the hub is connected and subscribed",
                                value=1 if p["connected"] else 0)
        yield from self._stores(fleet)
        alerts = GaugeMetricFamily("edge_hub_alerts", "live alerts", labels=["rule", "severity", "state"])
        for (rule, severity, state), n in sorted(ev.open.items()):
            alerts.add_metric([rule, severity, state], n)
        yield alerts
        yield CounterMetricFamily("edge_hub_alert_evaluations", "alert rule passes", value=ev.passes)
        yield CounterMetricFamily("edge_hub_alert_evaluation_failures", "passes that failed", value=ev.failed_passes)
        yield GaugeMetricFamily("edge_hub_alert_evaluation_seconds", "duration of the last pass", value=ev.last_pass_s)
        yield GaugeMetricFamily("edge_hub_console_clients", "console pages connected", value=p["broadcaster"].clients)
        yield CounterMetricFamily("edge_hub_fleet_updates", "store status and health updates applied",
                                  value=fleet.updates)
        cmds = CounterMetricFamily("edge_hub_commands", "remote commands", labels=["outcome"])
        cmds.add_metric(["sent"], desk.sent)
        cmds.add_metric(["answered"], desk.answered_in_time)
        cmds.add_metric(["timeout"], desk.timed_out)
        yield cmds
        yield GaugeMetricFamily("edge_hub_commands_pending", "commands waiting for an answer", value=desk.pending)

    @staticmethod
    def _stores(fleet: Any) -> Iterator[Metric]:
        now = datetime.now(timezone.utc)
        g = {name: GaugeMetricFamily(f"edge_hub_store_{name}", doc, labels=["store"]) for name, doc in (
            ("online", "1 while the store's status is online"),
            ("health_age_seconds", "since the store's last health snapshot reached the hub"),
            ("outbox_depth", "events waiting for the hub's ack at the store"),
            ("oldest_unacked_seconds", "age of the store's oldest unacknowledged event"),
            ("clock_offset_seconds", "hub clock minus store clock"),
            ("labels_non_compliant", "shelf labels showing another price than the checkout"),
            ("labels_past_grace", "shelf labels showing another price than the checkout past their grace"),
            ("degraded", "1 while the store says it is degraded (GET /v1/health)"))}
        reasons = GaugeMetricFamily("edge_hub_store_health_reasons", "the store's reasons for degraded, by code",
                                    labels=["store", "code"])
        by_state = GaugeMetricFamily("edge_hub_store_devices", "devices by state", labels=["store", "state"])
        jobs = GaugeMetricFamily("edge_hub_store_print_jobs", "print jobs by state", labels=["store", "state"])
        device = GaugeMetricFamily("edge_hub_device_state", "1 for the state each device is in",
                                   labels=["store", "device", "kind", "state"])
        for f in fleet.facts():
            s, h = f.store, f.health or {}
            g["online"].add_metric([s], 1 if f.presence == "online" else 0)
            if (at := parse_time(f.health_at)) is not None:
                g["health_age_seconds"].add_metric([s], (now - at).total_seconds())
            for name, key in (("outbox_depth", "outbox_depth"), ("oldest_unacked_seconds", "oldest_unacked_age_s"),
                              ("clock_offset_seconds", "clock_offset_s")):
                if (v := number(h.get(key))) is not None:
                    g[name].add_metric([s], v)
            if (lab := labels(h)) is not None and lab["non_compliant"] is not None:
                g["labels_non_compliant"].add_metric([s], lab["non_compliant"])
            if lab is not None and lab["past_grace"] is not None:
                g["labels_past_grace"].add_metric([s], lab["past_grace"])
            if h.get("status") in ("ok", "degraded"):
                g["degraded"].add_metric([s], 1 if h["status"] == "degraded" else 0)
                codes = Counter(r["code"] for r in summary_reasons(h))
                for code, n in sorted(codes.items()):
                    reasons.add_metric([s, code], n)
            if (pr := printing(h)) is not None:
                for state in ("queued", "waiting", "failed"):
                    jobs.add_metric([s, state], pr[state])
            counts = dict.fromkeys(STATES, 0)
            for d in devices(h):
                counts[d["state"]] = counts.get(d["state"], 0) + 1
                device.add_metric([s, d["id"], d["kind"] or "", d["state"]], 1)
            for state, n in counts.items():
                by_state.add_metric([s, state], n)
        yield from g.values()
        yield reasons
        yield by_state
        yield jobs
        yield device


def render(parts: Callable[[], dict[str, Any]]) -> bytes:
    """The metrics page."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(parts))  # type: ignore[arg-type]
    return generate_latest(registry)
