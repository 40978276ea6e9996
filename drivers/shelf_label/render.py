"""What a shelf label shows, and the picture of it: pure functions, no I/O.

    content = LabelContent.from_product(product, at=now, url=..., tz=store_tz)
    image = render(content, model)          # mode "P", exactly model.palette

A label must never show a price the agent does not believe. Content that
cannot be shown truthfully raises a ``LabelDataError`` (when it is built, or
from ``render`` if the price cannot be drawn whole); the driver then shows
``render_notice("ask staff ...", model)`` instead:

    ValueError
    └── LabelDataError        the content must not go on a label as it is
        ├── InvalidPrice      price or promo price not a Decimal, <= 0, absurd,
        │   │                 finer than the currency allows, promo not lower
        │   └── PriceDoesNotFit   valid, but too wide for the model even at min size
        └── InvalidCurrency   missing, or not three capital letters (ISO 4217)

Everything else is best effort: a 300-character name is shrunk, then cut
with an ellipsis; a URL that is not http(s) or too long for a QR code drops
the QR code; a negative store count shows as 0.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Protocol

from PIL import Image

from drivers.shelf_label import draw, fonts
from drivers.shelf_label.models import Block, LabelModel

# Bump when a change to the drawing code changes pixels, so that every label's
# content_hash changes and the driver pushes them all again.
RENDER_VERSION = 1
# The catalog's own bound (edge_agent/catalog.py): anything above is a data error.
MAX_PRICE = Decimal("10000000")
# A QR code of a longer URL needs modules too small for any label we have.
MAX_URL = 300
# ISO 4217 minor units, and the sign shoppers know. Codes not listed are shown
# by their code and two decimals. KRW's sign is missing from the label font.
CURRENCIES: dict[str, tuple[str, int]] = {
    "CNY": ("¥", 2), "JPY": ("¥", 0), "KRW": ("KRW", 0), "HKD": ("HK$", 2), "TWD": ("NT$", 2),
    "SGD": ("S$", 2), "USD": ("$", 2), "EUR": ("€", 2), "GBP": ("£", 2),
}
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class LabelDataError(ValueError):
    """The content must not go on a label as it is; show ``render_notice`` instead."""


class InvalidPrice(LabelDataError):
    """A price or promotion price the label must not show."""


class PriceDoesNotFit(InvalidPrice):
    """A valid price too wide for the model's price block even at its smallest size."""


class InvalidCurrency(LabelDataError):
    """The currency is missing or not an ISO 4217 code."""


@dataclass(frozen=True)
class PromoContent:
    """A running promotion as the label shows it: its price and its last day."""

    price: Decimal
    ends: date | None = None


