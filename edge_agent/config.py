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
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from drivers.base import DeviceConfig
from drivers.registry import drivers
from edge_agent.config_yaml import (
    CURRENCY_PATTERN,
    HEX64,
    STORE_ID_PATTERN,
    compose,
    describe,
    line_of,
    redact_url,
    shown_value,
    yaml_problem,
)
from edge_core.config_types import CLIENT_NAME_PATTERN, HostPort, KeyedError
from edge_core.errors import ConfigError

ENV_OVERRIDES = ("EDGE_HUB_URL", "EDGE_API_LISTEN", "EDGE_STORE_ID")
_ENV_KEYS: dict[str, tuple[str, str]] = {
    "EDGE_HUB_URL": ("hub", "url"),
    "EDGE_API_LISTEN": ("api", "listen"),
    "EDGE_STORE_ID": ("store", "id"),
}
# The demo chain's member ids (M-0042): "M-" and up to 20 capital letters or digits. Not a phone
# number, HTML or control characters; a chain with other ids sets loyalty.member_id_pattern.
MEMBER_ID_PATTERN = r"^M-[A-Z0-9]{1,20}$"


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
    # Seconds a sign that the outbox cannot drain (an ack refused, the MQTT session taken by
    # another client) keeps GET /v1/health degraded after it was last seen.
    trouble_hold: float = Field(default=120, ge=1, le=86_400)
    # Seconds to wait before reconnecting after another client took this store's MQTT session.
    takeover_backoff: float = Field(default=10, ge=1, le=300)
    # A password over mqtt:// crosses the network in clear; only a lab or a broker on this host
    # should say so, explicitly.
    allow_plaintext_password: bool = False

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username or parts.password:
            raise ValueError(
                "the url holds a user name or password; remove them and use hub.username and hub.password_file"
            )
        shown = redact_url(value)
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
            raise KeyedError(f"{have} is set but {need} is not; mutual TLS needs both: add hub.{need} or remove {have}", have)
        if (self.cert_file or self.ca_file) and not self.url.startswith("mqtts://"):
            raise KeyedError("ca_file/cert_file are set but the url is not mqtts://; use mqtts:// or remove them", "url")
        if self.password_file is not None and not self.url.startswith("mqtts://") and not self.allow_plaintext_password:
            raise KeyedError("password_file is set but the url is mqtt://, which sends the password in clear; use "
                             "mqtts:// (with hub.ca_file if the hub's certificate needs it), or set "
                             "hub.allow_plaintext_password: true for a broker on this host or a lab", "url")
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
        if not HEX64.match(value):
            raise ValueError(
                "this is not the 64 hex digits of a SHA-256, and the token itself must never sit in the file; "
                "run `edge-agent hash-token` and paste its output"
            )
        return value.lower()  # hashlib's hexdigest() is lower case; accept sha256sum output in either case


