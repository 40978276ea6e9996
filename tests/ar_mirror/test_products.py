"""Try-on products as data, joined with the catalog: only what the store has or can order."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from ar_mirror import products
from edge_agent.catalog import CatalogItem, Product

REPO = Path(__file__).resolve().parents[2]


def product(sku: str, store: int, online: int, promo: dict | None = None) -> Product:
    return Product(sku=sku, barcodes=[], name=f"Name of {sku}", price=Decimal("100.00"), currency="CNY",
                   promo=promo, stock_store=store, stock_online=online, rating=None, reviews=0, version=1)


def test_the_packaged_file_covers_demo_catalog_skus():
    tryons = products.load()
    assert {t.kind for t in tryons.values()} == {"lipstick", "eyeshadow", "blush", "glasses", "top", "outerwear"}
    demo = {item["sku"] for item in json.loads((REPO / "demo" / "catalog.json").read_text(encoding="utf-8"))}
    assert set(tryons) <= demo
    for item in json.loads((REPO / "demo" / "catalog.json").read_text(encoding="utf-8")):
        CatalogItem.model_validate(item)


def test_offers_show_what_the_store_has_or_can_order_in_file_order():
    tryons = products.load()
    catalog = {
        "LIP-RED-01": product("LIP-RED-01", 3, 0, {"price": "80.00", "label": "Double 11"}),
        "LIP-NUDE-02": product("LIP-NUDE-02", 0, 0),  # sold out everywhere: not shown
        "GLS-ROUND-BLK": product("GLS-ROUND-BLK", 0, 7),  # online only
        "TOTE-CANVAS": product("TOTE-CANVAS", 9, 9),  # no try-on data
    }
    offers = products.offers(tryons, catalog)
    assert [o.sku for o in offers] == ["LIP-RED-01", "GLS-ROUND-BLK"]
    lip, gls = offers
    assert lip.price == Decimal("80.00") and lip.promo == "Double 11" and lip.kind == "lipstick"
    assert (gls.stock_store, gls.stock_online) == (0, 7)


def test_a_bad_entry_names_the_file_the_sku_and_the_key(tmp_path):
    path = tmp_path / "tryon.yaml"
    path.write_text("LIP-1:\n  kind: lipstick\n  shade: red\n")
    with pytest.raises(ValueError, match=r"tryon.yaml: LIP-1: .*#rrggbb"):
        products.load(path)
    path.write_text("LIP-1:\n  kind: mascara\n")
    with pytest.raises(ValueError, match=r"LIP-1: kind"):
        products.load(path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="must map each SKU"):
        products.load(path)


def test_a_glasses_image_is_found_next_to_the_file_and_needs_its_anchors(tmp_path):
    (tmp_path / "frame.png").write_bytes(b"png")
    path = tmp_path / "tryon.yaml"
    path.write_text("GLS-1:\n  kind: glasses\n  style: frame.png\n")
    with pytest.raises(ValueError, match="needs anchors"):
        products.load(path)
    path.write_text("GLS-1:\n  kind: glasses\n  style: frame.png\n  anchors: [[10, 20], [60, 20]]\n")
    assert products.load(path)["GLS-1"].style == str(tmp_path / "frame.png")
    path.write_text("GLS-1:\n  kind: glasses\n  style: missing.png\n  anchors: [[10, 20], [60, 20]]\n")
    with pytest.raises(ValueError, match="neither a built-in frame"):
        products.load(path)


def rgba_png(path, width=40, height=50, channels=4) -> None:
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.zeros((height, width, channels), np.uint8))


def test_garments_need_their_picture_fit_and_sizes(tmp_path):
    rgba_png(tmp_path / "tee.png")
    path = tmp_path / "tryon.yaml"
    fit = "  fit: {shoulder_right: [1, 1], shoulder_left: [9, 1], hip_right: [2, 9], hip_left: [8, 9]}\n"
    path.write_text("TEE-1:\n  kind: top\n  style: tee.png\n  sizes: {S: 40}\n")
    with pytest.raises(ValueError, match="needs fit"):
        products.load(path)
    path.write_text("TEE-1:\n  kind: top\n  style: tee.png\n" + fit)
    with pytest.raises(ValueError, match="needs sizes"):
        products.load(path)
    path.write_text("TEE-1:\n  kind: top\n  style: nope.png\n  sizes: {S: 40}\n" + fit)
    with pytest.raises(ValueError, match="RGBA PNG"):
        products.load(path)
    path.write_text("TEE-1:\n  kind: top\n  style: tee.png\n  sizes: {S: 40}\n"
                    "  fit: {shoulder_right: [1, 1], shoulder_left: [9, 1]}\n")
    with pytest.raises(ValueError, match="hip_right, hip_left"):
        products.load(path)
    path.write_text("TEE-1:\n  kind: top\n  style: tee.png\n  sizes: {S: 40, M: 43}\n" + fit)
    tee = products.load(path)["TEE-1"]
    layer = tee.layer("TEE-1")
    assert layer.style == str(tmp_path / "tee.png") and layer.fit["hip_left"] == (8, 9)
    offer = products.offers({"TEE-1": tee}, {"TEE-1": product("TEE-1", 1, 0)})[0]
    assert offer.sizes == ["S", "M"] and offer.kind == "top"


@pytest.mark.parametrize(("make", "why"), [
    (lambda p: p.write_bytes(b"not a png at all, only words"), "not an RGBA PNG"),
    (lambda p: rgba_png(p, channels=3), "not an RGBA PNG"),  # no alpha: the background would be drawn
    (lambda p: rgba_png(p, width=3000), "3000x50; a garment picture's sides must be 16 to 2048"),
    (lambda p: rgba_png(p, height=8), "40x8"),
])
def test_a_garment_picture_is_checked_from_its_header_before_the_mirror_draws_it(tmp_path, make, why):
    make(tmp_path / "tee.png")
    path = tmp_path / "tryon.yaml"
    path.write_text("TEE-1:\n  kind: top\n  style: tee.png\n  sizes: {S: 40}\n"
                    "  fit: {shoulder_right: [1, 1], shoulder_left: [9, 1], hip_right: [2, 9], hip_left: [8, 9]}\n")
    with pytest.raises(ValueError, match=why.replace("(", r"\(")):
        products.load(path)


def test_the_garment_pictures_match_their_drawing_script():
    """products.yaml's fit is where make_garments.py put the joints, and each picture is an RGBA PNG."""
    import cv2

    from ar_mirror.garments.make_garments import ANCHORS, SIZE

    for sku, tryon in products.load().items():
        if tryon.kind not in ("top", "outerwear"):
            continue
        assert tryon.fit == ANCHORS, sku
        image = cv2.imread(tryon.style, cv2.IMREAD_UNCHANGED)
        assert image.shape == (SIZE[1], SIZE[0], 4), sku


@pytest.mark.parametrize(("shoulder", "size"), [(30, "S"), (41, "S"), (41.5, "M"), (47, "L"), (49, "XL"), (60, "XL")])
def test_the_suggested_size_is_the_smallest_that_fits_the_shoulders(shoulder, size):
    assert products.suggest_size({"S": 41, "M": 44, "L": 47, "XL": 50}, shoulder) == size
    assert products.suggest_size({}, shoulder) is None
