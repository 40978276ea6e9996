"""A label's zone: from devices.yaml (a bad one is a FILE:LINE problem) and kept in the store, and on
every alert about the label, so that the wristbands can send a wrong label to the associates of its zone.
The real store, service and drivers, an emulated access point over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from drivers.shelf_label.ap_emulator import Fault
from edge_agent.config import parse
from edge_agent.labels.table import load
from edge_core.errors import ConfigError
from support.labelrig import LabelRig, files_device, item, oepl_device

A, B = "0000021D4E83B401", "0000021D4E83B402"
TAGS = (A, B)  # the tags on the access point (conftest.ap)

HEAD = """\
store:
  id: store-001
  name: Demo Store
devices:
  - id: labels-1
    kind: shelf_label.files
    dir: labels
    labels:
"""


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_zones_in_devices_yaml_are_checked_at_their_line():
    cfg = parse(HEAD + """\
      - {key: shelf-1, sku: LIP-RED-01, zone: cosmetics}
      - {key: shelf-2, sku: LIP-RED-01, zone: "Aisle 3_b-2"}
      - {key: shelf-3, sku: LIP-RED-01}
""", "devices.yaml", environ={})
    assert [b.zone for b in cfg.devices[0].labels] == ["cosmetics", "Aisle 3_b-2", None]
    for bad in ('"eye/wear"', '""', '"   "', '" eyewear"', '"-x"', '"a.b"', "x" * 33, "化妆品", "[a, b]"):
        with pytest.raises(ConfigError) as err:
            parse(HEAD + "      - {key: shelf-1, sku: LIP-RED-01}\n"
                         f"      - {{key: shelf-2, sku: LIP-RED-01, zone: {bad}}}\n", "devices.yaml", environ={})
        [problem] = err.value.problems
        assert problem.startswith("devices.yaml:10: devices.0.labels.1.zone"), problem
        assert ("is not a zone: 1-32 of A-Z a-z 0-9 space _ -" in problem) is (bad != "[a, b]"), problem


def test_a_zone_from_devices_yaml_is_kept_and_follows_the_file(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        device = files_device(folder, [{"key": "shelf-1", "sku": "MILK", "zone": "dairy"},
                                       {"key": "shelf-2", "sku": "MILK"}])
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80")]) as rig:
            assert (rig.label("shelf-1").zone, rig.label("shelf-2").zone) == ("dairy", None)
            bound_at = rig.label("shelf-1").bound_at
        # Only the zone moved: the label keeps its binding (and its bound_at).
        device = files_device(folder, [{"key": "shelf-1", "sku": "MILK", "zone": "chilled"},
                                       {"key": "shelf-2", "sku": "MILK", "zone": "dairy"}])
        async with LabelRig(tmp_path, [device]) as rig:
            one, two = rig.label("shelf-1"), rig.label("shelf-2")
            assert (one.zone, one.source, one.bound_at) == ("chilled", "config", bound_at)
            assert two.zone == "dairy"
            rows = {lb.mac: lb.zone for lb in await rig.store.read(lambda c: load(c))}
            assert rows == {"shelf-1": "chilled", "shelf-2": "dairy"}

    run(scenario())


def test_every_label_alert_carries_the_labels_zone(tmp_path, ap):
    async def scenario():
        labels = [{"mac": A, "sku": "MILK", "zone": "dairy"}, {"mac": B, "sku": "TEA"}]
        device = oepl_device(ap.url, labels, low_battery_mv=2600)
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80"), item("TEA", "5.00")]) as rig:
            await rig.until(lambda: all(rig.label(m).confirmed_at for m in (A, B)), what="both confirmed")
            # A price the checkout charges and the labels cannot show: past the grace, an alert each.
            ap.fault = Fault.ERROR_500
            await rig.set_items(item("MILK", "9.90", version=2), item("TEA", "4.00", version=2))
            await rig.until(lambda: {a["mac"] for a in rig.raised("label_price_mismatch")} >= {A, B},
                            what="price alerts")
            summary = rig.service.summary()
            assert summary["labels"] == 2 and summary["past_grace"] == 2 and summary["oldest_past_grace_since"]
            raised = {a["mac"]: a for a in rig.raised("label_price_mismatch")}
            assert (raised[A]["zone"], raised[B]["zone"]) == ("dairy", None)
            sent = {a["mac"]: a for a in await rig.outbox_alerts() if a.get("code") == "label_price_mismatch"}
            assert (sent[A]["zone"], sent[B]["zone"]) == ("dairy", None)
            ap.fault = Fault.NONE
            await rig.until(lambda: {a["mac"] for a in rig.cleared("label_price_mismatch")} >= {A, B},
                            what="price alerts cleared", timeout=40)
            cleared = {a["mac"]: a for a in rig.cleared("label_price_mismatch")}
            assert (cleared[A]["zone"], cleared[B]["zone"]) == ("dairy", None)
            # A battery running low: the same.
            with ap.lock:
                ap.tags[A].battery_mv = 2300
            await rig.until(lambda: rig.raised("label_low_battery"), what="battery alert")
            [battery] = rig.raised("label_low_battery")
            assert (battery["mac"], battery["zone"]) == (A, "dairy")

    run(scenario())
