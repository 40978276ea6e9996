"""What a label should show, and what the checkout charges: pure functions."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from PIL import Image

from drivers.shelf_label.models import UnknownLabelModel, get_model
from drivers.shelf_label.render import PriceDoesNotFit, render_notice
from edge_agent.catalog import Product, Promo
from edge_agent.labels import plan
from edge_agent.labels.plan import NOTICE_PRICE, NOTICE_UNBOUND, desire, draw, notice_hash

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
MODEL = "m2-2.9-bwr"


def product(price: str = "12.80", promo: Promo | None = None, **extra) -> Product:
    fields = dict(sku="MILK", barcodes=["BC-MILK"], name="Milk 1 L", price=Decimal(price), currency="CNY",
                  promo=promo, stock_store=3, stock_online=0, rating=4.5, reviews=10, version=1)
    return Product(**(fields | extra))


def test_a_product_shows_the_checkout_price_and_when_its_promotion_changes_it():
    promo = Promo(price=Decimal("9.90"), starts_at=NOW - timedelta(days=1), ends_at=NOW + timedelta(days=1))
    p = product(promo=promo)
    d = desire("MILK", p, MODEL, NOW, url="https://shop.example.com/p/MILK")
    assert d.price == d.checkout == p.unit_price(NOW) == Decimal("9.90")
    assert d.changes_at == NOW + timedelta(days=1) and d.note is None and d.sku == "MILK"
    after = desire("MILK", p, MODEL, NOW + timedelta(days=2))
    assert after.price == after.checkout == Decimal("12.80") and after.hash != d.hash


def test_equal_content_equal_hash_and_a_stock_count_changes_it():
    assert desire("MILK", product(), MODEL, NOW).hash == desire("MILK", product(), MODEL, NOW).hash
    assert desire("MILK", product(), MODEL, NOW).hash != desire("MILK", product(stock_store=4), MODEL, NOW).hash
    # The 2.9" model shows no store count... but the 4.2" one does; either way the price decides compliance.
    assert desire("MILK", product(), MODEL, NOW).price == desire("MILK", product(stock_store=4), MODEL, NOW).price


@pytest.mark.parametrize("sku, p, note, checkout", [
    (None, None, "bound to no product", None),
    ("GONE", None, "SKU GONE is not in the catalog", None),
    ("MILK", product("0"), "not above zero", Decimal("0")),
    ("MILK", product("12.50", currency="JPY"), "more decimals than JPY", Decimal("12.50")),
    ("MILK", product(currency="cny"), "not an ISO 4217 code", Decimal("12.80")),
])
def test_what_cannot_be_shown_truthfully_is_a_notice(sku, p, note, checkout):
    d = desire(sku, p, MODEL, NOW)
    assert d.price is None and note in d.note and d.checkout == checkout and d.content is None
    assert d.notice == (NOTICE_UNBOUND if sku is None else NOTICE_PRICE)
    assert d.hash == notice_hash(d.notice, MODEL) != notice_hash(d.notice, "m2-4.2-bwr")


def test_an_unknown_model_is_an_error_for_the_caller():
    with pytest.raises(UnknownLabelModel, match="known models"):
        desire("MILK", product(), "m9", NOW)


def test_draw_makes_what_the_driver_takes():
    d = desire("MILK", product(), MODEL, NOW)
    image, same = draw(d)
    assert same is d and image.mode == "P" and image.size == (296, 128)
    jpeg, _ = draw(d, "jpeg")
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"


def test_a_price_that_does_not_fit_is_drawn_as_a_notice(monkeypatch):
    def too_wide(content, model):
        raise PriceDoesNotFit(f"{content.sku}: does not fit")

    monkeypatch.setattr(plan, "render", too_wide)
    d = desire("MILK", product(), MODEL, NOW)
    image, drawn = draw(d)
    assert drawn.price is None and drawn.checkout == Decimal("12.80") and "does not fit" in drawn.note
    assert drawn.hash == notice_hash(NOTICE_PRICE, MODEL)
    assert image.tobytes() == render_notice(NOTICE_PRICE, get_model(MODEL)).tobytes()
    # Remembered as unfit, the next plan makes it a notice without drawing.
    again = desire("MILK", product(), MODEL, NOW, unfit={d.hash: drawn.note})
    assert again.hash == drawn.hash and again.note == drawn.note
