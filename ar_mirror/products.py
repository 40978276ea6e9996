"""Try-on products as data: what the mirror draws for a SKU, joined with the catalog's stock.

The try-on data (kind, shade, finish, frame) lives in a YAML file,
``products.yaml`` beside this module by default, keyed by SKU; the hub's
catalog item could carry it later. Names, prices and stock come from the
agent's catalog, and a SKU shows on the mirror only while the store has it
(``stock_store > 0``) or can order it online (``stock_online > 0``). No
numpy, no OpenCV: the agent imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ar_mirror.control import BODY_KINDS, Finish, Joint, Kind, Layer

DEFAULT_FILE = Path(__file__).with_name("products.yaml")
BUILTIN_STYLES = frozenset({"round", "square", "cat-eye"})
# A garment picture's largest side: the mirror process splits it into float32 pieces once per look.
MAX_GARMENT_SIDE = 2048
_PNG = b"\x89PNG\r\n\x1a\n"


def _png_rgba(path: Path) -> tuple[int, int] | None:
    """Width and height of an RGBA PNG (read from its header alone), or None if it is not one."""
    try:
        with path.open("rb") as f:
            head = f.read(26)
    except OSError:
        return None
    # The signature, then the IHDR chunk: length, type, width, height, bit depth, colour type (6: RGBA).
    if len(head) < 26 or head[:8] != _PNG or head[12:16] != b"IHDR" or head[25] != 6:
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


class TryOn(BaseModel):
    """One SKU's entry in the try-on file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    shade: str = "#000000"
    opacity: float = Field(default=0.6, ge=0, le=1)
    finish: Finish = "matte"
    style: str = "round"
    anchors: tuple[tuple[float, float], tuple[float, float]] | None = None
    fit: dict[Joint, tuple[float, float]] | None = None
    # Garments: each size and its shoulder width in cm (seam to seam), smallest first.
    sizes: dict[str, float] | None = None

    def layer(self, sku: str) -> Layer:
        """The layer the mirror process draws for this product."""
        return Layer(sku=sku, **self.model_dump(exclude={"sizes"}))


class Offer(BaseModel):
    """A try-on product as the mirror screen shows it."""

    sku: str
    name: str
    kind: Kind
    shade: str
    finish: Finish
    price: Decimal
    currency: str
    promo: str | None
    stock_store: int
    stock_online: int
    sizes: list[str] | None = None  # garments: the sizes it comes in, smallest first


def suggest_size(sizes: Mapping[str, float], shoulder_cm: float) -> str | None:
    """The smallest size whose shoulder width is at least ``shoulder_cm`` (the largest if none is); an estimate."""
    if not sizes:
        return None
    ordered = sorted(sizes.items(), key=lambda item: item[1])
    for name, width in ordered:
        if width >= shoulder_cm:
            return name
    return ordered[-1][0]


def load(path: Path = DEFAULT_FILE) -> dict[str, TryOn]:
    """The try-on file, validated; ValueError naming the file, the SKU and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the try-on products: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: must map each SKU to its try-on data (kind, shade, ...)")
    out: dict[str, TryOn] = {}
    for sku, entry in raw.items():
        try:
            item = TryOn.model_validate(entry)
            Layer(sku=str(sku), **item.model_dump(exclude={"sizes"}))  # the shade's format is checked there
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{path}: {sku}: {problems}") from err
        out[str(sku)] = _resolve_style(item, path.parent, str(sku), path)
    return out


def _resolve_style(item: TryOn, base: Path, sku: str, path: Path) -> TryOn:
    """A glasses or garment image path made absolute (relative to the try-on file), and checked to be there."""
    if item.kind in BODY_KINDS:
        image = (base / item.style).resolve()
        if not image.is_file():
            raise ValueError(f"{path}: {sku}: a garment's style must be its RGBA PNG next to {path.name}; "
                             f"{item.style!r} is not there")
        if item.fit is None:
            raise ValueError(f"{path}: {sku}: a garment needs fit: where shoulders and hips fall on its picture")
        if not item.sizes:
            raise ValueError(f"{path}: {sku}: a garment needs sizes: each size's shoulder width in cm")
        size = _png_rgba(image)
        if size is None:
            raise ValueError(f"{path}: {sku}: {item.style} is not an RGBA PNG (8-bit colour and alpha): "
                             "save the garment with its transparent background")
        if max(size) > MAX_GARMENT_SIDE or min(size) < 16:
            raise ValueError(f"{path}: {sku}: {item.style} is {size[0]}x{size[1]}; a garment picture's sides must be "
                             f"16 to {MAX_GARMENT_SIDE} pixels")
        return item.model_copy(update={"style": str(image)})
    if item.kind != "glasses" or item.style in BUILTIN_STYLES:
        return item
    image = (base / item.style).resolve()
    if not image.is_file():
        raise ValueError(f"{path}: {sku}: style {item.style!r} is neither a built-in frame "
                         f"({', '.join(sorted(BUILTIN_STYLES))}) nor an image file next to {path.name}")
    if item.anchors is None:
        raise ValueError(f"{path}: {sku}: an image frame needs anchors: the centres of its two lenses in pixels")
    return item.model_copy(update={"style": str(image)})


def offers(tryons: Mapping[str, TryOn], products: Mapping[str, Any]) -> list[Offer]:
    """The try-on products the store has or can order, in the try-on file's order.

    ``products`` maps SKU to ``edge_agent.catalog.Product`` (duck-typed: this
    module does not import the agent). A SKU missing from the catalog is left out.
    """
    out: list[Offer] = []
    for sku, tryon in tryons.items():
        product = products.get(sku)
        if product is None or (product.stock_store <= 0 and product.stock_online <= 0):
            continue
        promo = product.promo.label if product.promo is not None and product.unit_price() < product.price else None
        out.append(Offer(
            sku=sku, name=product.name, kind=tryon.kind, shade=tryon.shade, finish=tryon.finish,
            price=product.unit_price(), currency=product.currency, promo=promo,
            stock_store=max(product.stock_store, 0), stock_online=product.stock_online,
            sizes=list(tryon.sizes) if tryon.sizes else None,
        ))
    return out
