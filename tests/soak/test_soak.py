"""The store day inside ``make test``: 90 seconds of the same soak ``make soak`` runs, failing on any violation.

Its margins are the soak's own (signals within 60 s, drains within 180 s,
label grace plus 15 s): generous for two shared cores. The table is in the
failure message; the run dir (logs, report.json) stays in pytest's tmp dir.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from drivers.shelf_label.models import get_model
from edge_agent.catalog import Product
from edge_agent.labels.plan import desire, draw
from soak.day import CATALOG
from soak.invariants import PRICE_BLOCKS, _crop, _layout
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
