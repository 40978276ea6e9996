"""monitoring/: the example Prometheus rules and Grafana dashboard use only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import yaml
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.metrics import Metrics
from sync.hub.console import metrics
from sync.hub.console.fleet import Fleet
from sync.hub.observe import Changes
from sync.hub.service import HubStats

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bedge_[a-z_]+\b")


def hub_names() -> set[str]:
    """Every sample name of the hub's /metrics, with one store of every kind of data."""
    fleet = Fleet()
    snap = {"devices": [{"id": "p", "kind": "printer.escpos", "state": "error", "since": "2026-01-01T00:00:00+00:00"}],
            "outbox_depth": 1, "oldest_unacked_age_s": 2, "clock_offset_s": 0.1,
            "labels": {"labels": 3, "non_compliant": 1, "past_grace": 1}, "printing": {"queued": 1, "failed": 1},
            "status": "degraded", "reasons": [{"code": "labels_non_compliant", "message": "1 of 3"}]}
    fleet.apply(Changes(status={"s": {"state": "online", "version": "1", "since": None}}, health={"s": snap}))
    parts = {"stats": HubStats(), "connected": True, "fleet": fleet,
             "evaluator": SimpleNamespace(open={("r", "warning", "open"): 1}, passes=1, failed_passes=0,
                                          last_pass_s=0.01),
             "broadcaster": SimpleNamespace(clients=0),
             "desk": SimpleNamespace(sent=0, answered_in_time=0, timed_out=0, pending=0)}
    text = metrics.render(lambda: parts).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def agent_names() -> set[str]:
    """Every sample name the agent's /metrics can have (labelled ones included before they are set)."""
    out = set()
    for fam in Metrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}
        out |= {fam.name + s for s in suffixes.get(fam.type, ("",))}
    return out


def test_every_metric_the_examples_use_is_exposed():
    known = hub_names() | agent_names()
    rules = yaml.safe_load((ROOT / "monitoring" / "prometheus-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "monitoring" / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used and not used - known, f"not exposed: {sorted(used - known)}"
    assert {"edge_hub_store_online", "edge_hub_device_state", "edge_hub_alerts"} <= used
    assert {"edge_hub_store_degraded", "edge_hub_store_labels_past_grace", "edge_health_degraded"} <= used


def test_every_alert_rule_says_what_and_how_bad():
    rules = yaml.safe_load((ROOT / "monitoring" / "prometheus-rules.yml").read_text())
    for group in rules["groups"]:
        for r in group["rules"]:
            assert r["alert"] and r["expr"] and r["labels"]["severity"] in {"warning", "critical"}
            assert r["annotations"]["summary"], r["alert"]
