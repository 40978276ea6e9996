"""devices.yaml: typed models, environment overrides, and errors with lines.

``load(path)`` returns a validated ``AgentConfig`` or raises ``ConfigError``
whose ``problems`` are ``FILE:LINE: what is wrong and how to fix it``, one
per problem, all of them at once: an IT person fixes a file in one pass.
Nothing here touches hardware.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.base import DeviceConfig
from drivers.registry import drivers
from edge_agent.config_types import HostPort
from edge_agent.errors import ConfigError

ENV_OVERRIDES = ("EDGE_HUB_URL", "EDGE_API_LISTEN", "EDGE_STORE_ID")
STORE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Model):
    """The ``store:`` section."""

    id: str = Field(pattern=STORE_ID_PATTERN, description="[a-z0-9-], unique in the chain; used in every topic")
    name: str = Field(min_length=1, max_length=120)
    timezone: str = "UTC"
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217 code of store prices")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from err
        return value


class HubConfig(_Model):
    """The ``hub:`` section: where the MQTT broker of the chain's hub is."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"hub url must start with mqtt:// or mqtts://, got {value!r}")
        if not parts.hostname:
            raise ValueError(f"hub url has no host: {value!r}; write mqtt://HOST:PORT")
        try:
            parts.port
        except ValueError as err:
            raise ValueError(f"hub url has a bad port: {value!r}; ports are 1 to 65535") from err
        if parts.username or parts.password:
            raise ValueError("put no credentials in the hub url; use hub.username and hub.password_file")
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> "HubConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together for mutual TLS: set both or neither")
        if (self.cert_file or self.ca_file) and not self.url.startswith("mqtts://"):
            raise ValueError("ca_file/cert_file need an mqtts:// hub url")
        return self


class Role(str, Enum):
    """What a local API client may do (CONTRACT section 3)."""

    KIOSK = "kiosk"
    ASSOCIATE = "associate"
    MIRROR = "mirror"
    CONSOLE = "console"
    ADMIN = "admin"


class ClientConfig(_Model):
    """One local API client: a kiosk, a wristband, a PAD, the mirror, a console."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    role: Role
    token_sha256: str

    @field_validator("token_sha256")
    @classmethod
    def _is_hash(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError(
                "token_sha256 must be the 64 hex digits of the token's SHA-256, not the token itself; "
                "run `edge-agent hash-token` and paste its output"
            )
        return value


class ApiConfig(_Model):
    """The ``api:`` section: the local HTTP API."""

    listen: HostPort = HostPort(host="127.0.0.1", port=8080)
    clients: list[ClientConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_clients(self) -> "ApiConfig":
        names = [c.name for c in self.clients]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"client names must be unique; repeated: {', '.join(dupes)}")
        hashes = [c.token_sha256 for c in self.clients]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two clients share a token; give each client its own token")
        return self


class AgentConfig(_Model):
    """The whole devices.yaml, validated."""

    store: StoreConfig
    hub: HubConfig = HubConfig()
    api: ApiConfig = ApiConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)


# Loading -------------------------------------------------------------------

class _LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps each node's line and rejects duplicate keys."""


def _compose(text: str, filename: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """Parse YAML into plain data plus a map from path to 1-based line."""
    problems: list[str] = []
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def build(n: yaml.Node, path: tuple) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = key_node.value
                if key in out:
                    problems.append(
                        f"{filename}:{key_node.start_mark.line + 1}: key {key!r} appears twice in the same "
                        f"mapping (first at line {lines[path + (key,)]}); keep one"
                    )
                    continue
                lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = build(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, path + (i,)) for i, item in enumerate(n.value)]
        return loader.construct_object(n, deep=True)

    data = None if node is None else build(node, ())
    return data, lines, problems


def _line_of(lines: Mapping[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` present in the file."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


def _describe(err: dict[str, Any]) -> str:
    """One pydantic error as a sentence that says how to fix it."""
    loc = ".".join(str(p) for p in err["loc"])
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"unknown key {loc!r}; remove it or check its spelling"
    if kind == "missing":
        return f"{loc} is required; add it"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """EDGE_HUB_URL, EDGE_API_LISTEN and EDGE_STORE_ID replace their keys."""
    if "EDGE_HUB_URL" in environ:
        data.setdefault("hub", {})["url"] = environ["EDGE_HUB_URL"]
    if "EDGE_API_LISTEN" in environ:
        data.setdefault("api", {})["listen"] = environ["EDGE_API_LISTEN"]
    if "EDGE_STORE_ID" in environ:
        data.setdefault("store", {})["id"] = environ["EDGE_STORE_ID"]


def _validate_devices(
    raw: Any, filename: str, lines: Mapping[tuple, int]
) -> tuple[list[DeviceConfig], list[str]]:
    """Validate each device entry with its driver's own Config model."""
    problems: list[str] = []
    if raw is None:
        return [], problems
    if not isinstance(raw, list):
        return [], [f"{filename}:{_line_of(lines, ('devices',))}: devices must be a list of '- id: ...' entries"]
    registry = drivers()
    devices: list[DeviceConfig] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        where = ("devices", i)
        line = _line_of(lines, where)
        if not isinstance(entry, dict):
            problems.append(f"{filename}:{line}: each device must be a mapping with id and kind")
            continue
        kind = entry.get("kind")
        if kind is None:
            problems.append(f"{filename}:{line}: devices.{i}.kind is required; one of: {', '.join(sorted(registry))}")
            continue
        driver = registry.get(kind) if isinstance(kind, str) else None
        if driver is None:
            problems.append(
                f"{filename}:{_line_of(lines, where + ('kind',))}: unknown device kind {kind!r}; "
                f"known kinds: {', '.join(sorted(registry))}"
            )
            continue
        try:
            device = driver.Config.model_validate(entry)
        except ValidationError as err:
            for e in err.errors():
                loc = where + tuple(e["loc"])
                problems.append(f"{filename}:{_line_of(lines, loc)}: {_describe({**e, 'loc': loc})}")
            continue
        if device.id in seen:
            problems.append(
                f"{filename}:{_line_of(lines, where + ('id',))}: device id {device.id!r} is already used "
                f"at line {seen[device.id]}; device ids must be unique"
            )
            continue
        seen[device.id] = _line_of(lines, where + ("id",))
        devices.append(device)
    return devices, problems


def parse(text: str, filename: str = "devices.yaml", environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Validate YAML text; raise ConfigError listing every problem with its line."""
    environ = os.environ if environ is None else environ
    try:
        data, lines, problems = _compose(text, filename)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{filename}:{line}: not valid YAML: {err.problem or err}"]) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"{filename}:1: not valid YAML: {err}"]) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{filename}:1: the file must be a mapping with store, hub, api and devices"])
    _apply_env(data, environ)
    devices, device_problems = _validate_devices(data.get("devices"), filename, lines)
    problems += device_problems
    try:
        config = AgentConfig.model_validate({**data, "devices": []})
    except ValidationError as err:
        for e in err.errors():
            problems.append(f"{filename}:{_line_of(lines, tuple(e['loc']))}: {_describe(e)}")
        config = None
    if problems:
        problems.sort(key=lambda p: int(p[len(filename) + 1:].split(":", 1)[0]))
        raise ConfigError(problems)
    assert config is not None
    return config.model_copy(update={"devices": devices})


def load(path: Path | str, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate a devices.yaml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError([f"{path}:1: no such file; pass --config or set EDGE_CONFIG"]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}:1: cannot read the file: {err}"]) from err
    return parse(text, str(path), environ)
