"""Every MQTT topic and payload of CONTRACT section 4, in one place.

Nothing else in the code base formats a topic string or builds an envelope:
the agent (sync/link.py) and the reference hub (sync/hub/) both use this.

Uplink (agent to hub): ``edge/{store}/status`` (retained, Will),
``edge/{store}/events`` (CloudEvents batches), ``edge/{store}/health``
(retained), ``edge/{store}/cmd/res``. Downlink (hub to agent):
``hub/{store}/ack``, ``hub/{store}/catalog``, ``hub/all/catalog``,
``hub/{store}/stock``, ``hub/{store}/orders``, ``hub/{store}/members``,
``hub/{store}/returns`` (an extension: the verdict on a pending online
return), ``hub/{store}/notice`` (an extension: what the hub noticed about the
store's identity, such as two agents running as one store), ``hub/{store}/cmd``.

Desired configuration (an extension of the contract; edge_agent/config_apply.py
at the store, sync/hub/fleet/desired.py at the hub): the hub sends a store's
devices.yaml on ``hub/{store}/config``, QoS 1, retained (a store that
reconnects gets the latest), as ``DesiredConfig``: ``{"version": int,
"sha256": hex of the YAML's UTF-8 bytes, "yaml": text (at most 256 KiB),
"by": who}``. The store answers on ``edge/{store}/config/res``, QoS 1, with a
``ConfigResult``: ``{"version", "ok", "state": "applied" | "refused" |
"rolled_back" | "restart_required", "errors": ["FILE:LINE: ..."], "reason",
"in_force": {"version", "sha256"}, "at"}``, and again each time it connects.
The health snapshot carries ``config: {"version", "sha256", "drift",
"state"}`` (``ConfigHealth``): the version in force, and whether the file
on disk still is that version.

Updates (an extension of the contract; edge_agent/release.py at the store,
sync/hub/fleet/releases.py and rollout.py at the hub): a release bundle is a
directory ``releases/<version>/`` of wheels (the agent's and every
dependency's), ``manifest.json`` (``ReleaseManifest``: version, created_at,
python, files with their size and sha256, requires) and ``manifest.sig``
(the raw ed25519 signature of manifest.json's exact bytes, base64). The hub
names the release a store should run on ``hub/{store}/update``, QoS 1,
retained, as ``DesiredRelease``: ``{"version", "base_url", "manifest_sha256",
"rollout", "by"}``; a rollback is the same message naming the earlier
version. The store answers on ``edge/{store}/update/res``, QoS 1, with an
``UpdateResult``: ``{"version", "rollout", "state": "downloading" | "refused" |
"installed" | "waiting_quiet" | "switching" | "healthy" | "rolled_back" |
"failed", "reason", "running", "at"}``; ``running`` is the version running
when it was sent.

Streams (an extension of the contract, edge_agent/store/streams.py): every
event carries ``stream``, the id of the run of the store database that
numbered it, and its ``seq`` counts within that stream. The first event of a
stream names the stream before it (``prevstream``) and that stream's last
seq (``prevseq``). Acks name the stream they acknowledge. Events and acks
without ``stream`` belong to the legacy stream of agents from before streams.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync.events import OutboxEvent

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
EVENT_CONTENT_TYPE = "application/cloudevents+json"
DOWNLINK_KINDS = ("ack", "catalog", "stock", "orders", "members", "returns", "notice", "cmd", "config", "update")
# A stream id: a UUID as the agent makes them; letters, digits and dashes.
STREAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"
_STORE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class PayloadError(ValueError):
    """A payload that does not parse or validate; the message says what is wrong."""


class StoreTopics:
    """The topics of one store."""

    def __init__(self, store_id: str):
        if not _STORE_RE.match(store_id):
            raise ValueError(f"bad store id {store_id!r}")
        self.store_id = store_id
        up, down = f"edge/{store_id}", f"hub/{store_id}"
        self.source = up
        self.status = f"{up}/status"
        self.events = f"{up}/events"
        self.health = f"{up}/health"
        self.cmd_res = f"{up}/cmd/res"
        self.config_res = f"{up}/config/res"
        self.update_res = f"{up}/update/res"
        self.downlink = {kind: f"{down}/{kind}" for kind in DOWNLINK_KINDS}
        self.all_catalog = "hub/all/catalog"

    def subscriptions(self) -> list[str]:
        """What the agent subscribes to: its own downlink and the chain-wide catalog."""
        return [*self.downlink.values(), self.all_catalog]

    def downlink_kind(self, topic: str) -> str | None:
        """``ack``, ``catalog``, ... for one of this store's downlink topics; None otherwise."""
        if topic == self.all_catalog:
            return "catalog"
        for kind, t in self.downlink.items():
            if t == topic:
                return kind
        return None