class ClientCert(str, Enum):
    """Whether an API client must show a certificate from ``api.tls.client_ca_file`` (mutual TLS)."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class ApiTlsConfig(_Model):
    """``api.tls``: HTTPS and WSS for the local API, optionally mutual TLS (edge_agent/tls.py)."""

    cert_file: Path = Field(description="PEM: the API's certificate, then any intermediates")
    key_file: Path = Field(description="PEM: its private key, unencrypted, readable by user edge-agent only")
    client_ca_file: Path | None = Field(default=None, description="PEM: the CA of the kiosks' client certificates")
    client_cert: ClientCert = Field(default=ClientCert.NONE,
                                    description="none | optional | required: a client certificate from client_ca_file")

    @model_validator(mode="after")
    def _client_ca(self) -> "ApiTlsConfig":
        if self.client_cert is not ClientCert.NONE and self.client_ca_file is None:
            raise KeyedError(f"client_cert is {self.client_cert.value} but client_ca_file is not set; name the CA "
                             "that issues the kiosks' certificates in api.tls.client_ca_file", "client_cert")
        if self.client_cert is ClientCert.NONE and self.client_ca_file is not None:
            raise KeyedError("client_ca_file is set but client_cert is none, so no client certificate is asked "
                             "for; set client_cert: required (or optional), or remove client_ca_file", "client_ca_file")
        return self


class ApiConfig(_Model):
    """The ``api:`` section: the local HTTP API."""

    listen: HostPort = HostPort(host="127.0.0.1", port=8080)
    clients: list[ClientConfig] = Field(default_factory=list)
    # Limits that hold before any work (edge_agent/api/limits.py). A sale of sales.MAX_LINES
    # (10,000) lines is about 370 KB of JSON: the body cap leaves room for it, and no more.
    max_body: int = Field(default=512 * 1024, ge=1024, le=16 * 1024 * 1024,
                          description="bytes a request body may have; 413 before more is read")
    header_timeout: float = Field(default=10.0, ge=1, le=300,
                                  description="seconds a connection has to send a whole request head")
    max_connections: int = Field(default=512, ge=8, le=60_000,
                                 description="open connections at most; more are closed at once")
    max_connections_per_client: int = Field(default=64, ge=2, le=60_000,
                                            description="open connections from one address at most")
    docs: bool = Field(default=False, description="serve /docs, /redoc and /openapi.json (no token needed)")
    tls: ApiTlsConfig | None = Field(default=None, description="serve HTTPS and WSS with these files")

    @model_validator(mode="after")
    def _unique_clients(self) -> "ApiConfig":
        names: dict[str, int] = {}
        hashes: dict[str, int] = {}
        for i, client in enumerate(self.clients):
            if client.name in names:
                raise KeyedError(f"client name {client.name!r} is already used by clients.{names[client.name]}; "
                          "give each client its own name", "clients", i, "name")
            if client.token_sha256 in hashes:
                raise KeyedError(f"{client.name!r} has the same token as clients.{hashes[client.token_sha256]}; "
                          "give each client its own token", "clients", i, "token_sha256")
            names[client.name] = hashes[client.token_sha256] = i
        return self


class LoyaltyConfig(_Model):
    """The ``loyalty:`` section: the chain's points rule (edge_agent/loyalty.py)."""

    points_per_unit: Decimal = Field(
        default=Decimal(1), ge=0, le=1000, decimal_places=4,
        description="points earned per currency unit paid in money (rounded down per sale)")
    point_value: Decimal = Field(
        default=Decimal("0.01"), gt=0, le=1000, decimal_places=4,
        description="currency units one redeemed point takes off the amount to pay")
    card_ttl: float = Field(
        default=14_400, ge=1, le=30 * 86_400,
        description="seconds a member card the hub sent stays in the store (or until its expires_at)")
    member_id_pattern: str = Field(
        default=MEMBER_ID_PATTERN, min_length=1, max_length=200,
        description="a regular expression every member_id must match whole (sales, orders, member QR scans)")

    @field_validator("member_id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression ({err}); write one such as {MEMBER_ID_PATTERN}") from err
        if re.fullmatch(value, ""):
            raise ValueError("the pattern matches an empty member id; anchor it and require at least one character")
        return value

    def member_id_problem(self, member_id: str) -> str | None:
        """Why ``member_id`` is not a member id of this chain, or None if it is one."""
        if re.fullmatch(self.member_id_pattern, member_id):
            return None
        # The value is not repeated: what was sent may be a phone number or a name.
        return (f"not a member id of this chain (loyalty.member_id_pattern {self.member_id_pattern}); send the id "
                "on the member's card, not a phone number or a name")


class StockConfig(_Model):
    """The ``stock:`` section (edge_agent/stock.py)."""

    low_threshold: int = Field(default=3, ge=0, le=1_000_000,
                               description="a store count falling to this or below alerts associates (stock.low)")


class HealthConfig(_Model):
    """The ``health:`` section: when ``GET /v1/health`` says ``degraded`` (edge_agent/health.py)."""

    min_free_mb: float = Field(
        default=100, ge=0, le=100_000_000,
        description="free space in the data dir below which the store is degraded (disk_low): sales would soon "
                    "fail to write; 0 turns the check off")


class SessionsConfig(_Model):
    """The ``sessions:`` section: kiosk sessions (edge_agent/sessions.py)."""

    idle_timeout: float = Field(
        default=180, ge=1, le=86_400,
        description="seconds without activity at a kiosk (member attached, basket change, scan, sale) after "
                    "which its session ends: the member is detached and the basket emptied")


class AssistConfig(_Model):
    """The ``assist:`` section: a kiosk's call for help (edge_agent/assist.py)."""

    remind_s: float = Field(
        default=30, ge=0.1, le=3600,
        description="seconds between two reminders of an untaken help request to every wristband")
    alert_after_s: float = Field(
        default=120, ge=0.1, le=86_400,
        description="seconds a help request may stay untaken before it raises the assist_unanswered alert")


