"""Printer profiles as data: profiles.yaml beside this file, validated into frozen models.

A profile says what a printer model can do (paper, columns, code pages or
GB18030, cutter, QR, CODE128, drawer). Code that prints asks the profile,
never the model name. ``escpos_profile`` turns one into the profile object
python-escpos's printer classes take, so ``Dummy(profile=...)`` and our
profile agree on widths and features.
"""

from __future__ import annotations

import codecs
import functools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from escpos.capabilities import Profile as EscposProfile
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_core.errors import ConfigError

PROFILES_FILE = Path(__file__).with_name("profiles.yaml")


class UnknownProfile(ConfigError, ValueError):
    """No profile of that name; the message lists the known ones.

    A ``ValueError`` too, so a pydantic validator that calls ``get_profile``
    reports it as a validation error of the field.
    """


class CodePage(BaseModel):
    """One character code table: a Python codec and the ``ESC t n`` that selects it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codec: str
    esc_t: int = Field(ge=0, le=255)

    @field_validator("codec")
    @classmethod
    def _single_byte_codec(cls, name: str) -> str:
        try:
            info = codecs.lookup(name)
        except LookupError as err:
            raise ValueError(f"{name!r} is not a codec Python knows") from err
        # A code page maps bytes 0x80-0xFF one to one; a multi-byte codec here is a mistake.
        if len("é€Ж".encode(info.name, errors="replace")) != 3:
            raise ValueError(f"{name!r} is not a single-byte code page")
        return info.name


class CharsPerLine(BaseModel):
    """Columns of Font A and Font B at normal size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    a: int = Field(ge=16, le=80)
    b: int = Field(ge=16, le=100)


class PrinterProfile(BaseModel):
    """What one printer model can do; see profiles.yaml for the meaning of each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    escpos_base: str | None = None
    paper_width_mm: float = Field(gt=0, le=120)
    dots_per_line: int = Field(ge=128, le=2048)
    chars_per_line: CharsPerLine
    encoding: Literal["gb18030"] | tuple[CodePage, ...]
    cutter: Literal["full", "partial", "none"]
    qr: Literal["native", "image", "none"]
    barcode_code128: bool
    drawer: bool

    @field_validator("encoding")
    @classmethod
    def _code_pages(cls, value: Any) -> Any:
        if isinstance(value, tuple):
            if not value:
                raise ValueError("list at least one code page, or say gb18030")
            numbers = [cp.esc_t for cp in value]
            if len(set(numbers)) != len(numbers):
                raise ValueError(f"two code pages share one ESC t number: {numbers}")
        return value

    @model_validator(mode="after")
    def _columns_fit(self) -> PrinterProfile:
        # Font A is 12 dots wide and Font B 9 (Epson "ESC M: Select character font").
        if self.chars_per_line.a * 12 > self.dots_per_line or self.chars_per_line.b * 9 > self.dots_per_line:
            raise ValueError(f"chars_per_line {self.chars_per_line} does not fit in {self.dots_per_line} dots")
        return self

    @property
    def gb18030(self) -> bool:
        """True for printers that print text in Chinese mode (FS &) as GB18030."""
        return self.encoding == "gb18030"

    @property
    def code_pages(self) -> tuple[CodePage, ...]:
        """The code pages in order of preference; empty for GB18030 printers."""
        return () if isinstance(self.encoding, str) else self.encoding

    def columns(self, font: Literal["a", "b"] = "a", double_width: bool = False) -> int:
        """Characters per line in ``font``; half as many at double width."""
        n = self.chars_per_line.a if font == "a" else self.chars_per_line.b
        return n // 2 if double_width else n


def escpos_profile(profile: PrinterProfile) -> EscposProfile:
    """The python-escpos profile object for ``profile``, for ``Dummy(profile=...)`` and friends."""
    cut = profile.cutter != "none"
    features = {
        "barcodeA": profile.barcode_code128,
        "barcodeB": profile.barcode_code128,
        "bitImageColumn": True,
        "bitImageRaster": True,
        "graphics": False,
        "highDensity": True,
        "paperFullCut": cut,
        "paperPartCut": profile.cutter == "partial",
        "pdf417Code": False,
        "pulseBel": False,
        "pulseStandard": profile.drawer,
        "qrCode": profile.qr == "native",
        "starCommands": False,
    }
    dpi = round(profile.dots_per_line / ((profile.paper_width_mm - 8) / 25.4))
    code_pages = {str(cp.esc_t): cp.codec.upper() for cp in profile.code_pages} or {"0": "CP437"}
    escpos = EscposProfile(columns=None, features=features)  # columns per font come from "fonts"
    # Profile reads everything but columns and features from profile_data
    # (capabilities.BaseProfile.__getattr__); an instance attribute shadows
    # the "default" entry it would otherwise fall back to.
    escpos.profile_data = {
        "name": profile.name,
        "vendor": "edge-agent",
        "notes": profile.description,
        "features": features,
        "fonts": {
            "0": {"name": "Font A", "columns": profile.chars_per_line.a},
            "1": {"name": "Font B", "columns": profile.chars_per_line.b},
        },
        "media": {"dpi": dpi, "width": {"mm": profile.paper_width_mm, "pixels": profile.dots_per_line}},
        "codePages": code_pages,
        "colors": {"0": "black"},
    }
    return escpos


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, PrinterProfile]:
    """Every profile in ``path`` by name; ConfigError naming the file and the bad key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError([f"{path}: cannot read printer profiles: {err}"]) from err
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict) or not raw["profiles"]:
        raise ConfigError([f"{path}: expected a 'profiles:' mapping of name to profile"])
    found: dict[str, PrinterProfile] = {}
    problems: list[str] = []
    for name, body in raw["profiles"].items():
        try:
            found[name] = PrinterProfile.model_validate({"name": name, **(body or {})})
        except (ValidationError, TypeError) as err:
            problems.append(f"{path}: profile {name!r}: {_describe(err)}")
    if problems:
        raise ConfigError(problems)
    return found


@functools.cache
def _shipped() -> dict[str, PrinterProfile]:
    return load_profiles(PROFILES_FILE)


def profile_names() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(_shipped())


def get_profile(name: str) -> PrinterProfile:
    """The shipped profile ``name``; UnknownProfile listing the known names otherwise."""
    try:
        return _shipped()[name]
    except KeyError:
        raise UnknownProfile(
            [f"unknown printer profile {name!r}; known profiles: {', '.join(profile_names())}"]
        ) from None


def _describe(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: {re.sub(r'^Value error, ', '', e['msg'])}"
            for e in err.errors()
        )
    return str(err)
