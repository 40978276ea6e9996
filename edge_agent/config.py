"""devices.yaml: typed models, environment overrides, and errors with lines.

``load(path)`` returns a validated ``AgentConfig`` or raises ``ConfigError``
whose ``problems`` are ``FILE:LINE: what is wrong; how to fix it``, one per
problem, all of them at once: an IT person fixes a file in one pass.
Nothing here touches hardware.

Environment overrides: EDGE_HUB_URL, EDGE_API_LISTEN and EDGE_STORE_ID
replace ``hub.url``, ``api.listen`` and ``store.id``; an empty variable counts
as unset. A bad value from a variable is reported at the line of the key it
replaces, or, when the file lacks that key, at the line of its section (or
of the document's first key), and the message names the variable.
"""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.base import DEVICE_ID_PATTERN, DeviceConfig
from drivers.registry import drivers
from edge_agent.config_types import HostPort
from edge_agent.errors import ConfigError

ENV_OVERRIDES = ("EDGE_HUB_URL", "EDGE_API_LISTEN", "EDGE_STORE_ID")
_ENV_KEYS: dict[str, tuple[str, str]] = {
    "EDGE_HUB_URL": ("hub", "url"),
    "EDGE_API_LISTEN": ("api", "listen"),
    "EDGE_STORE_ID": ("store", "id"),
}
STORE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
CLIENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class _At(ValueError):
    """A model-level ValueError about one key below the model (``loc``), so it gets that key's line."""

    def __init__(self, message: str, *loc: str | int):
        super().__init__(message)
        self.loc = loc