@dataclass(frozen=True)
class LabelContent:
    """Everything a label may show about one product; validated when built."""

    sku: str
    name: str
    price: Decimal
    currency: str
    promo: PromoContent | None = None
    rating: float | None = None  # 0 to 5 stars
    reviews: int = 0
    stock_store: int | None = None  # None: the store's count is not shown
    stock_online: int = 0
    url: str | None = None  # the product's online page, shown as a QR code

    def __post_init__(self) -> None:
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise InvalidCurrency(f"{self.sku}: currency {self.currency!r} is not an ISO 4217 code like 'CNY'")
        _check_price(self.sku, "price", self.price, self.currency)
        if self.promo is not None:
            _check_price(self.sku, "promo price", self.promo.price, self.currency)
            if self.promo.price >= self.price:
                raise InvalidPrice(f"{self.sku}: promo price {self.promo.price} is not below the price {self.price}")
        if not isinstance(self.name, str) or not fonts.clean(self.name):
            raise LabelDataError(f"{self.sku}: the name is empty")
        if self.rating is not None and not (isinstance(self.rating, (int, float)) and 0 <= self.rating <= 5):
            raise LabelDataError(f"{self.sku}: rating {self.rating!r} is not between 0 and 5")
        for field in ("reviews", "stock_online"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 0:
                raise LabelDataError(f"{self.sku}: {field} {getattr(self, field)!r} is not a count")
        if self.stock_store is not None and (not isinstance(self.stock_store, int) or self.stock_store < 0):
            raise LabelDataError(f"{self.sku}: stock_store {self.stock_store!r} is not a count")

    @classmethod
    def from_product(cls, product: "ProductLike", *, at: datetime, url: str | None = None,
                     tz: tzinfo | None = None) -> "LabelContent":
        """The label of a catalog product at ``at``; the promo only while it runs and is lower,
        exactly as the checkout charges it (catalog.Product.unit_price). ``tz`` is the
        store's time zone, for the promotion's last day (UTC when None)."""
        promo = None
        p = product.promo
        if p is not None and p.active(at) and p.price < product.price:
            promo = PromoContent(price=p.price, ends=_last_day(p.ends_at, tz) if p.ends_at else None)
        stock_store = getattr(product, "stock_store", None)
        return cls(
            sku=product.sku, name=product.name, price=product.price, currency=product.currency, promo=promo,
            rating=product.rating, reviews=product.reviews,
            stock_store=None if stock_store is None else max(0, stock_store),
            stock_online=max(0, product.stock_online), url=url,
        )


class _PromoLike(Protocol):
    price: Decimal
    starts_at: datetime | None
    ends_at: datetime | None

    def active(self, at: datetime) -> bool: ...


class ProductLike(Protocol):
    """What from_product reads: edge_agent.catalog.Product and CatalogItem both fit."""

    sku: str
    name: str
    price: Decimal
    currency: str
    promo: _PromoLike | None
    rating: float | None
    reviews: int
    stock_online: int


def next_change(product: ProductLike, at: datetime) -> datetime | None:
    """When the product's label changes by itself (its promotion starts or ends) after ``at``."""
    p = product.promo
    times = [t for t in (p.starts_at, p.ends_at) if t is not None and t > at] if p else []
    return min(times, default=None)


def _last_day(ends_at: datetime, tz: tzinfo | None) -> date:
    # ends_at is exclusive (Promo.active: at < ends_at): a promotion ending at
    # midnight local time last runs the day before.
    if ends_at.tzinfo is None:
        ends_at = ends_at.replace(tzinfo=timezone.utc)
    return (ends_at - timedelta(microseconds=1)).astimezone(tz or timezone.utc).date()


def _check_price(sku: str, what: str, value: Any, currency: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidPrice(f"{sku}: {what} {value!r} is not a finite Decimal")
    if value <= 0:
        raise InvalidPrice(f"{sku}: {what} {value} is not above zero")
    if value > MAX_PRICE:
        raise InvalidPrice(f"{sku}: {what} {value} is above {MAX_PRICE}, which no label shows")
    minor = CURRENCIES.get(currency, (currency, 2))[1]
    if value != value.quantize(Decimal(1).scaleb(-minor)):
        raise InvalidPrice(f"{sku}: {what} {value} has more decimals than {currency} has ({minor})")


def price_parts(value: Decimal, currency: str) -> draw.PriceParts:
    """A valid price cut into sign, whole part with thousands separators, and decimals."""
    sign, minor = CURRENCIES.get(currency, (currency, 2))
    text = f"{value:,.{minor}f}"
    whole, _, decimals = text.partition(".")
    return draw.PriceParts(sign=sign, whole=whole, decimals=decimals)


def price_text(value: Decimal, currency: str) -> str:
    """A valid price on one line, as the struck-through old price shows it: '¥15.80'."""
    parts = price_parts(value, currency)
    return parts.sign + parts.whole + ("." + parts.decimals if parts.decimals else "")


def _resolve(content: LabelContent, model: LabelModel) -> list[tuple[Block, tuple[Any, ...]]]:
    """Each block that shows something, with exactly what it shows (the input of the hash)."""
    out: list[tuple[Block, tuple[Any, ...]]] = []
    promo = content.promo
    for block in model.template.blocks:
        item: tuple[Any, ...] | None = None
        match block.kind:
            case "name":
                item = (fonts.clean(content.name),)
            case "price":
                shown = promo.price if promo else content.price
                parts = price_parts(shown, content.currency)
                item = (parts.sign, parts.whole, parts.decimals, promo is not None)
            case "old_price" if promo:
                item = (price_text(content.price, content.currency),)
            case "promo_until" if promo and promo.ends:
                item = ((block.format or "until {ends:%Y-%m-%d}").format(ends=promo.ends),)
            case "rating" if content.rating is not None:
                count = (block.format or "({reviews:,})").format(reviews=content.reviews, rating=content.rating)
                item = (round(content.rating * 2), count if content.reviews else "")
            case "stock_store" if content.stock_store is not None:
                item = ((block.format or "in store: {n}").format(n=content.stock_store),)
            case "stock_online" if content.stock_online > 0:
                item = ((block.format or "also online: {n}").format(n=content.stock_online),)
            case "sku":
                item = ((block.format or "{sku}").format(sku=content.sku),)
            case "qr" if _qr_url(content.url):
                item = (content.url,)
            case "rule":
                item = ()
        if item is not None:
            out.append((block, item))
    return out


def _qr_url(url: str | None) -> bool:
    return bool(url) and len(url) <= MAX_URL and url.isprintable() and url.startswith(("https://", "http://"))


def content_hash(content: LabelContent, model: LabelModel) -> str:
    """A stable hash of what the label will show on ``model``: equal hashes, equal pictures."""
    shown = [[block.model_dump(mode="json"), list(item)] for block, item in _resolve(content, model)]
    # Only what changes pixels: a model's name, description or hwType does not.
    panel = model.model_dump(mode="json", exclude={"name", "description", "hw_type", "template_name"})
    doc = {"render": RENDER_VERSION, "font": fonts.FONT_PACKAGE, "model": panel, "shown": shown}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def _ink(color: str, model: LabelModel, accent: bool = False) -> int:
    """Palette index of a block colour on this model: red falls back to black on b/w panels."""
    red = color == "red" or color == "accent" or accent
    return 2 if red and model.has_red else 1


def render(content: LabelContent, model: LabelModel) -> Image.Image:
    """The label picture, mode "P" with exactly ``model.palette``, in the panel's native orientation."""
    img, pen = draw.canvas(model.canvas, model.palette)
    for block, item in _resolve(content, model):
        ink = _ink(block.color, model)
        match block.kind:
            case "name" | "promo_until" | "stock_store" | "stock_online" | "sku":
                draw.fitted_text(pen, block.box, item[0], block.size, block.smallest, block.lines, block.align,
                                 ink, middle=block.valign == "middle")
            case "price":
                sign, whole, decimals, on_promo = item
                if not draw.price(pen, block.box, draw.PriceParts(sign, whole, decimals), block.size,
                                  block.smallest, block.align, _ink(block.color, model, accent=on_promo)):
                    raise PriceDoesNotFit(f"{content.sku}: price {sign}{whole}.{decimals} does not fit the "
                                          f"{model.name} label even at {block.smallest} px")
            case "old_price":
                draw.struck(pen, block.box, item[0], block.size, block.smallest, block.align, ink)
            case "rating":
                halves, count = item
                star = min(block.size, block.box[3])
                x = draw.stars(img, block.box, halves / 2, star, ink)
                if count:
                    rest = block.box[0] + block.box[2] - x - 2
                    if rest > 0:
                        draw.fitted_text(pen, (x + 2, block.box[1], rest, block.box[3]), count, block.size,
                                         block.smallest, 1, "left", ink, middle=True)
            case "qr":
                draw.qr(img, block.box, item[0], block.border, block.min_module, ink)
            case "rule":
                x, y, w, h = block.box
                pen.rectangle((x, y, x + w - 1, y + h - 1), fill=ink)
    return _to_panel(img, model)


def render_notice(text: str, model: LabelModel) -> Image.Image:
    """A label that shows only ``text`` (e.g. "please ask staff for the price"), big, in the notice block."""
    img, pen = draw.canvas(model.canvas, model.palette)
    block = model.template.notice
    draw.fitted_text(pen, block.box, fonts.clean(text) or "?", block.size, block.smallest, block.lines,
                     block.align, _ink(block.color, model), middle=block.valign == "middle")
    return _to_panel(img, model)


# Clockwise turn of the layout onto the panel; PIL's ROTATE_90 turns anticlockwise.
_TURN = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def _to_panel(img: Image.Image, model: LabelModel) -> Image.Image:
    if model.rotation:
        img = img.transpose(_TURN[model.rotation])
    assert img.size == (model.width, model.height), (img.size, model.name)
    return img


def palette_colors(img: Image.Image) -> set[tuple[int, int, int]]:
    """The RGB colours actually present in a label picture (for checks and tests)."""
    return {rgb for _, rgb in img.convert("RGB").getcolors(maxcolors=img.width * img.height)}