# The hub's side -------------------------------------------------------------

def hub_events_subscription(group: str = "hub") -> str:
    """The shared subscription by which hub workers split the stores' events."""
    return f"$share/{group}/edge/+/events"


HUB_STATUS_FILTER = "edge/+/status"
HUB_HEALTH_FILTER = "edge/+/health"
HUB_CMD_RES_FILTER = "edge/+/cmd/res"
HUB_CONFIG_RES_FILTER = "edge/+/config/res"
HUB_UPDATE_RES_FILTER = "edge/+/update/res"


def store_of(topic: str) -> str | None:
    """The store id in an ``edge/{store}/...`` topic, if it is a valid one."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[0] == "edge" and _STORE_RE.match(parts[1]):
        return parts[1]
    return None


def hub_topic(store_id: str, kind: str) -> str:
    """A downlink topic for one store (``kind`` in DOWNLINK_KINDS), or ``all`` for the chain."""
    if kind not in DOWNLINK_KINDS:
        raise ValueError(f"unknown downlink kind {kind!r}")
    if store_id != "all" and not _STORE_RE.match(store_id):
        raise ValueError(f"bad store id {store_id!r}")
    return f"hub/{store_id}/{kind}"


# Payloads --------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event as this contract uses it (extensions allowed)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=128)
    time: datetime | None = None
    datacontenttype: str | None = "application/json"
    seq: int | None = Field(default=None, ge=1)
    # Streams: absent on the legacy stream.
    stream: str | None = Field(default=None, min_length=1, max_length=64, pattern=STREAM_PATTERN)
    prevstream: str | None = Field(default=None, min_length=1, max_length=64, pattern=STREAM_PATTERN)
    prevseq: int | None = Field(default=None, ge=1, le=2**63 - 1)  # a stream ends at 1 or later; BIGINT
    data: Any = None


def cloudevent(store_source: str, event: OutboxEvent, stream: str = "", seq: int | None = None,
               prev: tuple[str, int] | None = None) -> dict[str, Any]:
    """The wire form of one outbox event: ``seq`` in ``stream`` (the local seq on the legacy stream ``""``);
    ``prev`` is the previous stream and its last seq, on the first event of a stream."""
    out = {
        "specversion": "1.0",
        "id": event.id,
        "source": store_source,
        "type": event.type,
        "time": event.time,
        "datacontenttype": "application/json",
        "seq": event.seq if seq is None else seq,
    }
    if stream:
        out["stream"] = stream
    if prev is not None and prev[0]:
        out["prevstream"], out["prevseq"] = prev
    out["data"] = event.data
    return out


HUB_SOURCE = "hub"


def hub_event(type_: str, data: Any) -> dict[str, Any]:
    """A hub-made CloudEvent for the downlink (not numbered: downlink events carry no seq)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": HUB_SOURCE,
        "type": type_,
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "datacontenttype": "application/json",
        "data": data,
    }


def encode_event(store_source: str, event: OutboxEvent, stream: str = "", seq: int | None = None,
                 prev: tuple[str, int] | None = None) -> bytes:
    """One outbox event as CloudEvents JSON (see ``cloudevent``)."""
    return json.dumps(cloudevent(store_source, event, stream, seq, prev), separators=(",", ":"),
                      ensure_ascii=False).encode()


def join_batch(encoded: list[bytes]) -> bytes:
    """A CloudEvents JSON batch (an array) of already encoded events."""
    return b"[" + b",".join(encoded) + b"]"


def encode_batch(store_source: str, events: list[OutboxEvent]) -> bytes:
    """A CloudEvents JSON batch (an array) of outbox events."""
    return join_batch([encode_event(store_source, e) for e in events])


def decode_json(payload: bytes) -> Any:
    """JSON from bytes, or PayloadError saying why not."""
    try:
        return json.loads(payload)
    except ValueError as err:
        # JSONDecodeError, UnicodeDecodeError, and the plain ValueError of an
        # integer longer than Python's 4,300-digit limit.
        raise PayloadError(f"not JSON: {str(err)[:200]}") from err
    except RecursionError as err:
        raise PayloadError("JSON nested too deeply") from err


