"""The store's health in one place: its open alerts and whether it is ``ok`` or ``degraded``, and why.

``GET /v1/health``, the health snapshot the link sends to the hub
(``edge/{store}/health``) and the agent's ``/console`` all read from here,
so the three never disagree.

``OpenAlerts`` keeps every alert the store raised and has not cleared, keyed
by ``(device, code, subject)``: one access point raises one
``label_price_mismatch`` per label (the label's MAC is the subject), so
keying by device and code alone would show one of them. It follows
``alert.raised`` / ``alert.cleared`` on the bus, not the feed's ring: the
ring holds the last few thousand events of any kind, and a paper-out raised
before a busy hour of scans would fall out of it while the paper is still
out. Label alerts outlive a restart (``label_alerts``), so they are read
back at start; a printer's alert is raised again by its first status poll.
A one-shot alert (``"one_shot": true``: news such as a bad payload from the
hub, which nothing will ever clear) is listed for ``ONE_SHOT_FOR_S`` after
its last occurrence and then leaves the list on its own; the feed and the
hub keep the event.

``assess`` says ``degraded`` with a reason for each: a device offline or in
error, shelf labels that show another price than the checkout past their
grace (their ``price`` alerts), failed print jobs, a printer that needs
someone (paper out, cover open), a store that cannot write or whose data
dir has less than ``health.min_free_mb`` free (``disk_low``), the hub out of
reach or silent for over ``HUB_GRACE_S``, a kiosk's call for help untaken
past ``assist.alert_after_s`` (``assist_unanswered``, the kiosk its subject). A config file edited
here after the hub's version was applied is ``config_drift``, a warning that leaves the status ``ok``;
a certificate of the store's own (``hub.cert_file``, ``api.tls.cert_file``) within ``CERT_WARN_DAYS`` of
its end is ``cert_expiring``, a warning too, and past it ``cert_expired`` (the broker or the kiosks then
refuse it);
``config`` says the version in force (edge_agent/config_apply.py). For the snapshot it also lists the
open alerts, worst first, at most ``SNAPSHOT_ALERTS``: the hub judges its
device-alert rules by them.
"""

from __future__ import annotations

import asyncio
import json
import os
import logging
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drivers.base import DeviceState
from edge_agent.bus import EventBus
from edge_agent.labels.alerts import CODES as _LABEL_CODES
from edge_agent.store import Store, outbox
from edge_core.bus import BusEvent, Consumer, utcnow
from edge_core.logonce import LogOnce

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)

_UNWELL = (DeviceState.OFFLINE, DeviceState.ERROR)
LABEL_CODES = frozenset(_LABEL_CODES.values())
# Every code a reason may have (GET /v1/health, the hub's snapshot, /metrics).
REASON_CODES = frozenset({"store_not_writing", "device_offline", "device_error", "labels_non_compliant",
                          "print_jobs_failed", "printer_attention", "hub_offline", "hub_not_acknowledging",
                          "hub_ack_invalid", "hub_publish_refused", "mqtt_session_taken_over",
                          "duplicate_store", "outbox_unreadable", "disk_low", "assist_unanswered", "config_drift",
                          "cert_expiring", "cert_expired"})
# Reasons that are said but leave the status ``ok``: someone should look, nothing is failing. A kiosk's
# unanswered call for help is the shop floor's, not the system's: it must not roll a release back on trial
# (edge_agent/release.py waits for ``ok``) nor halt a rollout at the hub (its alert still goes up).
WARNING_CODES = frozenset({"config_drift", "assist_unanswered", "cert_expiring"})
# Days before a certificate's end from which health says so (enrolled certificates last 397 days).
CERT_WARN_DAYS = 30
# The hub link may be down, or the hub silent, this long before the store says so: a broker
# restart or a hub upgrade takes seconds (``hub`` says "offline" at once), and the store sells
# offline by design; past it, someone should look.
HUB_GRACE_S = 30.0
# Open alerts in a health snapshot, at most: the hub refuses a snapshot over 256 KB.
SNAPSHOT_ALERTS = 100
_SEVERITY = {"critical": 4, "error": 3, "warning": 2, "info": 1}
# Past this many open alerts the oldest are dropped: a store's alerts are data
# from its devices, and a flood of distinct subjects must not grow the agent.
MAX_OPEN = 10_000
# A one-shot alert stays on the open list this long after its last occurrence: long enough for
# someone called to the console to see what happened, short enough that a store with nothing
# wrong does not show a raised alert (and the hub a device alert) for the rest of the day.
ONE_SHOT_FOR_S = 600.0


