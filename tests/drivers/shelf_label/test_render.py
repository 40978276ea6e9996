"""Label rendering: golden images per model, palette, content hash, bad input.

Golden PNGs live in tests/fixtures/shelf_label/<model>__<content>.png and are
compared pixel for pixel. After a deliberate change to a layout or to the
drawing code, regenerate them and look at them before committing:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/drivers/shelf_label/test_render.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from drivers.shelf_label import fonts
from drivers.shelf_label.models import Block, LabelModel, Template, get_model, load_models
from drivers.shelf_label.render import (
    MAX_PRICE, InvalidCurrency, InvalidPrice, LabelContent, LabelDataError, PriceDoesNotFit, PromoContent,
    content_hash, next_change, palette_colors, render, render_notice,
)
from edge_agent.catalog import CatalogItem, Product, Promo

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "shelf_label"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
URL = "https://shop.example.com/p/"

CONTENTS = {
    "latin": LabelContent(sku="MILK-1L", name="Organic Whole Milk 1 L", price=Decimal("12.80"), currency="CNY",
                          rating=4.5, reviews=1234, stock_store=8, stock_online=120, url=URL + "MILK-1L"),
    "chinese": LabelContent(sku="TEA-250", name="西湖龙井绿茶 250克 礼盒装", price=Decimal("168.00"),
                            currency="CNY", rating=3.5, reviews=87, stock_store=3, url=URL + "TEA-250"),
    "promo": LabelContent(sku="OIL-5L", name="金龙鱼 Peanut Oil 花生油 5L", price=Decimal("89.90"), currency="CNY",
                          promo=PromoContent(Decimal("69.90"), date(2025, 6, 30)), rating=4.0, reviews=5,
                          stock_store=20, stock_online=2, url=URL + "OIL-5L"),
    "norating": LabelContent(sku="BREAD", name="Sourdough bread", price=Decimal("6.50"), currency="EUR"),
    "longname": LabelContent(sku="LONG", name=("Extra long product name with many words 超长的商品名称测试 " * 6)[:300],
                             price=Decimal("1234567.99"), currency="CNY", rating=1, url=URL + "LONG"),
}
MODELS = sorted(load_models())
NOTICE = "请咨询店员 Please ask staff for the price"


def content(**changes) -> LabelContent:
    """The "latin" content with some fields changed."""
    base = CONTENTS["latin"]
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    return LabelContent(**(fields | changes))


def check_golden(name: str, img: Image.Image, tmp_path: Path) -> None:
    path = GOLDEN / f"{name}.png"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        img.save(path, "PNG")
        return
    assert path.exists(), f"no golden image {path}; create it with UPDATE_GOLDEN=1 and look at it"
    golden = Image.open(path)
    same = golden.size == img.size and golden.convert("RGB").tobytes() == img.convert("RGB").tobytes()
    if not same:
        actual = tmp_path / f"{name}.png"
        img.save(actual)
        pytest.fail(f"{name} differs from {path}; this run drew {actual}. If the change is meant, "
                    f"regenerate with UPDATE_GOLDEN=1 and look at the new pictures.")


# Golden images ---------------------------------------------------------------


@pytest.mark.parametrize("content_name", sorted(CONTENTS))
@pytest.mark.parametrize("model_name", MODELS)
def test_label_matches_its_golden_image(model_name, content_name, tmp_path):
    model = get_model(model_name)
    img = render(CONTENTS[content_name], model)
    assert img.size == (model.width, model.height)
    check_golden(f"{model_name}__{content_name}", img, tmp_path)


@pytest.mark.parametrize("model_name", MODELS)
def test_notice_matches_its_golden_image(model_name, tmp_path):
    model = get_model(model_name)
    check_golden(f"{model_name}__notice", render_notice(NOTICE, model), tmp_path)


def test_every_golden_file_belongs_to_a_test():
    expected = {f"{m}__{c}.png" for m in MODELS for c in (*CONTENTS, "notice")}
    assert {p.name for p in GOLDEN.glob("*.png")} == expected


# Palette ---------------------------------------------------------------------


@pytest.mark.parametrize("model_name", MODELS)
def test_only_the_panel_colours_are_drawn(model_name):
    model = get_model(model_name)
    for c in CONTENTS.values():
        img = render(c, model)
        assert img.mode == "P"
        assert img.getpalette() == [v for rgb in model.palette for v in rgb]
        assert palette_colors(img) <= set(model.palette)
    assert palette_colors(render_notice(NOTICE, model)) <= set(model.palette)


def test_a_promotion_is_red_on_red_panels_and_black_on_black_and_white():
    promo = CONTENTS["promo"]
    assert (255, 0, 0) in palette_colors(render(promo, get_model("m3-2.9-bwr")))
    assert palette_colors(render(promo, get_model("m3-2.9-bw"))) == {(255, 255, 255), (0, 0, 0)}
    assert (255, 0, 0) not in palette_colors(render(CONTENTS["latin"], get_model("m3-2.9-bwr")))


def test_rotation_turns_the_layout_onto_the_panel():
    portrait = get_model("m2-2.9-bwr-portrait")
    assert portrait.canvas == (128, 296) and (portrait.width, portrait.height) == (296, 128)
    assert render(CONTENTS["latin"], portrait).size == (296, 128)


def test_rendering_is_deterministic():
    model = get_model("m2-2.9-bwr")
    assert render(CONTENTS["promo"], model).tobytes() == render(CONTENTS["promo"], model).tobytes()


# Content hash ----------------------------------------------------------------


def test_content_hash_is_stable_across_processes():
    model = get_model("m2-2.9-bwr")
    here = content_hash(CONTENTS["promo"], model)
    code = ("from decimal import Decimal; from datetime import date\n"
            "from drivers.shelf_label.models import get_model\n"
            "from drivers.shelf_label.render import LabelContent, PromoContent, content_hash\n"
            "c = LabelContent(sku='OIL-5L', name='金龙鱼 Peanut Oil 花生油 5L', price=Decimal('89.90'), "
            "currency='CNY', promo=PromoContent(Decimal('69.90'), date(2025, 6, 30)), rating=4.0, reviews=5, "
            "stock_store=20, stock_online=2, url='https://shop.example.com/p/OIL-5L')\n"
            "print(content_hash(c, get_model('m2-2.9-bwr')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONHASHSEED": "12345"}).stdout.strip()
    assert out == here and len(here) == 32


def test_content_hash_changes_with_what_the_label_shows():
    model = get_model("m2-2.9-bwr")
    base = content_hash(content(), model)
    assert content_hash(content(price=Decimal("12.90")), model) != base
    assert content_hash(content(promo=PromoContent(Decimal("9.90"), date(2025, 1, 31))), model) != base
    assert content_hash(content(name="Organic Whole Milk 2 L"), model) != base
    assert content_hash(content(stock_online=0), model) != base  # "also online" disappears
    assert content_hash(content(), get_model("m3-2.9-bwr")) != base


def test_content_hash_ignores_what_the_label_does_not_show():
    square = get_model("m2-1.54-bwr")  # no sku, no QR, no store count on this layout
    base = content_hash(content(), square)
    assert content_hash(content(sku="OTHER"), square) == base
    assert content_hash(content(url="https://elsewhere.example.com/x"), square) == base
    assert content_hash(content(stock_store=99), square) == base
    assert content_hash(content(name="  Organic   Whole Milk 1 L\n"), square) == base  # same text once cleaned
    wide = get_model("m2-2.9-bwr")
    no_rating = content(rating=None)
    assert content_hash(no_rating, wide) == content_hash(content(rating=None, reviews=5), wide)


# Names -----------------------------------------------------------------------


def test_a_300_character_name_shrinks_then_ends_in_an_ellipsis():
    name = CONTENTS["longname"].name
    assert len(name) == 300
    block = next(b for b in get_model("m2-2.9-bwr").template.blocks if b.kind == "name")
    size, lines = fonts.fit(fonts.clean(name), block.size, block.smallest, block.box[2], block.box[3], block.lines)
    assert size == block.smallest and len(lines) == block.lines
    assert lines[-1].endswith(fonts.ELLIPSIS)
    assert all(fonts.width(line, size) <= block.box[2] for line in lines)


def test_a_short_name_keeps_the_largest_size():
    block = next(b for b in get_model("m2-2.9-bwr").template.blocks if b.kind == "name")
    size, lines = fonts.fit("Milk", block.size, block.smallest, block.box[2], block.box[3], block.lines)
    assert (size, lines) == (block.size, ["Milk"])


def test_chinese_wraps_between_characters_and_keeps_punctuation_on_the_line():
    lines = fonts.wrap("有机全脂牛奶，新鲜直达，每日配送到家", 16, 100)
    assert len(lines) > 1
    assert all(not line.startswith(("，", "。")) for line in lines)
    assert "".join(lines) == "有机全脂牛奶，新鲜直达，每日配送到家"


def test_a_word_longer_than_the_line_is_cut():
    lines = fonts.wrap("Supercalifragilisticexpialidocious", 14, 60)
    assert len(lines) > 1 and all(fonts.width(line, 14) <= 60 for line in lines)


def test_control_characters_in_a_name_are_dropped():
    assert fonts.clean("Milk\x00\x1b[31m\t 1 L\u200b") == "Milk[31m 1 L"


def test_characters_the_font_lacks_are_dropped_not_drawn_as_boxes():
    assert fonts.clean("Milk 🥛 1 L 𠀀") == "Milk 1 L"
    assert fonts.has_glyph("牛") and fonts.has_glyph("¥") and not fonts.has_glyph("😀")
    model = get_model("m2-2.9-bwr")
    assert content_hash(content(name="Organic Whole Milk 1 L 🥛"), model) == content_hash(content(), model)


# Bad input -------------------------------------------------------------------


@pytest.mark.parametrize("price", [Decimal("-1.00"), Decimal("0"), Decimal("0.00"), MAX_PRICE + Decimal("0.01"),
                                   Decimal("NaN"), Decimal("Infinity"), Decimal("1.005"), 12.8, "12.80", None])
def test_a_price_the_label_must_not_show_is_refused(price):
    with pytest.raises(InvalidPrice):
        content(price=price)


def test_a_price_finer_than_the_currency_is_refused():
    with pytest.raises(InvalidPrice, match="JPY"):
        content(price=Decimal("12.50"), currency="JPY")
    content(price=Decimal("1280"), currency="JPY")


@pytest.mark.parametrize("promo", [Decimal("12.80"), Decimal("15.00"), Decimal("0"), Decimal("-2")])
def test_a_promo_price_not_below_the_price_or_not_positive_is_refused(promo):
    with pytest.raises(InvalidPrice):
        content(promo=PromoContent(promo, None))


@pytest.mark.parametrize("currency", ["", None, "cny", "YUAN", "¥", "C N"])
def test_a_missing_or_malformed_currency_is_refused(currency):
    with pytest.raises(InvalidCurrency):
        content(currency=currency)


def test_an_unknown_currency_code_is_shown_by_its_code():
    img = render(content(currency="XTS"), get_model("m2-2.9-bwr"))
    assert img.size == (296, 128)


@pytest.mark.parametrize("changes", [{"name": ""}, {"name": " \n\t"}, {"rating": 5.5}, {"rating": -1},
                                     {"reviews": -1}, {"stock_online": -3}, {"stock_store": -1}])
def test_other_impossible_content_is_refused(changes):
    with pytest.raises(LabelDataError):
        content(**changes)


def test_label_data_errors_are_value_errors_the_driver_can_catch_as_one():
    assert issubclass(InvalidPrice, LabelDataError) and issubclass(InvalidCurrency, LabelDataError)
    assert issubclass(PriceDoesNotFit, InvalidPrice) and issubclass(LabelDataError, ValueError)


@pytest.mark.parametrize("model_name", MODELS)
def test_the_largest_valid_price_fits_every_model(model_name):
    big = content(price=MAX_PRICE)
    render(big, get_model(model_name))
    render(content(price=MAX_PRICE, promo=PromoContent(MAX_PRICE - 1, date(2030, 1, 1))), get_model(model_name))


def test_a_price_too_wide_for_its_block_is_refused_not_cut():
    base = get_model("m2-2.9-bwr")
    tiny = Template(canvas=(296, 128), blocks=(Block(kind="price", box=(0, 0, 40, 30), size=24, min_size=20),),
                    notice=base.template.notice)
    model = LabelModel(**(base.model_dump() | {"name": "tiny", "template": tiny}))
    with pytest.raises(PriceDoesNotFit, match="tiny"):
        render(content(price=Decimal("123456.78")), model)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "javascript:alert(1)", "https://x/" + "a" * 400,
                                 "https://x/\n"])
def test_a_url_unfit_for_a_qr_code_only_drops_the_qr_code(url):
    model = get_model("m2-2.9-bwr")
    assert content_hash(content(url=url), model) == content_hash(content(url=None), model)
    render(content(url=url), model)


def test_a_notice_of_any_length_fits():
    model = get_model("m2-1.54-bwr")
    render_notice("", model)
    render_notice("请咨询店员 " * 100, model)


# From the catalog ------------------------------------------------------------

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=timezone.utc)


def product(**changes) -> Product:
    fields = dict(sku="MILK-1L", barcodes=["6901234567892"], name="Organic Whole Milk 1 L", price=Decimal("12.80"),
                  currency="CNY", promo=None, stock_store=8, stock_online=120, rating=4.5, reviews=1234, version=1)
    return Product(**(fields | changes))


def test_from_product_copies_what_the_label_shows():
    c = LabelContent.from_product(product(), at=NOW, url=URL + "MILK-1L")
    assert c == CONTENTS["latin"]


def test_from_product_shows_a_running_promo_with_its_last_local_day():
    # Ends at midnight Shanghai time on 1 July: the last day is 30 June there.
    ends = datetime(2025, 6, 30, 16, 0, tzinfo=timezone.utc)
    p = product(promo=Promo(price=Decimal("9.90"), starts_at=NOW.replace(day=1), ends_at=ends))
    c = LabelContent.from_product(p, at=NOW, tz=ZoneInfo("Asia/Shanghai"))
    assert c.promo == PromoContent(Decimal("9.90"), date(2025, 6, 30))
    assert next_change(p, NOW) == ends
    assert LabelContent.from_product(p, at=ends).promo is None


def test_from_product_hides_a_promo_that_has_not_started_or_is_not_lower():
    later = product(promo=Promo(price=Decimal("9.90"), starts_at=NOW.replace(day=20)))
    assert LabelContent.from_product(later, at=NOW).promo is None
    assert next_change(later, NOW) == NOW.replace(day=20)
    higher = product(promo=Promo(price=Decimal("15.00")))
    assert LabelContent.from_product(higher, at=NOW).promo is None


def test_from_product_refuses_a_free_promo_the_checkout_would_charge():
    with pytest.raises(InvalidPrice):
        LabelContent.from_product(product(promo=Promo(price=Decimal("0"))), at=NOW)


def test_from_product_shows_negative_store_stock_as_zero():
    assert LabelContent.from_product(product(stock_store=-4), at=NOW).stock_store == 0


def test_a_missing_font_names_the_package_to_install(monkeypatch):
    fonts.font.cache_clear()
    monkeypatch.setattr(fonts, "FONT_PATHS", (Path("/nonexistent/wqy-microhei.ttc"),))
    try:
        with pytest.raises(fonts.FontMissing, match="apt-get install fonts-wqy-microhei"):
            render(CONTENTS["latin"], get_model("m2-2.9-bwr"))
    finally:
        fonts.font.cache_clear()


def test_a_currency_without_minor_units_shows_no_decimals():
    model = get_model("m2-2.9-bwr")
    yen = content(price=Decimal("1280"), currency="JPY")
    assert content_hash(yen, model) != content_hash(content(price=Decimal("1280.00")), model)
    render(yen, model)


def test_from_a_catalog_item_as_the_hub_sends_it():
    item = CatalogItem(sku="TEA-250", name="西湖龙井绿茶 250克 礼盒装", price=Decimal("168.00"), currency="CNY")
    c = LabelContent.from_product(item, at=NOW)
    assert (c.stock_store, c.rating, c.promo, c.url) == (None, None, None, None)
    render(c, get_model("m2-4.2-bwr"))