def decode_events(payload: bytes, max_events: int = 10_000) -> list[CloudEvent]:
    """A batch (array) or a single CloudEvent; PayloadError on anything else."""
    raw = decode_json(payload)
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise PayloadError("empty batch")
    if len(items) > max_events:
        raise PayloadError(f"batch of {len(items)} events is over the limit of {max_events}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(CloudEvent.model_validate(item))
        except ValidationError as err:
            raise PayloadError(f"event {i}: {_first_error(err)}") from err
    return out


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "payload"
    return f"{loc}: {e['msg']}"


def validate(model: type[BaseModel], data: Any) -> Any:
    """``model.model_validate(data)`` with PayloadError instead of ValidationError."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise PayloadError(_first_error(err)) from err


class Ack(_Strict):
    """``hub/{store}/ack``: every event of ``stream`` up to ``seq`` is durable at the hub.

    ``stream`` absent: the legacy stream. ``time`` (an extension) is the
    hub's clock when it sent the ack: the store's reference for its clock
    offset in the health snapshot.
    """

    seq: int = Field(ge=0)
    stream: str | None = Field(default=None, min_length=1, max_length=64, pattern=STREAM_PATTERN)
    time: datetime | None = None


class Status(_Strict):
    """``edge/{store}/status``, retained; the Will carries only ``state: offline``."""

    state: Literal["online", "offline"]
    version: str | None = None
    since: datetime | None = None
    # The stream this run of the store numbers its events in: two runs announcing
    # themselves in turn are two agents with one store id.
    stream: str | None = Field(default=None, min_length=1, max_length=64, pattern=STREAM_PATTERN)


class Notice(_Strict):
    """``hub/{store}/notice``, retained: what the hub noticed about the store's identity.

    ``duplicate_store``: two agents run as this store (``streams`` names their
    streams); ``raised`` while the hub sees both, ``cleared`` after.
    """

    code: Literal["duplicate_store"]
    state: Literal["raised", "cleared"]
    streams: list[str] = Field(default_factory=list, max_length=16)
    message: str = Field(default="", max_length=500)
    time: datetime | None = None


class Command(_Strict):
    """``hub/{store}/cmd``."""

    id: str = Field(min_length=1, max_length=128)
    device: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class CommandResult(BaseModel):
    """``edge/{store}/cmd/res``: ``result`` when ok, ``error`` when not."""

    id: str
    ok: bool
    result: Any = None
    error: str | None = None

    def wire(self) -> bytes:
        """JSON with ``result`` or ``error``, not both."""
        body: dict[str, Any] = {"id": self.id, "ok": self.ok}
        if self.ok:
            body["result"] = self.result
        else:
            body["error"] = self.error
        return json.dumps(body, separators=(",", ":")).encode()


# The store keeps counts and versions as SQLite INTEGERs, 64-bit signed: a larger number would fail the
# write, not the validation.
_MAX_INT = 2**63 - 1


class Promo(BaseModel):
    """A promotion: a lower price for a while."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price: Decimal = Field(ge=0, le=10_000_000, decimal_places=2)
    label: str | None = Field(default=None, max_length=80)
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def active(self, at: datetime) -> bool:
        """True when ``at`` falls inside the promotion's window."""
        return (self.starts_at is None or self.starts_at <= at) and (self.ends_at is None or at < self.ends_at)


class CatalogItem(BaseModel):
    """One product as the hub sends it (CONTRACT section 4, retail.catalog.updated)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    barcodes: list[str] = Field(default_factory=list, max_length=32)
    name: str = Field(min_length=1, max_length=300)
    price: Decimal = Field(ge=0, le=10_000_000, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    promo: Promo | None = None
    rating: float | None = Field(default=None, ge=0, le=5)
    reviews: int = Field(default=0, ge=0, le=_MAX_INT)
    stock_online: int = Field(default=0, ge=0, le=_MAX_INT)
    stock_store: int | None = Field(default=None, ge=-_MAX_INT, le=_MAX_INT,
                                    description="only from local files, and only for a product the store does not have yet: "
                                                "a count changes by sales, returns, adjustments and the hub's "
                                                "retail.stock.set, each an event")
    version: int = Field(default=0, ge=0, le=_MAX_INT)

    @field_validator("barcodes")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not (1 <= len(code) <= 64 and code.isprintable() and " " not in code):
                raise ValueError(f"barcode {code!r} must be 1-64 printable characters without spaces")
        return codes


class StockSet(_Strict):
    """``retail.stock.set``: the store's absolute count of a SKU, counted elsewhere."""

    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=0, le=10_000_000)


