"""devices.yaml keys of the shelf-label back ends, validated before any I/O.

    - id: labels-1
      kind: shelf_label.oepl           # an OpenEPaperLink access point
      url: http://192.168.1.60
      model: m2-2.9-bwr                # the default label model
      labels:                          # bulk bindings, applied at every start
        - {mac: 0000021D4E83B4A1, sku: LIP-RED-01}
        - {mac: 00:00:02:1D:4E:83:B4:A2, sku: TOTE-CANVAS, model: m2-4.2-bwr, zone: bags}

    - id: labels-paper
      kind: shelf_label.files          # PNG files in a folder (print them, show them on a screen)
      dir: /var/lib/edge-agent/labels
      labels:
        - {key: LIP-RED-01, sku: LIP-RED-01}

A label's id is its tag MAC, 16 upper-case hex digits as the access point
prints it (a 12-digit MAC is padded with zeros, as the AP does), or for the
file back end a ``key`` (the file name without ``.png``). A label may name
the ``zone`` of its shelf (an aisle or an area, "cosmetics"): its alerts carry
it, so that they reach the associates of that zone.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.base import DeviceConfig
from drivers.shelf_label.models import get_model
from drivers.shelf_label.oepl import normalize_mac
from edge_core.config_types import KeyedError

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # edge_agent.catalog.CatalogItem.sku
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # files.FileLabels keys
DEFAULT_MODEL = "m2-2.9-bwr"  # the common 2.9" shelf-edge label
MAX_LABELS = 100_000
# A subset of what a paired device's zones may be (edge_agent/pairing.py), so that any label's zone can be
# an associate's.
ZONE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,31}$")
ZONE_RULE = "1-32 of A-Z a-z 0-9 space _ -, starting with a letter or digit"


def check_model(name: str | None) -> str | None:
    """``name`` if it is a known label model; ValueError listing the known ones if not."""
    if name is not None:
        get_model(name)  # UnknownLabelModel is a ValueError naming every model
    return name


def check_zone(zone: str | None) -> str | None:
    """``zone`` if it can name a label's zone (None: no zone); ValueError saying what a zone is if not."""
    if zone is not None and (not isinstance(zone, str) or not ZONE_PATTERN.fullmatch(zone)):
        raise ValueError(f"{zone!r} is not a zone: {ZONE_RULE}, e.g. cosmetics or aisle-3")
    return zone


