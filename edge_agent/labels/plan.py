"""What a label should show, from its binding and the catalog: pure functions.

``desire`` is the label's content and its content hash (render.content_hash),
or a notice when the truth cannot be shown: the product cannot be put on a
label as it is (render.LabelDataError: a price of 0, absurd, with too many
decimals, a currency that is not ISO 4217), the SKU is not in the catalog,
or the label is bound to nothing. The price a label shows is by construction
what the checkout charges (LabelContent.from_product mirrors
catalog.Product.unit_price), and ``checkout`` says what that is, so that a
notice is known not to show it.

``draw`` runs in the render thread: the picture of a Desired, and a notice
instead when the price does not fit the model (render.PriceDoesNotFit).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from PIL import Image

from drivers.shelf_label import fonts
from drivers.shelf_label.models import get_model
from drivers.shelf_label.oepl import encode_jpeg
from drivers.shelf_label.render import (
    RENDER_VERSION, LabelContent, LabelDataError, content_hash, next_change, render, render_notice,
)
from edge_agent.catalog import Product

# What a label says instead of a price it must not show: Chinese first for
# the chain's shoppers, English for everyone else.
NOTICE_PRICE = "请咨询店员 Please ask staff for the price"
NOTICE_UNBOUND = "未使用 Not in use"


@dataclass(frozen=True)
class Desired:
    """What one label should show."""

    hash: str
    model: str
    sku: str | None  # the product shown; None when bound to none
    price: Decimal | None  # the price on the label; None for a notice
    checkout: Decimal | None  # what the checkout charges now; None: not for sale here
    note: str | None = None  # why a notice
    content: LabelContent | None = None
    notice: str | None = None
    changes_at: datetime | None = None  # the promotion starts or ends: plan again then


def notice_hash(text: str, model: str) -> str:
    """The content hash of a notice on ``model`` (content_hash's counterpart)."""
    doc = {"render": RENDER_VERSION, "font": fonts.FONT_PACKAGE, "model": model, "notice": text}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def notice(model: str, sku: str | None, text: str, note: str, checkout: Decimal | None,
           changes_at: datetime | None = None) -> Desired:
    """A label that shows ``text`` and no price, for the reason ``note``."""
    return Desired(hash=notice_hash(text, model), model=model, sku=sku, price=None, checkout=checkout, note=note,
                   notice=text, changes_at=changes_at)


def desire(sku: str | None, product: Product | None, model: str, at: datetime, *, url: str | None = None,
           tz: tzinfo | None = None, unfit: dict[str, str] | None = None) -> Desired:
    """What a label bound to ``sku`` (None: unbound) shows at ``at``. ``unfit`` maps content hashes
    that render found too wide for their model to why, so they become notices without a render.
    UnknownLabelModel if ``model`` is not (any more) in models.yaml."""
    label_model = get_model(model)
    if sku is None:
        return notice(model, None, NOTICE_UNBOUND, "the label is bound to no product", None)
    if product is None:
        return notice(model, sku, NOTICE_PRICE, f"SKU {sku} is not in the catalog", None)
    checkout = product.unit_price(at)
    changes_at = next_change(product, at)
    try:
        content = LabelContent.from_product(product, at=at, url=url, tz=tz)
    except LabelDataError as err:
        return notice(model, sku, NOTICE_PRICE, str(err), checkout, changes_at)
    digest = content_hash(content, label_model)
    if unfit and digest in unfit:
        return notice(model, sku, NOTICE_PRICE, unfit[digest], checkout, changes_at)
    shown = content.promo.price if content.promo else content.price
    return Desired(hash=digest, model=model, sku=sku, price=shown, checkout=checkout, content=content, changes_at=changes_at)


def draw(desired: Desired, picture: str = "image") -> tuple[Image.Image | bytes, Desired]:
    """The picture of ``desired`` as a driver takes it (``picture``: "image", or "jpeg" bytes for an
    access point), or of a notice if its price does not fit (then with the notice's Desired)."""
    model = get_model(desired.model)
    image = None
    if desired.content is not None:
        try:
            image = render(desired.content, model)
        except LabelDataError as err:
            desired = notice(desired.model, desired.sku, NOTICE_PRICE, str(err), desired.checkout,
                             desired.changes_at)
    if image is None:
        image = render_notice(desired.notice or NOTICE_PRICE, model)
    return (encode_jpeg(image) if picture == "jpeg" else image), desired