class PrivacyConfig(_Model):
    """The ``privacy:`` section: how long personal data stays in the store (edge_agent/privacy.py)."""

    retention_days: float = Field(
        default=30, ge=0, le=3650,
        description="days after the hub acknowledged a sale, return or collected order until its member id is "
                    "pseudonymised and its free text purged here (the hub keeps its own copy)")
    access_log_days: float = Field(
        default=180, ge=0, le=3650,
        description="days the local log of who read members' data keeps each read")
    sweep_interval: float = Field(
        default=3600, ge=0.1, le=86_400,
        description="seconds between two sweeps (retention, access log, the access summary to the hub)")


class FleetConfig(_Model):
    """The ``fleet:`` section: how the agent takes a devices.yaml the hub sends (edge_agent/config_apply.py)."""

    rollback_after_s: float = Field(
        default=300, ge=1, le=86_400,
        description="seconds after a version from the hub is applied during which a device it added or changed "
                    "that is not online sends the agent back to the last good version")


class UpdatesConfig(_Model):
    """The ``updates:`` section: how the agent takes a signed release the hub names (edge_agent/release.py)."""

    public_key_file: Path | None = Field(
        default=None,
        description="the ed25519 public key (PEM) release bundles are signed with (edge-hub release keygen); "
                    "without it every release is refused")
    releases_dir: Path = Field(
        default=Path("/opt/edge-agent/releases"),
        description="where each release is installed, one folder per version with its venv")
    current_link: Path = Field(
        default=Path("/opt/edge-agent/current"),
        description="the symbolic link to the release in force; the unit's ExecStart runs the agent through it")
    healthy_after_s: float = Field(
        default=120, ge=0.1, le=86_400,
        description="seconds the health of a release just switched to must stay ok before it counts as healthy")
    max_bundle_mb: float = Field(
        default=500, gt=0, le=100_000,
        description="the largest bundle (all its wheels) the agent downloads, in MB")