class OrderLine(_Strict):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=1, le=9999)


class OrderCreated(_Strict):
    """``retail.order.created``: a pickup order for this store."""

    order_id: str = Field(min_length=1, max_length=64)
    pickup_code: str = Field(min_length=4, max_length=32)
    member_id: str | None = Field(default=None, max_length=64)
    lines: list[OrderLine] = Field(min_length=1, max_length=500)
    ready_by: datetime | None = None


def _encodable(values: list[str]) -> list[str]:
    for v in values:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{v[:20]!r} is not valid text (a lone surrogate)") from err
    return values


class MemberCard(_Strict):
    """``retail.member.arrived`` / ``retail.member.card``: no phone, no full name."""

    member_id: str = Field(min_length=1, max_length=64)
    tier: str = Field(max_length=32)
    tags: list[str] = Field(default_factory=list, max_length=50)
    points: int = Field(ge=0)
    interests: list[str] = Field(default_factory=list, max_length=50)
    expires_at: datetime | None = None

    _text = field_validator("tags", "interests")(_encodable)


class ReturnVerdict(_Strict):
    """``retail.return.verdict`` on ``hub/{store}/returns``: the hub's word on a pending online return."""

    return_id: str = Field(min_length=1, max_length=64)
    verdict: Literal["approved", "rejected"]
    reason: str | None = Field(default=None, max_length=300)


# An extension (README, "Personal data"): how often the store's clients read members' data.
ACCESS_SUMMARY = "retail.privacy.access_summary"


class AccessCount(_Strict):
    """Reads of members' data by one client (with its role) in a summary; ``what`` counts reads per route
    or feed event type (``GET /v1/members/{member_id}``, ``feed:member.arrived``)."""

    client: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=16)
    reads: int = Field(ge=1)
    members: int = Field(ge=1, description="distinct members read")
    what: dict[str, int] = Field(default_factory=dict)


class AccessSummary(_Strict):
    """``retail.privacy.access_summary``: the store's reads of members' data since the last summary.

    Counts only, per client and role; no member id nor pseudonym. ``first``
    and ``last`` are the times of the first and last read counted, ``reads``
    their total; each read is counted in exactly one summary.
    """

    store: str = Field(min_length=1, max_length=64)
    first: datetime
    last: datetime
    reads: int = Field(ge=1)
    clients: list[AccessCount] = Field(min_length=1, max_length=10_000)


# Desired configuration (see the module's docstring) ------------------------------

# The largest devices.yaml the hub may send, in bytes of UTF-8.
MAX_CONFIG_BYTES = 256 * 1024
CONFIG_STATES = ("applied", "refused", "rolled_back", "restart_required")
_HEX64 = r"^[0-9a-f]{64}$"


def config_sha256(text: str) -> str:
    """The SHA-256 of a devices.yaml's UTF-8 bytes, in hex: what ``sha256`` names everywhere."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DesiredConfig(_Strict):
    """``hub/{store}/config``: version ``version`` of the store's devices.yaml."""

    version: int = Field(ge=1, le=_MAX_INT)
    sha256: str = Field(pattern=_HEX64)
    yaml: str = Field(max_length=MAX_CONFIG_BYTES)
    by: str = Field(default="", max_length=128)

    @field_validator("yaml")
    @classmethod
    def _size(cls, text: str) -> str:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as err:
            raise ValueError("the YAML is not valid text (a lone surrogate)") from err
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"the YAML is {size} bytes, over the limit of {MAX_CONFIG_BYTES}")
        return text

    def matches(self) -> bool:
        """True when ``sha256`` is the hash of ``yaml``: the text arrived whole."""
        return config_sha256(self.yaml) == self.sha256


class ConfigVersion(_Strict):
    """A version of a store's devices.yaml and its hash; version 0 is the store's own file, never sent."""

    version: int = Field(ge=0, le=_MAX_INT)
    sha256: str = Field(pattern=_HEX64)