def alert_key(data: dict[str, Any]) -> tuple[str, str, str]:
    """``(device, code, subject)`` of an alert event; the subject is the device when the alert names none."""
    device = str(data.get("device") or "?")
    return device, str(data.get("code") or "unknown"), str(data.get("subject") or device)


class OpenAlerts(Consumer):
    """Every alert raised on the bus and not cleared since, with the time it was raised."""

    prefixes = ("alert.raised", "alert.cleared")

    def __init__(self, bus: EventBus, store: Store, one_shot_for_s: float = ONE_SHOT_FOR_S,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(bus)
        self.store = store
        self.one_shot_for_s = one_shot_for_s
        self._clock = clock
        self._open: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._expires: dict[tuple[str, str, str], float] = {}  # one-shot alerts: when they leave the list
        self._log_once = LogOnce(log)

    async def start(self) -> None:
        """Read back the label alerts still up, then follow the bus."""
        await self._read_label_alerts()
        await super().start()

    async def _read_label_alerts(self) -> None:
        """The label alerts as the ``label_alerts`` table has them (their source of truth)."""
        rows = await self.store.read(lambda c: c.execute(
            "SELECT data, raised_at FROM label_alerts ORDER BY raised_at").fetchall())
        for key in [k for k in self._open if k[1] in LABEL_CODES]:
            del self._open[key]
        for data, raised_at in rows:
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._add(event, raised_at)

    async def handle(self, event: BusEvent) -> None:
        """Open or close one alert; a failure is logged and the next event handled (the task runs all day)."""
        try:
            await self._handle(event)
        except Exception as err:  # noqa: BLE001 - /v1/health, /console and the snapshot read these all day
            self._log_once.error(("alerts", event.type, type(err).__name__), "health: cannot follow %s %r: %s: %s",
                                 event.type, event.data, type(err).__name__, err)

    async def _handle(self, event: BusEvent) -> None:
        data = event.data
        if data.get("code") in LABEL_CODES and "count" in data:
            # A burst's summary ("40 more raised"): those labels are not on the bus one by one.
            await self._read_label_alerts()
        elif event.type == "alert.cleared" or data.get("state") == "cleared":
            self._open.pop(alert_key(data), None)
            self._expires.pop(alert_key(data), None)
        else:
            self._add(data, event.time.isoformat())

    def _add(self, data: dict[str, Any], raised_at: str) -> None:
        key = alert_key(data)
        self._open.pop(key, None)  # a raise again moves to the end: newest last
        self._open[key] = {"device": key[0], "code": key[1], "subject": key[2], "severity": data.get("severity"),
                           "message": data.get("message"), "time": raised_at, "state": "raised"}
        if data.get("one_shot") is True:
            self._expires[key] = self._clock() + self.one_shot_for_s
        else:
            self._expires.pop(key, None)
        while len(self._open) > MAX_OPEN:
            oldest = next(iter(self._open))
            del self._open[oldest]
            self._expires.pop(oldest, None)

    def _expire(self) -> None:
        """Drop the one-shot alerts whose time on the list is up."""
        now = self._clock()
        for key in [k for k, until in self._expires.items() if until <= now]:
            del self._expires[key]
            self._open.pop(key, None)

    def list(self) -> tuple[dict[str, Any], ...]:
        """The open alerts, oldest first."""
        self._expire()
        return tuple(self._open.values())

    def for_hub(self, limit: int = SNAPSHOT_ALERTS) -> list[dict[str, Any]]:
        """At most ``limit`` open alerts for the health snapshot, the worst first (then the oldest).

        The hub judges its device-alert rules by these rather than by the alert events alone:
        a clear lost to a restart (paper put in while the agent was down) cannot leave an alert
        raised there forever. The cap keeps the snapshot small when a whole store of labels is
        wrong; ``open_alerts_total`` says how many there are.
        """
        self._expire()
        worst = sorted(self._open.values(), key=lambda a: -_SEVERITY.get(str(a["severity"]), 0))
        return [{k: a[k] for k in ("device", "code", "subject", "severity", "message", "time")}
                for a in worst[:limit]]


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def _reason(code: str, message: str, subject: str | None = None) -> dict[str, Any]:
    return {"code": code, "subject": subject, "message": message}


async def _hub_reasons(agent: "Agent") -> list[dict[str, Any]]:
    """The link down past its grace, or connected while the hub acknowledges nothing (the hub is down)."""
    link = agent.link
    if link is None:
        return []
    # Acks refused or ignored, the session taken by another client, the hub's word that two
    # agents run as this store: each for a while after it was last seen.
    trouble = [_reason(code, message, "hub") for code, message in link.recent_trouble()]
    return trouble + await _link_reasons(agent, link)


async def _link_reasons(agent: "Agent", link: Any) -> list[dict[str, Any]]:
    now = utcnow()
    if not link.connected:
        since = link.offline_since
        if since is None or (now - since).total_seconds() < HUB_GRACE_S:
            return []
        why = f": {link.last_error}" if link.last_error else ""
        return [_reason("hub_offline", f"not connected to the hub since {since.isoformat(timespec='seconds')}{why}; "
                        "sales go on and wait in the outbox", "hub")]
    oldest = await agent.store.read(outbox.oldest_time)
    if not oldest:
        return []
    # Both past the grace: an event waiting that long, and no ack progress (nor a connect) for that
    # long. The oldest event's age alone is the outage's length right after a reconnect, while the
    # backlog drains normally; the last progress alone is hours old when a first sale comes after a
    # quiet spell.
    waiting = (now - datetime.fromisoformat(oldest)).total_seconds()
    progress = link.ack_progress_at
    quiet = (now - progress).total_seconds() if progress is not None else waiting
    if min(waiting, quiet) >= HUB_GRACE_S:
        return [_reason("hub_not_acknowledging", f"connected, but the hub has acknowledged no event for over "
                        f"{HUB_GRACE_S:g} s (the hub service down or stalled); events wait in the outbox", "hub")]
    return []


def label_figures(agent: "Agent") -> dict[str, Any] | None:
    """The labels' summary with ``past_grace`` (labels wrong past their grace), as the label service gives it."""
    return agent.labels.summary()


async def _disk_reasons(agent: "Agent") -> list[dict[str, Any]]:
    """``disk_low`` when the data dir's file system has less free than ``health.min_free_mb``."""
    floor_mb = agent.config.health.min_free_mb
    if not floor_mb:
        return []
    try:
        free = (await asyncio.to_thread(shutil.disk_usage, agent.data_dir)).free
    except OSError as err:
        return [_reason("disk_low", f"cannot tell the free space of {agent.data_dir}: {err.strerror or err}",
                        "store")]
    if free >= floor_mb * 1024 * 1024:
        return []
    return [_reason("disk_low", f"{free / 2**20:.0f} MB free in {agent.data_dir}, under the {floor_mb:.12g} MB of "
                    "health.min_free_mb: sales will soon fail to write; free space on that disk", "store")]


def cert_reasons(agent: "Agent", now: datetime | None = None) -> list[dict[str, Any]]:
    """``cert_expiring`` within CERT_WARN_DAYS of a certificate's end, ``cert_expired`` past it; the files
    are read again only when they change."""
    now = now or utcnow()
    tls = agent.config.api.tls
    reasons = []
    for subject, path, use in (("hub", agent.config.hub.cert_file, "the MQTT client certificate"),
                               ("api", tls.cert_file if tls else None, "the local API's certificate")):
        if path is None:
            continue
        not_after = _not_after(str(path))
        if not_after is None:
            continue
        left = not_after - now
        renew = ("; renew it: a new code from the hub (edge-hub enroll-code), then edge-agent enroll --force"
                 if subject == "hub" else "; replace it (edge-agent enroll --force renews both)")
        if left.total_seconds() <= 0:
            reasons.append(_reason("cert_expired", f"{use} {path} expired on {not_after:%Y-%m-%d}{renew}", subject))
        elif left.days < CERT_WARN_DAYS:
            reasons.append(_reason("cert_expiring", f"{use} {path} expires on {not_after:%Y-%m-%d}, in "
                                   f"{left.days} {_plural(left.days, 'day')}{renew}", subject))
    return reasons


_NOT_AFTER: dict[str, tuple[tuple[int, int], datetime | None]] = {}


def _not_after(path: str) -> datetime | None:
    """The end of the first certificate in the PEM file at ``path``; None when it cannot be read (the link or
    the server says so when it loads it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    cached = _NOT_AFTER.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            value: datetime | None = x509.load_pem_x509_certificate(f.read(1 << 20)).not_valid_after_utc
    except (OSError, ValueError):
        value = None
    _NOT_AFTER[path] = (key, value)
    return value


async def assess(agent: "Agent") -> dict[str, Any]:
    """``status``, ``reasons``, ``labels`` and ``printing``: what ``GET /v1/health`` and the hub's snapshot share."""
    reasons: list[dict[str, Any]] = []
    if not agent.store.writer_alive:
        reasons.append(_reason("store_not_writing", "the local store cannot write: sales and returns are refused"))
    reasons += await _disk_reasons(agent)
    for d in agent.supervisor.snapshot():
        if d.state in _UNWELL:
            reasons.append(_reason(f"device_{d.state.value}", f"{d.id} ({d.kind}) is {d.state.value}"
                                   + (f": {d.last_error}" if d.last_error else ""), d.id))
    reasons += await _hub_reasons(agent)
    labels = label_figures(agent)
    if labels and labels["past_grace"]:
        n, total = labels["past_grace"], labels["labels"]
        reasons.append(_reason("labels_non_compliant", f"{n} of {total} shelf {_plural(total, 'label')} "
                               f"{'shows' if n == 1 else 'show'} another price than the checkout past the grace "
                               "time; GET /v1/labels/compliance lists them", "labels"))
    printing = await agent.printing.counts() if agent.printing.printers else None
    if printing and printing.get("failed"):
        n = printing["failed"]
        reasons.append(_reason("print_jobs_failed", f"{n} print {_plural(n, 'job')} failed; GET /v1/print/jobs "
                               "lists them, POST /v1/print/jobs/{id}/retry prints one again", "printing"))
    for a in agent.alerts.list():
        # A printer's problem alert (paper out, cover open) is "error"; "warning" is paper running low.
        if a["device"] in agent.printing.printers and a["severity"] == "error":
            reasons.append(_reason("printer_attention", str(a["message"] or f"{a['device']}: {a['code']}"),
                                   a["device"]))
    for request in agent.assist.unanswered():
        reasons.append(_reason("assist_unanswered", f"{request.station} has asked for help since "
                               f"{request.created_at.isoformat(timespec='seconds')} and nobody has taken it "
                               f"({agent.assist.on_duty} associate(s) on duty); GET /v1/assist lists the calls",
                               request.station))
    reasons += cert_reasons(agent)
    config = agent.configs.status()
    if config["drift"]:
        reasons.append(_reason("config_drift", f"the config file was changed here after hub version "
                               f"{config['version']} was applied; the agent runs version {config['version']} until "
                               "it restarts: push the change from the hub, or undo it", "config"))
    degraded = any(r["code"] not in WARNING_CODES for r in reasons)
    return {"status": "degraded" if degraded else "ok", "reasons": reasons, "labels": labels, "printing": printing,
            "open_alerts": agent.alerts.for_hub(), "open_alerts_total": len(agent.alerts.list()), "config": config}
