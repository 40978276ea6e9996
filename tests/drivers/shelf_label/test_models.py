"""Label models are data: the table loads, lookups work, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.shelf_label.models import (
    MODELS_FILE, PALETTES, UnknownLabelModel, get_model, load_models, model_for_hw_type,
)


def test_the_table_has_the_common_oepl_sizes():
    models = load_models()
    sizes = {(m.hw_type, m.width, m.height, m.colors) for m in models.values()}
    # resources/tagtypes/00.json, 01.json, 02.json, 40.json of OpenEPaperLink
    assert {(0x00, 152, 152, "bwr"), (0x01, 296, 128, "bwr"), (0x02, 400, 300, "bwr"),
            (0x40, 384, 168, "bw")} <= sizes
    for m in models.values():
        assert m.palette == PALETTES[m.colors] and m.palette[0] == (255, 255, 255)


def test_an_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownLabelModel, match="'m9-13.3-rainbow'; known models: m2-1.54-bwr, ") as err:
        get_model("m9-13.3-rainbow")
    assert isinstance(err.value, ValueError)


def test_a_model_is_found_by_its_oepl_hw_type():
    assert model_for_hw_type(0x01).name == "m2-2.9-bwr"  # not the portrait variant
    assert model_for_hw_type(0xEE) is None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text, encoding="utf-8")
    return path


TEMPLATE = """
templates:
  t:
    canvas: [100, 50]
    blocks: [{kind: price, box: [0, 0, 100, 50], size: 40}]
    notice: {kind: name, box: [0, 0, 100, 50], size: 20}
"""


@pytest.mark.parametrize("models, match", [
    ("  x: {description: d, width: 100, height: 50, colors: bwr, template: nope}", "template 'nope' is not one of t"),
    ("  x: {description: d, width: 50, height: 100, colors: bwr, template: t}", "laid out for"),
    ("  x: {description: d, width: 100, height: 50, colors: rainbow, template: t}", "colors"),
    ("  x: {description: d, width: 100, height: 50, colors: bwr, rotation: 45, template: t}", "rotation"),
    ("  x: {description: d, width: 100, height: 50, colors: bwr, template: t, shiny: true}", "shiny"),
])
def test_a_wrong_model_entry_is_named(tmp_path, models, match):
    with pytest.raises(ValueError, match=match) as err:
        load_models(write(tmp_path, TEMPLATE + "models:\n" + models + "\n"))
    assert "model 'x'" in str(err.value)


@pytest.mark.parametrize("block, match", [
    ("{kind: price, box: [50, 0, 100, 50]}", "reaches past the 100x50 canvas"),
    ("{kind: sparkles, box: [0, 0, 10, 10]}", "kind"),
    ("{kind: stock_online, box: [0, 0, 10, 10], format: 'online: {count}'}", "fields: n"),
    ("{kind: name, box: [0, 0, 10, 10], format: '{x}'}", "takes no format"),
    ("{kind: name, box: [0, 0, 10, 10], size: 10, min_size: 12}", "larger than size"),
])
def test_a_wrong_block_is_named(tmp_path, block, match):
    text = TEMPLATE.replace("{kind: price, box: [0, 0, 100, 50], size: 40}", block) + "models: {}\n"
    with pytest.raises(ValueError, match=match):
        load_models(write(tmp_path, text))


def test_the_shipped_file_is_the_default():
    assert MODELS_FILE.name == "models.yaml" and load_models() == load_models(MODELS_FILE)
    with pytest.raises(TypeError):
        load_models()["mine"] = get_model("m2-2.9-bwr")  # the cached table is read-only
