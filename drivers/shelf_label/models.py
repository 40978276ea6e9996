"""Label models as data: panel size, colours, rotation, OEPL hwType and layout template.

The table lives in models.yaml next to this file; a new label size is a new
entry there, not a branch in the renderer. ``get_model`` raises
``UnknownLabelModel`` (a ValueError, so a pydantic validator can use it as is)
naming every known model.

Coordinates in a template are on the label *as seen* on the shelf: for a
model with ``rotation`` 90 or 270 that canvas is ``height`` x ``width``, and
``render`` turns the result back to the panel's native ``width`` x ``height``,
which is what the access point's /imgupload expects (see oepl.py).
"""

from __future__ import annotations

from datetime import date
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MODELS_FILE = Path(__file__).with_name("models.yaml")

Rgb = tuple[int, int, int]
# Palette order is OpenEPaperLink's colortable order (resources/tagtypes/*.json:
# "white", "black", "red"), so palette index n is the AP's colour n.
WHITE: Rgb = (255, 255, 255)
BLACK: Rgb = (0, 0, 0)
RED: Rgb = (255, 0, 0)
PALETTES: dict[str, tuple[Rgb, ...]] = {"bw": (WHITE, BLACK), "bwr": (WHITE, BLACK, RED)}

BlockKind = Literal[
    "name", "price", "old_price", "promo_until", "rating", "stock_store", "stock_online", "sku", "qr", "rule",
]
# Sample values every ``format`` string must accept; checked when the file loads.
_FORMAT_FIELDS: dict[str, dict[str, object]] = {
    "promo_until": {"ends": date(2000, 1, 31)},
    "rating": {"reviews": 1234, "rating": 4.5},
    "stock_store": {"n": 12},
    "stock_online": {"n": 12},
    "sku": {"sku": "SKU-1"},
}


class UnknownLabelModel(ValueError):
    """No label model of that name; the message lists the known ones."""


class Block(BaseModel):
    """One element of a layout: what it shows, where, and how big."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: BlockKind
    box: tuple[int, int, int, int] = Field(description="x, y, width, height on the label as seen")
    size: int = Field(default=12, ge=6, le=300, description="font size in pixels (the largest tried)")
    min_size: int | None = Field(default=None, ge=6, le=300, description="smallest font size before giving up")
    lines: int = Field(default=1, ge=1, le=8, description="most lines a wrapped text may take")
    align: Literal["left", "center", "right"] = "left"
    valign: Literal["top", "middle"] = "top"
    color: Literal["black", "red", "accent"] = "black"
    format: str | None = Field(default=None, max_length=80, description="str.format text around the value")
    # QR only: quiet zone in modules, and the smallest module in pixels a phone
    # still reads off e-paper (1 px is ~0.2 mm on these panels: too small).
    border: int = Field(default=2, ge=0, le=4)
    min_module: int = Field(default=2, ge=1, le=10)

    @model_validator(mode="after")
    def _check(self) -> "Block":
        if self.box[2] <= 0 or self.box[3] <= 0 or min(self.box[:2]) < 0:
            raise ValueError(f"box {list(self.box)} needs x, y >= 0 and a positive width and height")
        if self.min_size is not None and self.min_size > self.size:
            raise ValueError(f"min_size {self.min_size} is larger than size {self.size}")
        if self.format is not None:
            fields = _FORMAT_FIELDS.get(self.kind)
            if fields is None:
                raise ValueError(f"a {self.kind} block takes no format")
            try:
                self.format.format(**fields)
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"format {self.format!r} does not fit a {self.kind} block "
                                 f"(fields: {', '.join(fields)}): {err}") from err
        return self

    @property
    def smallest(self) -> int:
        """The smallest font size this block may use."""
        return self.min_size if self.min_size is not None else self.size


class Template(BaseModel):
    """A layout: its canvas size, its blocks, and the block used for notices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    canvas: tuple[int, int] = Field(description="width, height of the label as seen")
    blocks: tuple[Block, ...]
    notice: Block = Field(description="where render_notice puts its text (kind: name)")

    @model_validator(mode="after")
    def _fits(self) -> "Template":
        w, h = self.canvas
        for i, b in enumerate((*self.blocks, self.notice)):
            x, y, bw, bh = b.box
            if x + bw > w or y + bh > h:
                where = "notice" if i == len(self.blocks) else f"block {i} ({b.kind})"
                raise ValueError(f"{where}: box {list(b.box)} reaches past the {w}x{h} canvas")
        return self


class LabelModel(BaseModel):
    """One label model: a panel, how it is mounted, and the layout drawn on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    hw_type: int | None = Field(default=None, ge=0, le=255,
                                description="OpenEPaperLink hwType (resources/tagtypes/<XX>.json); none = file only")
    width: int = Field(gt=0, le=2000, description="panel pixels, native orientation (tagtype 'width')")
    height: int = Field(gt=0, le=2000, description="panel pixels, native orientation (tagtype 'height')")
    colors: Literal["bw", "bwr"]
    rotation: Literal[0, 90, 180, 270] = Field(default=0, description="clockwise turn from layout to panel")
    template_name: str
    template: Template

    @model_validator(mode="after")
    def _canvas(self) -> "LabelModel":
        if self.template.canvas != self.canvas:
            raise ValueError(f"template {self.template_name!r} is laid out for {self.template.canvas}, "
                             f"but this model at rotation {self.rotation} shows {self.canvas}")
        return self

    @property
    def canvas(self) -> tuple[int, int]:
        """Width and height of the label as seen (the panel turned by ``rotation``)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def palette(self) -> tuple[Rgb, ...]:
        """The colours the panel can show, in the access point's index order."""
        return PALETTES[self.colors]

    @property
    def has_red(self) -> bool:
        """True when the panel has a red ink."""
        return self.colors == "bwr"


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    templates: dict[str, Template]
    models: dict[str, dict]


@lru_cache(maxsize=4)
def load_models(path: Path = MODELS_FILE) -> Mapping[str, LabelModel]:
    """Every label model in ``path`` by name (read once, read-only); ValueError naming a wrong entry."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        data = _File.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"{path}: {err}") from err
    models: dict[str, LabelModel] = {}
    for name, entry in data.models.items():
        template_name = entry.get("template")
        if template_name not in data.templates:
            raise ValueError(f"{path}: model {name!r}: template {template_name!r} is not one of "
                             f"{', '.join(sorted(data.templates))}")
        fields = {k: v for k, v in entry.items() if k != "template"}
        try:
            models[name] = LabelModel(name=name, template_name=template_name,
                                      template=data.templates[template_name], **fields)
        except ValidationError as err:
            raise ValueError(f"{path}: model {name!r}: {err}") from err
    return MappingProxyType(models)


def get_model(name: str) -> LabelModel:
    """The label model called ``name``; UnknownLabelModel listing the known ones if none is."""
    models = load_models()
    try:
        return models[name]
    except KeyError:
        raise UnknownLabelModel(f"unknown label model {name!r}; known models: {', '.join(sorted(models))}") from None


def model_for_hw_type(hw_type: int) -> LabelModel | None:
    """The unrotated model of an OEPL hwType (as the tag list reports it), or None."""
    for model in load_models().values():
        if model.hw_type == hw_type and model.rotation == 0:
            return model
    return None

