"""The store day inside ``make test``: 90 seconds of the same soak ``make soak`` runs, failing on any violation.

Its margins are the soak's own (signals within 60 s, drains within 180 s,
label grace plus 15 s): generous for two shared cores. The table is in the
failure message; the run dir (logs, report.json) stays in pytest's tmp dir.
The label and receipt judges have their own small tests here: a judge that
is wrong reports a bug that is not there, or misses one that is.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

from drivers.printer.elements import Receipt, Text
from drivers.shelf_label.models import get_model
from edge_agent.catalog import Product
from edge_agent.labels.plan import desire, draw
from soak.checks import Checks
from soak.day import CATALOG
from soak.invariants import PRICE_BLOCKS, _crop, _layout, receipts
from soak.ledger import Ledger, Sale
from soak.runner import run


def _picture(model: str, **changes: object):
    product = Product.model_validate({**CATALOG[0], **changes})
    desired = desire(product.sku, product, model, datetime.now(timezone.utc))
    return _layout(draw(desired)[0], get_model(model))


@pytest.mark.parametrize("model", ["m2-2.9-bwr", "m2-4.2-bwr"])
def test_the_label_judge_sees_the_price_and_only_the_price(model):
    """The soak judges a label by its price blocks' pixels: another price differs, another stock count does not."""
    m = get_model(model)
    shown = _crop(_picture(model, stock_store=24), m, PRICE_BLOCKS)
    assert shown == _crop(_picture(model, stock_store=3, stock_online=7), m, PRICE_BLOCKS)
    assert shown != _crop(_picture(model, promo={"price": Decimal("149.00"), "label": "x"}), m, PRICE_BLOCKS)
    assert shown != _crop(_picture(model, promo=None), m, PRICE_BLOCKS)  # 189.00, no struck-through price


@pytest.mark.slow
def test_a_90_second_store_day_keeps_every_promise(tmp_path):
    seed = int(os.environ.get("EDGE_SOAK_SEED", "1"))
    result = run(minutes=1.5, seed=seed, run_dir=tmp_path / "soak", quiet=True)
    assert result.ok, f"{result.violations} violations (logs in {result.run_dir}):\n{result.table}"


def _doc(*lines: str, end: str = "cut") -> Receipt:
    return Receipt(tuple(Text(line) for line in lines), end)


def _receipt_day(tmp_path, printed: list[Receipt]) -> SimpleNamespace:
    ledger = Ledger()
    answer = {"sale_id": "S-1", "currency": "CNY", "total": "318.00",
              "lines": [{"sku": "LIP-RED-01", "qty": 2, "unit_price": "159.00", "amount": "318.00"}]}
    ledger.add_sale(Sale("S-1", "kiosk-1", {}, answer, {"LIP-RED-01": ("Double 11", "159.00")}, "J-1", 0.0, 1))
    rig = SimpleNamespace(printers={"kiosk-1": None}, receipts=lambda kiosk: printed)
    return SimpleNamespace(rig=rig, ledger=ledger, checks=Checks(tmp_path, 0.0, quiet=True))


RECEIPT = ("Sale        S-1", "Lipstick    318.00", "  * Double 11: you save 60.00", "TOTAL         CNY 318.00")


def test_the_receipt_judge_counts_copies_of_sales_only(tmp_path):
    """A return slip names its sale on a "Sale" line too: it is no second receipt; an unmarked copy is."""
    slip = _doc("Return      R-1", "Sale        S-1", "Refund      159.00")
    day = _receipt_day(tmp_path, [_doc(*RECEIPT), slip])
    receipts(day)
    assert day.checks.violations == []
    day = _receipt_day(tmp_path, [_doc(*RECEIPT), _doc(*RECEIPT)])
    receipts(day)
    assert [v.what for v in day.checks.violations] == ["receipt printed once (copies without REPRINT)"]


def test_the_receipt_judge_wants_the_promotion_and_a_whole_copy(tmp_path):
    day = _receipt_day(tmp_path, [_doc(*(ln for ln in RECEIPT if "Double 11" not in ln))])
    receipts(day)
    assert [v.what for v in day.checks.violations] == ["receipt shows each promotion the sale got"]
    day = _receipt_day(tmp_path, [_doc(*RECEIPT[:2], end="disconnect")])
    receipts(day)
    assert [v.what for v in day.checks.violations] == ["a whole receipt (up to its cut) came out"]
