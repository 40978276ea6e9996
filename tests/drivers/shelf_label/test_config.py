"""devices.yaml keys of the label back ends: every mistake is a FILE:LINE problem that says how to fix it."""

from __future__ import annotations

import pytest

from edge_agent.config import parse
from edge_core.errors import ConfigError

HEAD = """\
store:
  id: store-001
  name: Demo Store
devices:
"""


def problems(devices: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(HEAD + devices, "devices.yaml", environ={})
    return err.value.problems


def test_a_full_oepl_device_and_a_files_device_are_valid():
    cfg = parse(HEAD + """\
  - id: labels-1
    kind: shelf_label.oepl
    url: http://192.168.1.60/
    model: m2-4.2-bwr
    url_template: https://shop.example.com/p/{sku}
    stale_after: 900
    low_battery_mv: 2500
    concurrency: 8
    retries: 2
    compliance_grace: 120
    labels:
      - {mac: "00:00:02:1d:4e:83:b4:a1", sku: LIP-RED-01}
      - {mac: 1D4E83B4A100, sku: TOTE-CANVAS, model: m2-2.9-bwr}
  - id: paper-1
    kind: shelf_label.files
    dir: labels
    labels:
      - {key: shelf-1, sku: LIP-RED-01}
      - {mac: 0000021D4E83B4A9, sku: TOTE-CANVAS}
""", environ={})
    oepl, files = cfg.devices
    assert oepl.url == "http://192.168.1.60" and oepl.model == "m2-4.2-bwr" and oepl.concurrency == 8
    assert [b.label for b in oepl.labels] == ["0000021D4E83B4A1", "00001D4E83B4A100"]
    assert oepl.labels[1].model == "m2-2.9-bwr" and oepl.labels[0].model is None
    assert [b.label for b in files.labels] == ["shelf-1", "0000021D4E83B4A9"]
    assert (oepl.poll_interval, oepl.sweep_interval, files.compliance_grace) == (30.0, 300.0, 300.0)


def test_an_unknown_label_model_names_the_known_ones():
    [problem] = problems("""\
  - id: labels-1
    kind: shelf_label.oepl
    url: http://ap
    model: m2-2.9
""")
    assert problem.startswith("devices.yaml:8: devices.0.model: unknown label model 'm2-2.9'; known models: ")
    assert "m2-2.9-bwr" in problem and "m2-4.2-bwr" in problem


def test_binding_mistakes_are_reported_at_their_lines():
    found = problems("""\
  - id: labels-1
    kind: shelf_label.oepl
    url: ftp://ap
    labels:
      - {mac: 0000021D4E83B4A1, sku: A}
      - {mac: not-a-mac, sku: B}
      - {mac: 10:20:30:40:50:59, sku: C}
      - {mac: 0000021D4E83B4A2, sku: "bad sku"}
      - {mac: 0000021D4E83B4A3, sku: D, model: huge}
      - {mac: 0000021D4E83B4A4, sku: E, color: red}
""")
    text = "\n".join(found)
    assert "devices.yaml:7: devices.0.url: 'ftp://ap' must be the access point's address as http://HOST" in text
    assert "devices.yaml:10: devices.0.labels.1.mac: 'not-a-mac' is not a tag MAC" in text
    # YAML 1.1 reads 10:20:30:40:50:59 as a number (base 60): the fix is quotes.
    assert "devices.yaml:11: devices.0.labels.2.mac must be text" in text and "put the value in quotes" in text
    assert "devices.yaml:12: devices.0.labels.3.sku" in text
    assert "devices.yaml:13: devices.0.labels.4.model: unknown label model 'huge'" in text
    assert "devices.yaml:14: unknown key 'color' in devices.0.labels.5" in text


def test_a_label_listed_twice_is_reported_at_the_second():
    [problem] = problems("""\
  - id: labels-1
    kind: shelf_label.oepl
    url: http://ap
    labels:
      - {mac: 0000021D4E83B4A1, sku: A}
      - {mac: 0000021D4E83B4A2, sku: B}
      - {mac: "00:00:02:1D:4E:83:B4:A1", sku: C}
""")
    assert problem == ("devices.yaml:11: devices.0.labels.2.mac: label 0000021D4E83B4A1 is listed twice "
                       "(labels.0 and labels.2); "
                       "bind each label once")


def test_a_label_bound_by_two_devices_is_refused():
    [problem] = problems("""\
  - id: labels-1
    kind: shelf_label.oepl
    url: http://ap-1
    labels:
      - {mac: 0000021D4E83B4A1, sku: A}
  - id: labels-2
    kind: shelf_label.oepl
    url: http://ap-2
    labels:
      - {mac: "00:00:02:1d:4e:83:b4:a1", sku: B}
""")
    assert problem == ("devices.yaml:14: label 0000021D4E83B4A1 is already bound by device 'labels-1' at line 9; "
                       "bind it to one device only")


@pytest.mark.parametrize("entry, message", [
    ("{sku: A}", "give a label either key (the file name) or mac"),
    ("{key: a, mac: 0000021D4E83B4A1, sku: A}", "not both and not neither"),
    ("{key: ../x, sku: A}", "is not a label key"),
])
def test_a_file_label_needs_one_key_or_mac(entry, message):
    [problem] = problems(f"""\
  - id: paper-1
    kind: shelf_label.files
    dir: labels
    labels:
      - {entry}
""")
    assert problem.startswith("devices.yaml:9:") and message in problem


@pytest.mark.parametrize("keys, message", [
    ("url_template: https://shop/p/{id}", "must contain {sku}"),
    ("url_template: shop/{sku}", "must be an http(s) URL"),
    ("concurrency: 0", "devices.0.concurrency is too small"),
    ("low_battery_mv: 12", "devices.0.low_battery_mv is too small"),
    ("url: http://ap:99999", "bad port"),
])
def test_device_keys_are_checked(keys, message):
    base = {"url": "url: http://ap"}
    key = keys.split(":", 1)[0]
    lines = [f"    {keys}"] + ([f"    {base['url']}"] if key != "url" else [])
    found = problems("  - id: labels-1\n    kind: shelf_label.oepl\n" + "\n".join(lines) + "\n")
    assert any(message in p for p in found), found