class ConfigResult(_Strict):
    """``edge/{store}/config/res``: what became of version ``version``; ``in_force`` is what runs now.

    ``stream`` is the stream the answering agent numbers its events in (as in its status): two PCs
    running as one store answer apiece, and the hub keeps each one's word (absent: an older agent)."""

    version: int = Field(ge=0, le=_MAX_INT)
    stream: str | None = Field(default=None, min_length=1, max_length=64, pattern=STREAM_PATTERN)
    ok: bool
    state: Literal["applied", "refused", "rolled_back", "restart_required"]
    errors: list[str] = Field(default_factory=list, max_length=100)
    reason: str | None = Field(default=None, max_length=2000)
    in_force: ConfigVersion
    at: datetime

    @field_validator("errors")
    @classmethod
    def _short(cls, errors: list[str]) -> list[str]:
        return [e[:1000] for e in errors]

    def wire(self) -> bytes:
        """The JSON payload."""
        return self.model_dump_json(exclude_none=True).encode()


class ConfigHealth(_Strict):
    """The health snapshot's ``config``: the version in force and whether the file on disk drifted from it."""

    version: int = Field(ge=0, le=_MAX_INT)
    sha256: str | None = Field(default=None, pattern=_HEX64)
    drift: bool = False
    state: str = Field(default="applied", max_length=32)


# Updates (see the module's docstring) ------------------------------------------------

# A release version: PEP 440's public form (0.2.0, 1.0rc1, 0.2.0.post1), safe as one path segment.
VERSION_PATTERN = r"^[0-9]{1,9}(?:\.[0-9]{1,9}){0,4}(?:(?:a|b|rc)[0-9]{1,9})?(?:\.post[0-9]{1,9})?(?:\.dev[0-9]{1,9})?$"
# A file of a bundle: a wheel's name, one path segment.
RELEASE_FILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}\.whl$"
# The largest manifest.json and manifest.sig a store reads, in bytes.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_SIGNATURE_BYTES = 1024
MAX_RELEASE_FILES = 500
UPDATE_STATES = ("downloading", "refused", "installed", "waiting_quiet", "switching", "healthy", "rolled_back",
                 "failed")
AGENT_DISTRIBUTION = "edge-agent"


class ReleaseFile(_Strict):
    """One wheel of a bundle: its name (a single path segment), size in bytes and SHA-256 in hex."""

    name: str = Field(pattern=RELEASE_FILE_PATTERN)
    size: int = Field(ge=1, le=2**40)
    sha256: str = Field(pattern=_HEX64)


class ReleaseManifest(_Strict):
    """``manifest.json`` of a bundle; ``requires`` is what pip installs from the files (``edge-agent==V``)."""

    version: str = Field(pattern=VERSION_PATTERN)
    created_at: datetime
    python: str = Field(pattern=r"^3\.[0-9]{1,3}$")
    files: list[ReleaseFile] = Field(min_length=1, max_length=MAX_RELEASE_FILES)
    requires: str = Field(max_length=100)

    @field_validator("files")
    @classmethod
    def _unique(cls, files: list[ReleaseFile]) -> list[ReleaseFile]:
        names = [f.name.lower() for f in files]
        if len(set(names)) != len(names):
            raise ValueError("a file is named twice")
        return files

    def model_post_init(self, _context: Any) -> None:
        if self.requires != f"{AGENT_DISTRIBUTION}=={self.version}":
            raise ValueError(f"requires must be {AGENT_DISTRIBUTION}=={self.version}")


class DesiredRelease(_Strict):
    """``hub/{store}/update``, retained: the release the store should run, its bundle at ``base_url``
    (ending in ``/``; https, or http on loopback) and the SHA-256 of its manifest.json."""

    version: str = Field(pattern=VERSION_PATTERN)
    base_url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s#?]+/$")
    manifest_sha256: str = Field(pattern=_HEX64)
    rollout: str = Field(default="", max_length=128)
    by: str = Field(default="", max_length=128)


class UpdateResult(_Strict):
    """``edge/{store}/update/res``: where the store is with release ``version``; ``running`` is the version
    running now."""

    version: str = Field(max_length=64)
    rollout: str = Field(default="", max_length=128)
    state: Literal["downloading", "refused", "installed", "waiting_quiet", "switching", "healthy", "rolled_back",
                   "failed"]
    reason: str | None = Field(default=None, max_length=2000)
    running: str = Field(default="", max_length=64)
    at: datetime

    def wire(self) -> bytes:
        """The JSON payload."""
        return self.model_dump_json(exclude_none=True).encode()