class AgentConfig(_Model):
    """The whole devices.yaml, validated."""

    store: StoreConfig
    hub: HubConfig = HubConfig()
    api: ApiConfig = ApiConfig()
    loyalty: LoyaltyConfig = LoyaltyConfig()
    stock: StockConfig = StockConfig()
    sessions: SessionsConfig = SessionsConfig()
    health: HealthConfig = HealthConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    assist: AssistConfig = AssistConfig()
    fleet: FleetConfig = FleetConfig()
    updates: UpdatesConfig = UpdatesConfig()
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
        return [], [f"{filename}:{line_of(lines, ('devices',))}: devices must be a list; "
                    "start each device with '- ', e.g. '- id: scanner-1'"]
    registry = drivers()
    kinds = ", ".join(sorted(registry))
    devices: list[DeviceConfig] = []
    seen: dict[str, int] = {}
    claimed: dict[str, tuple[str, int]] = {}  # what one device alone may have -> (device id, line)
    for i, entry in enumerate(raw):
        where = ("devices", i)
        line = line_of(lines, where)
        if not isinstance(entry, dict):
            problems.append(f"{filename}:{line}: devices.{i} must be a mapping with id and kind{shown_value(entry, where)}; "
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
            problems.append(f"{filename}:{line_of(lines, where + ('kind',))}: unknown device kind {kind!r}; {hint}")
            continue
        try:
            device = driver.Config.model_validate(entry)
        except ValidationError as err:
            for e in err.errors():
                rel = tuple(e["loc"]) + getattr((e.get("ctx") or {}).get("error"), "loc", ())
                message = describe(e, where + rel, driver.Config, rel)
                problems.append(f"{filename}:{line_of(lines, where + rel)}: {message}")
            continue
        if device.id in seen:
            problems.append(
                f"{filename}:{line_of(lines, where + ('id',))}: device id {device.id!r} is already used "
                f"at line {seen[device.id]}; give each device its own id"
            )
            continue
        seen[device.id] = line_of(lines, where + ("id",))
        devices.append(device)
        for claim, rel in device.claims():
            at = line_of(lines, where + rel)
            if claim in claimed:
                problems.append(f"{filename}:{at}: {claim} is already bound by device {claimed[claim][0]!r} "
                                f"at line {claimed[claim][1]}; bind it to one device only")
            else:
                claimed[claim] = (device.id, at)
    return devices, problems


# The clients a device's ``station`` may name: the selling clients (POST /v1/sales,
# /v1/returns), kiosks and associates' counters. A printer prints the receipts of
# the client its station names (edge_agent/printing.py printer_for), a scanner's
# scans reach that client's feed and a member QR its session.
STATION_ROLES = ("kiosk", "associate")


def _named_clients(device: DeviceConfig) -> list[tuple[str, tuple[str, ...], tuple[str | int, ...]]]:
    """Every api client ``device`` names: (name, the roles it may have, the path of its key)."""
    named = [(name, (role,), rel) for name, role, rel in device.clients()]
    station = getattr(device, "station", None)
    if isinstance(station, str) and not any(rel == ("station",) for _, _, rel in named):
        named.append((station, STATION_ROLES, ("station",)))
    return named


def _client_problems(devices: list[DeviceConfig], raw: Any, clients: list[ClientConfig], filename: str,
                     lines: Mapping[tuple, int]) -> list[str]:
    """A device key that names an api client (a mirror's ``kiosk``, a printer's or scanner's ``station``)
    must name one of a role it may have: a receipt for a station that is no client would never print."""
    problems: list[str] = []
    roles = {c.name: c.role.value for c in clients}
    for device in devices:
        # The first entry with this id is the one kept (a second is reported as a duplicate).
        i = next(i for i, e in enumerate(raw) if isinstance(e, dict) and e.get("id") == device.id)
        for name, allowed, rel in _named_clients(device):
            if roles.get(name) in allowed:
                continue
            key = ".".join(str(p) for p in ("devices", i, *rel))
            wanted = " or ".join(allowed)
            same_role = ", ".join(sorted(n for n, r in roles.items() if r in allowed)) or "none yet"
            what = (f"{name!r} is an api client with role {roles[name]}, not {wanted}" if name in roles
                    else f"{name!r} is not an api client")
            problems.append(f"{filename}:{line_of(lines, ('devices', i, *rel))}: {key}: {what}; name a client "
                            f"with role {wanted} (in this file: {same_role}) or add one under api.clients")
    return problems


def parse(text: str, filename: str = "devices.yaml", environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Validate YAML text; raise ConfigError listing every problem with its line."""
    environ = os.environ if environ is None else environ
    try:
        data, lines, problems = compose(text, filename)
    except yaml.MarkedYAMLError as err:
        raise ConfigError([yaml_problem(err, filename)]) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"{filename}:1: not valid YAML: {err}; check the file's encoding and syntax"]) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"just {data!r}"
        raise ConfigError([f"{filename}:{lines.get((), 1)}: the file is {what}, not a mapping; "
                           "write store:, hub:, api: and devices: at the left margin"])
    for section in ("store", "hub", "api", "loyalty", "stock", "sessions", "health", "privacy", "assist", "fleet",
                    "updates"):  # a section with every key commented out means the defaults
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
            message = describe(e, loc, AgentConfig, loc) + _from_env(loc, env_keys)
            problems.append(f"{filename}:{line_of(lines, loc)}: {message}")
        config = None
    if config is not None:
        problems += _client_problems(devices, data.get("devices"), config.api.clients, filename, lines)
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


def file_problems(path: Path | str, cfg: AgentConfig) -> list[str]:
    """``FILE:LINE`` problems with the files the config names (missing, unreadable).

    Kept out of ``load``: a daemon starts without its hub credentials (it
    sells offline and says why); ``edge-agent check`` reports them.
    """
    path = Path(path)
    _, lines, _ = compose(path.read_text(encoding="utf-8"), str(path))
    problems = []
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        value = getattr(cfg.hub, key)
        if value is None:
            continue
        try:
            with open(value, "rb"):
                pass
        except OSError as err:
            problems.append(f"{path}:{line_of(lines, ('hub', key))}: hub.{key}: cannot read {value}: "
                            f"{err.strerror}; create it or fix the path (the agent runs as user edge-agent)")
    problems += [line for line, warning in _tls_findings(path, lines, cfg) if not warning]
    return problems


def file_warnings(path: Path | str, cfg: AgentConfig) -> list[str]:
    """``FILE:LINE: warning: ...`` for what works but should be looked at (a certificate about to expire)."""
    path = Path(path)
    _, lines, _ = compose(path.read_text(encoding="utf-8"), str(path))
    return [line for line, warning in _tls_findings(path, lines, cfg) if warning]


def _tls_findings(path: Path, lines: Mapping[tuple, int], cfg: AgentConfig) -> list[tuple[str, bool]]:
    """api.tls's files as ``FILE:LINE`` lines (edge_agent/tls.py reads them as the daemon will)."""
    if cfg.api.tls is None:
        return []
    from edge_agent import tls

    return [(f"{path}:{line_of(lines, ('api', 'tls', f.key))}: {'warning: ' if f.warning else ''}api.tls.{f.key}: "
             f"{f.message}", f.warning) for f in tls.findings(cfg.api.tls, cfg.api.listen)]