def check_key(key: str) -> str:
    """A file back end key: what FileLabels accepts as a file name."""
    if not KEY_PATTERN.fullmatch(key) or ".." in key:  # fullmatch: "$" alone lets a final newline through
        raise ValueError(f"{key!r} is not a label key: 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    return key


class _Binding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(pattern=SKU_PATTERN, description="the product the label shows")
    model: str | None = Field(default=None, description="label model; default: the device's model")
    zone: str | None = Field(default=None, description=f"the shelf's zone ({ZONE_RULE}); its alerts carry it")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        return check_model(value)

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_zone(value)


class OeplBinding(_Binding):
    """One ``labels:`` entry of ``shelf_label.oepl``."""

    mac: str = Field(description="the tag's MAC: 12 or 16 hex digits, ':' or '-' allowed")

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normalize_mac(value)

    @property
    def label(self) -> str:
        """The label's id."""
        return self.mac


class FileBinding(_Binding):
    """One ``labels:`` entry of ``shelf_label.files``: a ``key`` (the file name) or a ``mac``."""

    key: str | None = Field(default=None, description="file name without .png")
    mac: str | None = Field(default=None, description="a tag MAC, used as the key")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else check_key(value)

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return None if value is None else normalize_mac(value)

    @model_validator(mode="after")
    def _one_id(self) -> "FileBinding":
        if (self.key is None) == (self.mac is None):
            raise ValueError("give a label either key (the file name) or mac, not both and not neither")
        return self

    @property
    def label(self) -> str:
        """The label's id."""
        return self.key or self.mac or ""


class LabelDeviceConfig(DeviceConfig):
    """Keys every shelf-label back end has."""

    model: str = Field(default=DEFAULT_MODEL, description="label model of labels that name none")
    url_template: str | None = Field(
        default=None, max_length=200,
        description="the product page shown as a QR code, with {sku}, e.g. https://shop.example.com/p/{sku}")
    concurrency: int = Field(default=4, ge=1, le=32, description="labels pushed at once")
    retries: int = Field(default=3, ge=0, le=10, description="retries of a failed push, with backoff")
    poll_interval: float = Field(default=30.0, gt=0, le=3600, description="seconds between label state polls")
    compliance_grace: float = Field(
        default=300.0, ge=0, le=86400,
        description="seconds a label may show another price than the checkout's before an alert")
    sweep_interval: float = Field(default=300.0, gt=0, le=86400,
                                  description="seconds between full re-checks of every label against the catalog")
    stock_delay: float = Field(
        default=2.0, ge=0, le=300,
        description="seconds a store count change (a sale, a return, an adjustment) waits for more before its "
                    "labels are drawn again: a burst of sales is one push, not one per sale")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return check_model(value) or DEFAULT_MODEL

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = value.format(sku="SKU-1")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"{value!r} must contain {{sku}} and no other {{field}}: {err}") from err
        if "{sku}" not in value or not url.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} must be an http(s) URL with {{sku}}, e.g. https://shop.example.com/p/{{sku}}")
        return value

    def bindings(self) -> list[OeplBinding | FileBinding]:
        """The ``labels:`` entries."""
        return list(getattr(self, "labels", []))

    def claims(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """Each bound label, which no other device may bind too, with where it is written."""
        return [(f"label {b.label}", ("labels", i, "key" if getattr(b, "key", None) else "mac"))
                for i, b in enumerate(self.bindings())]

    @model_validator(mode="after")
    def _unique(self) -> "LabelDeviceConfig":
        seen: dict[str, int] = {}
        for i, binding in enumerate(self.bindings()):
            if binding.label in seen:
                field = "key" if getattr(binding, "key", None) else "mac"
                raise KeyedError(f"label {binding.label} is listed twice (labels.{seen[binding.label]} and "
                                 f"labels.{i}); bind each label once", "labels", i, field)
            seen[binding.label] = i
        return self


class OeplConfig(LabelDeviceConfig):
    """devices.yaml keys of ``shelf_label.oepl``: an OpenEPaperLink access point."""

    kind: Literal["shelf_label.oepl"]
    url: str = Field(description="the access point, http://HOST[:PORT]")
    timeout: float = Field(default=5.0, gt=0, le=120, description="seconds to wait for an answer")
    upload_timeout: float = Field(default=20.0, gt=0, le=300, description="seconds to wait for an upload's answer")
    stale_after: float = Field(default=1800.0, gt=0, le=30 * 86400,
                               description="seconds a tag may go unseen before it counts as stale")
    low_battery_mv: int = Field(default=2600, ge=1500, le=3600, description="a tag below this many mV is low")
    labels: list[OeplBinding] = Field(default_factory=list, max_length=MAX_LABELS)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} must be the access point's address as http://HOST or http://HOST:PORT")
        try:
            parts.port
        except ValueError as err:
            raise ValueError(f"{value!r} has a bad port; use a number from 1 to 65535") from err
        if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError(f"{value!r}: give only http://HOST[:PORT], without a path, query or login")
        return value.rstrip("/")


class FilesConfig(LabelDeviceConfig):
    """devices.yaml keys of ``shelf_label.files``: one PNG per label in a folder."""

    kind: Literal["shelf_label.files"]
    dir: str = Field(min_length=1, description="the folder; a relative path is relative to the working directory")
    labels: list[FileBinding] = Field(default_factory=list, max_length=MAX_LABELS)