def _redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Model):
    """The ``store:`` section."""

    id: str = Field(pattern=STORE_ID_PATTERN, description="[a-z0-9-], unique in the chain; used in every topic")
    name: str = Field(min_length=1, max_length=120)
    timezone: str = "UTC"
    currency: str = Field(default="CNY", pattern=CURRENCY_PATTERN, description="ISO 4217 code of store prices")

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
    # Disk the outbox may use while the hub is away. Past it, telemetry
    # (alerts, try-on sessions) is dropped oldest first; sales, returns and
    # stock changes never are.
    outbox_budget_mb: float = Field(default=1024, gt=0, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username or parts.password:
            raise ValueError(
                "the url holds a user name or password; remove them and use hub.username and hub.password_file"
            )
        shown = _redact_url(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"{shown!r} must start with mqtt:// (or mqtts:// for TLS); write mqtt://HOST:1883")
        if not parts.hostname:
            raise ValueError(f"{shown!r} has no host; write mqtt://HOST:PORT")
        try:
            port = parts.port
        except ValueError as err:
            raise ValueError(f"{shown!r} has a bad port; use a number from 1 to 65535, e.g. mqtt://HOST:1883") from err
        if port == 0:
            raise ValueError(f"{shown!r} has a bad port; use a number from 1 to 65535, e.g. mqtt://HOST:1883")
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> "HubConfig":
        if (self.cert_file is None) != (self.key_file is None):
            have, need = ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            raise _At(f"{have} is set but {need} is not; mutual TLS needs both: add hub.{need} or remove {have}", have)
        if (self.cert_file or self.ca_file) and not self.url.startswith("mqtts://"):
            raise _At("ca_file/cert_file are set but the url is not mqtts://; use mqtts:// or remove them", "url")
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

    name: str = Field(pattern=CLIENT_NAME_PATTERN)
    role: Role
    token_sha256: str

    @field_validator("token_sha256")
    @classmethod
    def _is_hash(cls, value: str) -> str:
        # The value is never echoed back: it may be a clear-text token.
        if not _HEX64.match(value):
            raise ValueError(
                "this is not the 64 hex digits of a SHA-256, and the token itself must never sit in the file; "
                "run `edge-agent hash-token` and paste its output"
            )
        return value.lower()  # hashlib's hexdigest() is lower case; accept sha256sum output in either case


class ApiConfig(_Model):
    """The ``api:`` section: the local HTTP API."""

    listen: HostPort = HostPort(host="127.0.0.1", port=8080)
    clients: list[ClientConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_clients(self) -> "ApiConfig":
        names: dict[str, int] = {}
        hashes: dict[str, int] = {}
        for i, client in enumerate(self.clients):
            if client.name in names:
                raise _At(f"client name {client.name!r} is already used by clients.{names[client.name]}; "
                          "give each client its own name", "clients", i, "name")
            if client.token_sha256 in hashes:
                raise _At(f"{client.name!r} has the same token as clients.{hashes[client.token_sha256]}; "
                          "give each client its own token", "clients", i, "token_sha256")
            names[client.name] = hashes[client.token_sha256] = i
        return self


class AgentConfig(_Model):
    """The whole devices.yaml, validated."""

    store: StoreConfig
    hub: HubConfig = HubConfig()
    api: ApiConfig = ApiConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _username_is_store(self) -> "AgentConfig":
        # The hub's ACL (systemd/mosquitto/acl.example) lets a login publish
        # only under edge/{username}/: any other name connects fine and then
        # has every batch refused.
        if self.hub.username is not None and self.hub.username != self.store.id:
            raise ValueError(
                f"hub.username {self.hub.username!r} differs from store.id {self.store.id!r}; the hub lets a store "
                "publish only under edge/{username}/, so use the store id as the username"
            )
        return self


# Reading YAML with lines ----------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")

# Common YAML mistakes: (words all found in PyYAML's problem and context, what to
# say, report the line where the construct opened rather than where it broke).
_YAML_HINTS: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (("'\\t'",), "a tab character; YAML indents with spaces only: replace the tab with spaces", False),
    (("cannot start any token",),
     "a value starts with a character YAML reserves (@, `, %); put the value in quotes", False),
    (("could not find expected ':'",),
     "a line that is neither 'key: value' nor '- item'; add the ':' or fix the indentation", True),
    (("end of stream", "quoted scalar"), "a quoted value is never closed; add the closing quote on this line", True),
    (("unknown escape character",), "a backslash in a \"double-quoted\" value; use 'single quotes' for paths", False),
    (("flow sequence",), "a '[...]' list is not closed or lacks a ','; fix it or write the list as '- ' lines", True),
    (("flow mapping",), "a '{...}' mapping is not closed or lacks a ','; fix it or write 'key: value' lines", True),
    (("another document",), "a second document ('---'); keep one document per file", False),
    (("undefined alias",),
     "an alias (*name) has no anchor (&name) above it; define the anchor or remove the alias", False),
    (("mapping values are not allowed",),
     "a ':' where none can go; quote a value that contains ': ', or fix the indentation", False),
    (("expected <block end>",),
     "this line's indentation does not line up with the lines above; indent keys of one mapping equally", False),
)


def _yaml_problem(err: yaml.MarkedYAMLError, filename: str) -> str:
    """One YAML syntax error as ``FILE:LINE: what; how to fix``."""
    said = f"{err.problem or ''} {err.context or ''}"
    for needles, hint, at_context in _YAML_HINTS:
        if all(n in said for n in needles):
            mark = (err.context_mark if at_context else None) or err.problem_mark or err.context_mark
            return f"{filename}:{mark.line + 1 if mark else 1}: not valid YAML: {hint}"
    mark = err.problem_mark or err.context_mark
    what = "; ".join(p for p in (err.context, err.problem) if p) or str(err)
    return f"{filename}:{mark.line + 1 if mark else 1}: not valid YAML: {what}; check the quoting and indentation here"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose nodes we walk ourselves to keep lines and catch duplicate keys."""


def _compose(text: str, filename: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """Parse YAML into plain data, a map from path to 1-based line, and key problems."""
    problems: list[str] = []
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    walking: set[int] = set()
    # Per mapping node, the keys written in it rather than brought in by ``<<: *anchor``;
    # kept because flatten_mapping rewrites a node that an alias may show again.
    own_keys: dict[int, set[int]] = {}

    def dotted(path: tuple) -> str:
        return ".".join(str(p) for p in path)

    def build(n: yaml.Node, path: tuple) -> Any:
        lines[path] = n.start_mark.line + 1
        if id(n) in walking:
            problems.append(f"{filename}:{lines[path]}: {dotted(path)} refers to itself through an alias; "
                            "remove the alias")
            return None
        if isinstance(n, yaml.CollectionNode) and n.tag not in _PLAIN_TAGS:
            problems.append(f"{filename}:{lines[path]}: the YAML tag {n.tag!r} is not allowed; remove it")
        if isinstance(n, yaml.MappingNode):
            walking.add(id(n))
            if id(n) not in own_keys:
                own_keys[id(n)] = {id(k) for k, _ in n.value if k.tag != _MERGE_TAG}
                if len(own_keys[id(n)]) != len(n.value):
                    loader.flatten_mapping(n)  # merged pairs first, so a key written here wins
            own = own_keys[id(n)]
            out: dict[Any, Any] = {}
            owner: dict[Any, yaml.Node] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append(f"{filename}:{key_node.start_mark.line + 1}: a key must be a plain name, "
                                    "not a list or a mapping; write 'name: value'")
                    continue
                key = key_node.value
                if key in out and id(key_node) in own and id(owner[key]) in own:
                    problems.append(
                        f"{filename}:{key_node.start_mark.line + 1}: {dotted(path + (key,))} appears twice "
                        f"(first at line {owner[key].start_mark.line + 1}); keep one and delete the other"
                    )
                    continue
                owner[key] = key_node
                out[key] = build(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            walking.discard(id(n))
            return out
        if isinstance(n, yaml.SequenceNode):
            walking.add(id(n))
            items = [build(item, path + (i,)) for i, item in enumerate(n.value)]
            walking.discard(id(n))
            return items
        return loader.construct_object(n, deep=True)

    data = None if node is None else build(node, ())
    return data, lines, problems


def _line_of(lines: Mapping[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` present in the file."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


# Pydantic errors as sentences -----------------------------------------------

# What a value of each type must be, and how to write one.
_MAPPING = ("a mapping", "indent its 'key: value' lines under it")
_TYPES: dict[str, tuple[str, str]] = {
    "string_type": ("text", "put the value in quotes"),
    "int_type": ("a whole number", "write it without quotes, e.g. 30"),
    "int_parsing": ("a whole number", "write it without quotes, e.g. 30"),
    "int_from_float": ("a whole number", "drop the decimals"),
    "float_type": ("a number", "write it without quotes or units, e.g. 5 or 0.5"),
    "float_parsing": ("a number", "write it without quotes or units, e.g. 5 or 0.5"),
    "bool_type": ("true or false", "write true or false"),
    "bool_parsing": ("true or false", "write true or false"),
    "dict_type": _MAPPING,
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "list_type": ("a list", "start each entry on its own line with '- '"),
    "path_type": ("a file path", "write it as text, e.g. /etc/edge-agent/ca.pem"),
}

# Patterns in plain words: what a value must be, and the fine print.
_PATTERNS: dict[str, tuple[str, str]] = {
    STORE_ID_PATTERN: ("lowercase letters, digits and '-', e.g. store-001",
                       "at most 64 characters, not starting or ending with '-'"),
    DEVICE_ID_PATTERN: ("lowercase letters, digits, '-' and '_', e.g. scanner-1",
                        "at most 64 characters, starting with a letter or digit"),
    CLIENT_NAME_PATTERN: ("letters, digits, '.', '_' and '-', e.g. kiosk-1",
                          "at most 64 characters, starting with a letter or digit"),
    CURRENCY_PATTERN: ("a three-letter ISO 4217 code in capitals", "e.g. CNY, USD or EUR"),
}

_BOUNDS = {"greater_than": ("gt", "small", "greater than"), "greater_than_equal": ("ge", "small", "at least"),
           "less_than": ("lt", "large", "less than"), "less_than_equal": ("le", "large", "at most")}


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` below ``model``, if known."""

    def model_in(tp: Any) -> type[BaseModel] | None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        return next((m for m in map(model_in, get_args(tp)) if m), None)

    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = model_in(field.annotation) if field else None
    return model


def _got(value: Any, loc: tuple) -> str:
    """`` (got X)`` for a scalar input, nothing for secrets and containers."""
    if isinstance(value, (dict, list)) or any("token" in str(p) or "password" in str(p) for p in loc):
        return ""
    if value is None:
        return " (it is empty)"
    if isinstance(value, str) and "://" in value:
        value = _redact_url(value)
    return f" (got {value!r})"


def _describe(err: Mapping[str, Any], loc: tuple, model: type[BaseModel] | None, rel: tuple) -> str:
    """One pydantic error at ``loc`` as ``what is wrong; how to fix it``.

    ``model`` and ``rel`` (``loc`` relative to ``model``) let an unknown key
    be answered with the keys that are allowed there.
    """
    name = ".".join(str(p) for p in loc)
    kind, ctx, got = err["type"], err.get("ctx") or {}, _got(err.get("input"), loc)
    if kind == "extra_forbidden":
        key, parent = str(loc[-1]), ".".join(str(p) for p in loc[:-1])
        where = f"in {parent}" if parent else "at the top level"
        here = _model_at(model, rel[:-1])
        allowed = list(here.model_fields) if here else []
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"unknown key {key!r} {where}; did you mean {close[0]!r}?"
        keys = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {key!r} {where}; remove it or check its spelling{keys}"
    if kind == "missing":
        return f"{name} is required; add it"
    if kind in _TYPES:
        what, fix = _TYPES[kind]
        if err.get("input") is None:
            fix = "write a value after the ':'"
        return f"{name} must be {what}{got}; {fix}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        what, fine_print = _PATTERNS[ctx["pattern"]]
        return f"{name} must be {what}{got}; {fine_print}"
    if kind in _BOUNDS:
        key, size, words = _BOUNDS[kind]
        bound = ctx[key]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{name} is too {size}{got}; use a number {words} {bound}"
    if kind in ("enum", "literal_error"):
        return f"{name} is not a valid choice{got}; use one of {ctx.get('expected', '?')}"
    if kind == "string_too_short":
        return f"{name} must not be empty; write a value after the ':'"
    if kind == "string_too_long":
        return f"{name} is too long; keep it to {ctx.get('max_length')} characters"
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx["error"]) if "error" in ctx else err["msg"].split(", ", 1)[-1]
        return f"{name}: {msg}" if name else msg
    return f"{name}: {err['msg']}{got}" if name else f"{err['msg']}{got}"


