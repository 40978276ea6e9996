"""GET /metrics of a real agent: parsed by prometheus_client's own text parser, counters typed and monotonic."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.metrics import DEVICE_GAUGES, Metrics
from support.agent import config_dict, free_port

ROOT = Path(__file__).resolve().parents[2]


def scrape(agent) -> dict:
    """name -> family of one GET /metrics, as Prometheus's reference parser reads it."""
    with agent.client("console") as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {fam.name: fam for fam in text_string_to_metric_families(r.text)}


def samples(fam) -> dict:
    """(sample name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}


def sell(agent) -> None:
    body = {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
            "payment": {"method": "cash", "reference": "till"}}
    with agent.client("kiosk") as c:
        assert c.post("/v1/sales", json=body).status_code == 201


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    from support.agent import AgentProcess

    wd = tmp_path_factory.mktemp("metrics-agent")
    devices = [{"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.2},
               {"id": "paper-1", "kind": "shelf_label.files", "dir": str(wd / "labels")}]
    a = AgentProcess(wd, config_dict(free_port(), devices))
    a.import_catalog()
    a.start()
    yield a
    a.close()


def test_counters_are_counters_and_gauges_gauges(agent):
    sell(agent)
    fams = scrape(agent)
    counters = {"edge_store_commits", "edge_store_writes", "edge_store_failed_writes", "edge_device_counter",
                "edge_http_requests"}
    gauges = {"edge_outbox_depth", "edge_outbox_last_seq", "edge_store_largest_group", "edge_device_state",
              "edge_device_gauge", "edge_health_degraded", "edge_health_reasons", "edge_labels_past_grace"}
    assert {n: fams[n].type for n in counters} == dict.fromkeys(counters, "counter")
    assert {n: fams[n].type for n in gauges} == dict.fromkeys(gauges, "gauge")
    # The text format names every counter sample ..._total.
    assert all(s.name.endswith(("_total", "_created")) for n in counters for s in fams[n].samples)
    assert samples(fams["edge_store_writes"])[("edge_store_writes_total", ())] >= 1
    beats = ("edge_device_counter_total", (("counter", "beats"), ("device", "heartbeat-1")))
    assert samples(fams["edge_device_counter"])[beats] >= 1
    # A figure a driver sets, not counts, is a gauge and never a counter.
    assert not {s.labels["counter"] for s in fams["edge_device_counter"].samples} & DEVICE_GAUGES
    deadline = time.monotonic() + 30
    while "labels" not in {s.labels["gauge"] for s in fams["edge_device_gauge"].samples}:
        assert time.monotonic() < deadline, "the label monitor never set paper-1's gauges"
        time.sleep(0.2)
        fams = scrape(agent)
    assert {s.labels["device"] for s in fams["edge_device_gauge"].samples} == {"paper-1"}


def test_counters_never_go_down_across_a_scrape_pair(agent):
    first = scrape(agent)
    sell(agent)
    deadline = time.monotonic() + 30
    while True:  # until the heartbeat has beaten again, so a device counter moved too
        second = scrape(agent)
        beats = {s.labels["device"]: s.value for s in second["edge_device_counter"].samples
                 if s.labels["counter"] == "beats"}
        old = {s.labels["device"]: s.value for s in first["edge_device_counter"].samples
               if s.labels["counter"] == "beats"}
        if beats["heartbeat-1"] > old["heartbeat-1"]:
            break
        assert time.monotonic() < deadline, "the heartbeat never beat between two scrapes"
        time.sleep(0.2)
    for name, fam in first.items():
        if fam.type != "counter":
            continue
        after = samples(second[name])
        for key, value in samples(fam).items():
            assert key in after, f"{key} vanished"
            assert after[key] >= value, f"{key} went down: {value} -> {after[key]}"
    writes = ("edge_store_writes_total", ())
    assert samples(second["edge_store_writes"])[writes] > samples(first["edge_store_writes"])[writes]


def test_what_drivers_set_is_declared_a_gauge():
    """A per-device figure assigned rather than counted must be in DEVICE_GAUGES, and a counted one not."""
    assigned, counted = set(), set()
    for path in [*ROOT.glob("drivers/**/*.py"), *ROOT.glob("edge_agent/**/*.py")]:
        text = path.read_text()
        assigned |= set(re.findall(r"counters\[\"([a-z_]+)\"\]\s*=", text))
        counted |= set(re.findall(r"\.count\(\"([a-z_]+)\"", text))
        # labels/health.py sets its figures from dict.fromkeys((...), 0), through LabelService.set_counters.
        setting = "counters.update" in text or "set_counters(" in text
        for keys in re.findall(r"dict\.fromkeys\(\(([^)]*)\), 0\)", text) if setting else []:
            assigned |= set(re.findall(r"\"([a-z_]+)\"", keys))
    assert {"tags", "waiting", "labels_stale"} <= assigned and {"scans", "beats"} <= counted
    assert assigned <= DEVICE_GAUGES, f"set but exported as counters: {sorted(assigned - DEVICE_GAUGES)}"
    assert not counted & DEVICE_GAUGES, f"counted but exported as gauges: {sorted(counted & DEVICE_GAUGES)}"


def test_every_counter_family_is_typed_counter_before_any_scrape():
    fams = {f.name: f.type for f in Metrics().registry.collect()}
    assert fams["edge_store_commits"] == fams["edge_device_counter"] == "counter"
    assert fams["edge_device_gauge"] == "gauge"
    assert not {"edge_store_commits_total", "edge_device_counter_total"} & set(fams)
