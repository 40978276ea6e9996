"""Shelf-label back ends as devices: an OpenEPaperLink access point
(``shelf_label.oepl``) and a folder of PNG files (``shelf_label.files``).

A back end shows pictures on labels and says what they show; it does not
decide what they show. The agent's label service (edge_agent/labels/) plans,
renders and calls ``push``; it attaches itself as the driver's ``sink``. Every
``poll_interval`` seconds ``check`` asks the back end what each label shows
(an AP's tag list: the hash of the confirmed picture, updates pending,
battery, last check-in) and hands the sink a ``Snapshot``. The supervisor
marks the device offline or in error when that poll fails, which is how an
access point that is down shows.
"""

from __future__ import annotations

import asyncio
import os
from abc import abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from PIL import Image

from drivers.base import Driver, DriverContext, Reporting
from drivers.shelf_label.config import FilesConfig, LabelDeviceConfig, OeplConfig, check_key
from drivers.shelf_label.files import FileLabels
from drivers.shelf_label.oepl import ApInfo, OeplClient, TagInfo, normalize_mac
from edge_core.bus import utcnow
from edge_core.errors import DeviceError, DeviceMissing

REFRESH = "refresh_labels"


@dataclass(frozen=True, slots=True)
class TagState:
    """What a back end says about one label."""

    label: str
    known: bool  # the AP lists the tag / the file exists
    token: str | None = None  # the back end's hash of what the label shows (AP "hash", PNG content hash)
    pending: int = 0  # updates queued at the AP that the tag has not fetched yet
    last_seen: datetime | None = None
    battery_mv: int | None = None
    hw_type: int | None = None
    rssi: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """One poll of a back end: every watched label it reported, and when the poll began
    (so it reflects every push that had returned before that moment)."""

    device: str
    polled_at: datetime
    tags: dict[str, TagState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PushResult:
    """A push the back end accepted: shown at once (a file), or to be confirmed by a later poll (a tag)."""

    confirmed: bool
    token: str | None = None


class LabelSink(Protocol):
    """What a label driver reports to (the agent's label service)."""

    def watched(self, device_id: str) -> list[str]:
        """Labels bound to the device, the ones waiting for a confirmation first."""

    def observed(self, snapshot: Snapshot) -> None:
        """A poll's result; must return quickly (it runs inside the health check)."""

    async def refresh(self, device_id: str, labels: list[str] | None) -> dict[str, Any]:
        """Push these labels (all of the device's when None) again, changed or not."""


class LabelDriver(Driver):
    """What both back ends share: config keys, the sink, the ``refresh_labels`` command."""

    Config: ClassVar[type[LabelDeviceConfig]]
    capabilities = frozenset({"shelf_label"})
    commands = frozenset({REFRESH})
    health_fields = ("polls", "pushes", "push_errors")
    reporting = Reporting.POLL
    # What ``push`` takes: "image" (a PIL image in the model's palette) or "jpeg" (oepl.encode_jpeg's
    # bytes); the agent makes it where it draws, off the event loop.
    picture: ClassVar[str] = "image"

    def __init__(self, config: LabelDeviceConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self.check_interval = config.poll_interval
        self.sink: LabelSink | None = None

    def attach(self, sink: LabelSink) -> None:
        """Report polls to ``sink`` and let it answer ``refresh_labels``."""
        self.sink = sink

    @abstractmethod
    def label_id(self, text: str) -> str:
        """``text`` as this back end names a label; ValueError if it cannot be one."""

    @abstractmethod
    async def push(self, label: str, picture: Any, *, content_hash: str, alias: str | None = None,
                   facts: dict[str, str] | None = None) -> PushResult:
        """Show ``picture`` (see ``picture``) on ``label``; DeviceError if the back end refused or did not answer.
        ``facts`` say in words what the picture shows (sku, price, currency or notice), kept where the
        back end can keep them."""

    def _report(self, snapshot: Snapshot) -> None:
        if self.sink is not None:
            self.sink.observed(snapshot)

    async def command(self, action: str, args: dict[str, Any]) -> Any:
        """``refresh_labels`` ``{"labels": [ids]}`` (all when omitted): push them again."""
        if action != REFRESH:
            raise NotImplementedError(action)
        labels = args.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise ValueError("args.labels must be a list of label ids (MACs or keys), or left out for all")
        if self.sink is None:
            raise DeviceError(f"{self.config.id}: no label service is attached to this device")
        return await self.sink.refresh(self.config.id, [self.label_id(x) for x in labels] if labels else None)


class OeplLabels(LabelDriver):
    """The labels of one OpenEPaperLink access point, over its HTTP API (oepl.py)."""

    kind = "shelf_label.oepl"
    Config = OeplConfig
    picture = "jpeg"
    # The AP's /get_db cannot page past index 255 (oepl.py); bound tags beyond
    # are asked for one by one, at most this many per poll, the ones waiting
    # for a confirmation first.
    single_queries: ClassVar[int] = 64

    def __init__(self, config: OeplConfig, ctx: DriverContext, transport: Any = None):
        super().__init__(config, ctx)
        # A poll reads the tag list page by page; give it room beyond one request's timeout.
        self.op_timeout = max(10.0, 3 * config.timeout)
        self.client = OeplClient(config.url, timeout=config.timeout, upload_timeout=config.upload_timeout,
                                 transport=transport)
        self.info: ApInfo | None = None
        self._open = False
        self._cursor = 0

    def label_id(self, text: str) -> str:
        """A tag MAC as the AP prints it."""
        return normalize_mac(text)

    async def open(self) -> None:
        """Make sure the access point answers (GET /sysinfo), and read its tags once: nothing is
        pushed to a tag before its hardware type and current picture are known."""
        await self.client.open()
        self.info = await self.client.sysinfo()
        await self.check()
        self._open = True

    async def close(self) -> None:
        """Close the HTTP client; safe to call twice."""
        self._open = False
        await self.client.close()

    async def check(self) -> None:
        """Read the tag list (and bound tags it misses, one by one) and report it."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        polled_at = utcnow()
        tags = {t.mac: _state(t) for t in await self.client.tags()}
        self.ctx.counters["tags"] = len(tags)
        self.ctx.count("polls")
        if self.sink is not None:
            missing = [mac for mac in self.sink.watched(self.config.id) if mac not in tags]
            budget = self.op_timeout / 3
            for mac in missing[: self.single_queries]:
                if loop.time() - began > budget:
                    break
                tag = await self.client.tag(mac)
                tags[mac] = _state(tag) if tag is not None else TagState(mac, known=False)
        self._report(Snapshot(self.config.id, polled_at, tags))

    async def push(self, label: str, picture: Image.Image | bytes, *, content_hash: str,
                   alias: str | None = None, facts: dict[str, str] | None = None) -> PushResult:
        """Upload the picture; the tag takes it at its next check-in and a later poll confirms it
        (the AP keeps no ``facts``)."""
        if not self._open:
            raise DeviceMissing(f"{self.config.id}: the access point is not connected")
        try:
            await self.client.upload(label, picture, dither=0, alias=alias)
        except DeviceError:
            self.ctx.count("push_errors")
            raise
        self.ctx.count("pushes")
        return PushResult(confirmed=False)


def _state(tag: TagInfo) -> TagState:
    return TagState(tag.mac, known=True, token=tag.shown_hash, pending=tag.pending, last_seen=tag.last_seen,
                    battery_mv=tag.battery_mv, hw_type=tag.hw_type, rssi=tag.rssi)


class LabelFiles(LabelDriver):
    """Labels as PNG files in a folder (files.py): for stores without electronic labels, and ``make run``."""

    kind = "shelf_label.files"
    Config = FilesConfig

    def __init__(self, config: FilesConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self.files = FileLabels(config.dir)
        # A poll reads the header of every bound label's file.
        self.op_timeout = 30.0

    def label_id(self, text: str) -> str:
        """A file key; a MAC-looking id is written as the AP prints it."""
        try:
            return normalize_mac(text)
        except ValueError:
            return check_key(text)

    async def open(self) -> None:
        """Create the folder if needed; DeviceMissing if it cannot be written."""
        await asyncio.to_thread(self._usable, True)

    async def close(self) -> None:
        """Nothing to release."""

    def _usable(self, create: bool = False) -> None:
        folder = self.files.directory
        try:
            if create:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DeviceMissing(f"cannot create the label folder {folder}: {err.strerror}") from err
        if not folder.is_dir():
            raise DeviceMissing(f"the label folder {folder} is gone")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DeviceMissing(f"the label folder {folder} is not writable by this user")

    async def check(self) -> None:
        """The folder is still there and writable; report what each bound label's file shows."""
        watched = self.sink.watched(self.config.id) if self.sink is not None else []
        polled_at = utcnow()
        tags = await asyncio.to_thread(self._read_all, watched)
        self.ctx.count("polls")
        self._report(Snapshot(self.config.id, polled_at, tags))

    def _read_all(self, labels: list[str]) -> dict[str, TagState]:
        self._usable()
        out = {}
        for label in labels:
            info = self.files.info(label)
            out[label] = (TagState(label, known=False) if info is None else
                          TagState(label, known=True, token=info.content_hash, last_seen=info.modified))
        return out

    async def push(self, label: str, picture: Image.Image, *, content_hash: str,
                   alias: str | None = None, facts: dict[str, str] | None = None) -> PushResult:
        """Write the PNG atomically, with ``facts`` as text chunks; it shows at once."""
        try:
            await asyncio.to_thread(self.files.write, label, picture, content_hash, facts)
        except (OSError, ValueError) as err:
            self.ctx.count("push_errors")
            raise DeviceError(f"cannot write label {label} in {self.files.directory}: {err}") from err
        self.ctx.count("pushes")
        return PushResult(confirmed=True, token=content_hash)