# Loading --------------------------------------------------------------------

def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple, str]:
    """EDGE_HUB_URL, EDGE_API_LISTEN and EDGE_STORE_ID replace their keys; returns which key came from which."""
    used: dict[tuple, str] = {}
    for var, (section, key) in _ENV_KEYS.items():
        value = environ.get(var)
        if not value:
            continue
        if data.get(section) is None:
            data[section] = {}
        if isinstance(data[section], dict):  # a section that is not a mapping is reported on its own
            data[section][key] = value
            used[(section, key)] = var
    return used


def _from_env(loc: tuple, env_keys: Mapping[tuple, str]) -> str:
    """``; ... from VAR`` when ``loc`` is a value set by an environment variable."""
    var = env_keys.get(tuple(loc[:2]))
    return f"; this value comes from the environment variable {var}: fix or unset it" if var else ""


def _validate_devices(
    raw: Any, filename: str, lines: Mapping[tuple, int]
) -> tuple[list[DeviceConfig], list[str]]:
    """Validate each device entry with its driver's own Config model."""
    problems: list[str] = []
    if raw is None:
        return [], problems
    if not isinstance(raw, list):
        return [], [f"{filename}:{_line_of(lines, ('devices',))}: devices must be a list; "
                    "start each device with '- ', e.g. '- id: scanner-1'"]
    registry = drivers()
    kinds = ", ".join(sorted(registry))
    devices: list[DeviceConfig] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        where = ("devices", i)
        line = _line_of(lines, where)
        if not isinstance(entry, dict):
            problems.append(f"{filename}:{line}: devices.{i} must be a mapping with id and kind{_got(entry, where)}; "
                            "write '- id: ...' and 'kind: ...' under it")
            continue
        kind = entry.get("kind")
        if kind is None:
            problems.append(f"{filename}:{line}: devices.{i}.kind is required; add 'kind:' with one of: {kinds}")
            continue
        driver = registry.get(kind) if isinstance(kind, str) else None
        if driver is None:
            close = difflib.get_close_matches(str(kind), list(registry), n=1)
            hint = f"did you mean {close[0]!r}? Known kinds: {kinds}" if close else f"use one of: {kinds}"
            problems.append(f"{filename}:{_line_of(lines, where + ('kind',))}: unknown device kind {kind!r}; {hint}")
            continue
        try:
            device = driver.Config.model_validate(entry)
        except ValidationError as err:
            for e in err.errors():
                rel = tuple(e["loc"]) + getattr((e.get("ctx") or {}).get("error"), "loc", ())
                message = _describe(e, where + rel, driver.Config, rel)
                problems.append(f"{filename}:{_line_of(lines, where + rel)}: {message}")
            continue
        if device.id in seen:
            problems.append(
                f"{filename}:{_line_of(lines, where + ('id',))}: device id {device.id!r} is already used "
                f"at line {seen[device.id]}; give each device its own id"
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
        raise ConfigError([_yaml_problem(err, filename)]) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"{filename}:1: not valid YAML: {err}; check the file's encoding and syntax"]) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"just {data!r}"
        raise ConfigError([f"{filename}:{lines.get((), 1)}: the file is {what}, not a mapping; "
                           "write store:, hub:, api: and devices: at the left margin"])
    for section in ("store", "hub", "api"):  # a section with every key commented out means the defaults
        if section in data and data[section] is None:
            data[section] = {}
    if isinstance(data.get("api"), dict) and "clients" in data["api"] and data["api"]["clients"] is None:
        data["api"]["clients"] = []
    env_keys = _apply_env(data, environ)
    devices, device_problems = _validate_devices(data.get("devices"), filename, lines)
    problems += device_problems
    try:
        config = AgentConfig.model_validate({**data, "devices": []})
    except ValidationError as err:
        for e in err.errors():
            loc = tuple(e["loc"]) + getattr((e.get("ctx") or {}).get("error"), "loc", ())
            message = _describe(e, loc, AgentConfig, loc) + _from_env(loc, env_keys)
            problems.append(f"{filename}:{_line_of(lines, loc)}: {message}")
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
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(
            [f"{path}:1: no such file ({path.absolute()}); pass --config FILE or set EDGE_CONFIG"]
        ) from err
    except IsADirectoryError as err:
        raise ConfigError([f"{path}:1: this is a directory; pass the devices.yaml file inside it"]) from err
    except OSError as err:
        raise ConfigError(
            [f"{path}:1: cannot read the file ({err.strerror or err}); check its path and permissions"]
        ) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {err.start}); save the file as UTF-8"]) from err
    return parse(text, str(path), environ)
