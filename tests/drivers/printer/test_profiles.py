"""Printer profiles: the shipped file loads, agrees with python-escpos's database, and errors are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
from escpos.capabilities import CAPABILITIES
from escpos.printer import Dummy

from drivers.printer.profiles import (
    ConfigError,
    UnknownProfile,
    escpos_profile,
    get_profile,
    load_profiles,
    profile_names,
)

NAMES = profile_names()


def test_the_required_kinds_of_printer_are_there():
    profiles = [get_profile(n) for n in NAMES]
    assert any(p.paper_width_mm == 80 and not p.gb18030 and p.qr == "native" for p in profiles)
    assert any(p.paper_width_mm == 58 for p in profiles)
    assert any(p.paper_width_mm == 80 and p.gb18030 for p in profiles)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(UnknownProfile) as err:
        get_profile("tm-t1000")
    message = str(err.value)
    assert "'tm-t1000'" in message
    for name in NAMES:
        assert name in message
    # Both a ConfigError (the agent's tree) and a ValueError (so pydantic validators report it).
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", [n for n in NAMES if get_profile(n).escpos_base], ids=str)
def test_agrees_with_python_escpos_capabilities(name):
    ours = get_profile(name)
    theirs = CAPABILITIES["profiles"][ours.escpos_base]
    assert ours.dots_per_line == theirs["media"]["width"]["pixels"]
    assert ours.chars_per_line.a == theirs["fonts"]["0"]["columns"]
    assert ours.chars_per_line.b == theirs["fonts"]["1"]["columns"]
    for cp in ours.code_pages:
        assert theirs["codePages"][str(cp.esc_t)] == cp.codec.upper(), f"ESC t {cp.esc_t}"
    features = theirs["features"]
    assert (ours.qr == "native") == bool(features["qrCode"])
    assert ours.barcode_code128 == bool(features["barcodeB"])
    assert (ours.cutter != "none") == bool(features["paperFullCut"] or features["paperPartCut"])
    if ours.cutter == "partial":
        assert features["paperPartCut"]


@pytest.mark.parametrize("name", NAMES, ids=str)
def test_escpos_profile_drives_dummy(name):
    ours = get_profile(name)
    p = Dummy(profile=escpos_profile(ours))
    assert p.profile.get_columns("a") == ours.chars_per_line.a
    assert p.profile.get_columns("b") == ours.chars_per_line.b
    assert p.profile.profile_data["media"]["width"]["pixels"] == ours.dots_per_line
    p.cut(mode="PART" if ours.cutter == "partial" else "FULL")
    cut = {"full": b"\x1dV\x00", "partial": b"\x1dV\x01", "none": b""}[ours.cutter]
    assert p.output == b"\x1bd\x06" + cut


def test_bad_file_names_the_file_and_the_key(tmp_path: Path):
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "profiles:\n"
        "  good:\n"
        "    paper_width_mm: 80\n    dots_per_line: 512\n    chars_per_line: {a: 42, b: 56}\n"
        "    encoding: gb18030\n    cutter: full\n    qr: native\n    barcode_code128: true\n    drawer: false\n"
        "  bad:\n"
        "    paper_width_mm: 80\n    dots_per_line: 512\n    chars_per_line: {a: 42, b: 56}\n"
        "    encoding: [{codec: utf-8, esc_t: 0}]\n    cutter: sideways\n    qr: native\n"
        "    barcode_code128: true\n    drawer: false\n    colour: red\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_profiles(path)
    (problem,) = err.value.problems
    assert str(path) in problem and "'bad'" in problem
    assert "cutter" in problem and "colour" in problem and "single-byte" in problem


def test_unreadable_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError):
        load_profiles(tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_text("profiles: [1, 2", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_profiles(tmp_path / "x.yaml")
