"""Faults of a store day, each injected and then cleared, and how each must show.

A device fault (paper out, cover open, scanner unplugged, access point
down) must show within 60 s on the agent's ``GET /v1/health`` (not ``ok``,
the device named in ``reasons``) and at the hub console's
``GET /api/stores/{store}`` (the device not online), and both must clear
within 60 s after the repair. The outages (broker restart, hub down, agent
SIGKILL) show where they can be seen (the agent's ``hub`` field, its outbox,
the console's presence) and end with the outbox drained. The hub down shows
on ``/v1/health`` as ``hub_not_acknowledging`` (connected to the broker, an
event waiting and no ack progress, both for ``ACK_GRACE`` s), so its hold is
at least ``HUB_HOLD_MIN``; back, the reason clears and the console's
``GET /api/fleet`` shows the store's outbox at 0. The agent's restart after
its SIGKILL numbers in a new stream at the hub, which the hub takes for no
identity issue. The store-identity faults (a second PC with the store's id,
an old PC's stale event) are in identity.py.

A restored backup is not a soak fault: it rolls the store's stock, points
and orders back under the ledger the actors keep, so every later check of
them would judge the rollback instead of the day.
tests/sync/test_store_identity.py covers it (the hub's ``database_restored``,
the agent's ``database_behind_hub`` alert, every sale once).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from soak import checks as rows
from soak.day import Day
from soak.invariants import drains, hub_events, hub_read
from soak.rig import STORE

SHOW_WITHIN = 60.0
DRAIN_WITHIN = 180.0
ACK_GRACE = 30.0  # edge_agent/health.py HUB_GRACE_S: hub_not_acknowledging shows past it
HUB_HOLD_MIN = 50.0  # the grace, and 20 s for the reason to be seen on a loaded machine
# The agent sends its health snapshot to the hub when its assessment changes and at least every
# 60 s (sync/link.py health_every_s): the console's outbox figure may wait for the next one.
HEALTH_EVERY = 60.0


def health(day: Day, agent: Any = None) -> dict | None:
    """The soak agent's (or ``agent``'s) ``GET /v1/health``, or None while it does not answer."""
    try:
        with day.rig.client(None, agent=agent) as http:
            return http.get("/v1/health").json()
    except httpx.HTTPError:
        return None


def console(day: Day) -> dict | None:
    try:
        with day.rig.console() as http:
            r = http.get(f"/api/stores/{STORE}")
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def console_device(day: Day, device: str) -> str | None:
    """The hub console's state of the soak store's ``device`` (GET /api/stores/{store}), or None."""
    store = console(day)
    return next((d["state"] for d in (store or {}).get("devices", []) if d["id"] == device), None)


def codes(snapshot: dict | None) -> list[str]:
    return [r.get("code") for r in (snapshot or {}).get("reasons") or [] if isinstance(r, dict)]


def _fleet_summary(day: Day) -> dict | None:
    """The soak store's line in the hub console's ``GET /api/fleet``, or None."""
    try:
        with day.rig.console() as http:
            r = http.get("/api/fleet")
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return next((s for s in r.json().get("stores", []) if s.get("store") == STORE), None)


def identity_issues(day: Day) -> list[dict[str, Any]]:
    """The soak store's rows of the hub's ``identity`` table (what it noticed), as dicts."""
    cols = ("code", "subject", "detail", "first_at", "last_at", "count", "cleared_at")
    return [dict(zip(cols, r)) for r in hub_read(day.rig.hub_db, f"SELECT {', '.join(cols)} FROM identity "
                                                  "WHERE store = ?", (STORE,))]


def now_iso() -> str:
    """UTC now as the hub writes its times (ISO-8601, milliseconds), so that text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _named(health: dict | None, device: str) -> bool:
    return health is not None and device in json.dumps(health.get("reasons") or [])


def expect(day: Day, what: str, probe: Callable[[], Any], holds: Callable[[Any], bool], within: float,
           row: str = rows.FAULT, **ids: Any) -> bool:
    """Poll ``probe`` until ``holds`` (a check of ``row``); a violation with the last answer after ``within`` s."""
    deadline = time.monotonic() + within
    started = time.monotonic()
    last: Any = None
    while True:
        last = probe()
        if holds(last):
            day.checks.ok(row)
            day.ledger.did(f"fault signals seen ({what.split(':')[0]})")
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)  # a poll interval
    day.checks.fail(row, what, f"within {within:.0f} s", _short(last), after_s=round(time.monotonic() - started),
                    **ids)
    return False


def _short(value: Any) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) < 400 else text[:400] + "..."


@dataclass(frozen=True)
class DeviceFault:
    """A fault of one device: ``inject``, then ``clear``; seen on both consoles, then gone."""

    name: str
    device: str
    outage: str
    inject: Callable[[Day], None]
    repair: Callable[[Day], None]

    def run(self, day: Day, hold: float) -> None:
        day.ledger.faults[self.name] += 1
        day.outages.begin(self.outage)
        self.inject(day)
        started = time.monotonic()
        expect(day, f"{self.name}: /v1/health names {self.device}", lambda: health(day),
               lambda h: h is not None and h["status"] != "ok" and _named(h, self.device), SHOW_WITHIN,
               device=self.device)
        expect(day, f"{self.name}: hub console shows {self.device} not online",
               lambda: console_device(day, self.device), lambda s: s not in (None, "online", "busy"), SHOW_WITHIN,
               device=self.device)
        day.stop.wait(max(0.0, hold - (time.monotonic() - started)))
        self.repair(day)
        day.outages.end(self.outage)
        expect(day, f"{self.name} cleared: /v1/health no longer names {self.device}", lambda: health(day),
               lambda h: h is not None and not _named(h, self.device), SHOW_WITHIN, device=self.device)
        expect(day, f"{self.name} cleared: hub console shows {self.device} online",
               lambda: console_device(day, self.device), lambda s: s in ("online", "busy"), SHOW_WITHIN,
               device=self.device)


def _printer(kiosk: str, **flags: bool) -> Callable[[Day], None]:
    return lambda day: day.rig.printer_state(kiosk, **flags)


def _ap_down(day: Day) -> None:
    day.rig.ap.stop()


def _ap_up(day: Day) -> None:
    day.rig.ap.start()


DEVICE_FAULTS = (
    DeviceFault("printer paper out", "printer-1", "printer-kiosk-1", _printer("kiosk-1", paper_end=True),
                _printer("kiosk-1", paper_end=False)),
    DeviceFault("printer cover open", "printer-2", "printer-kiosk-2", _printer("kiosk-2", cover_open=True),
                _printer("kiosk-2", cover_open=False)),
    DeviceFault("scanner unplugged", "scanner-2", "scanner-kiosk-2",
                lambda day: day.rig.scanners["kiosk-2"].unplug(), lambda day: day.rig.scanners["kiosk-2"].plug()),
    DeviceFault("access point down", "labels-ap", "ap", _ap_down, _ap_up),
)


def broker_restart(day: Day, hold: float) -> None:
    """The broker goes away for ``hold`` s: the agent's health says the hub is not online; then it drains."""
    day.ledger.faults["broker restart"] += 1
    day.outages.begin("broker")

    def away() -> None:
        expect(day, "broker down: /v1/health hub not online", lambda: health(day),
               lambda h: h is not None and h.get("hub") != "online", min(SHOW_WITHIN, hold + 30))
        day.stop.wait(hold)

    day.rig.restart_broker(away)
    day.outages.end("broker")
    expect(day, "broker back: /v1/health hub online", lambda: health(day),
           lambda h: h is not None and h.get("hub") == "online", SHOW_WITHIN)
    expect(day, "broker back: hub console shows the store online", lambda: (console(day) or {}).get("summary"),
           lambda s: bool(s) and s.get("presence") == "online", SHOW_WITHIN)
    drains(day, "the broker restart", DRAIN_WITHIN)


def hub_down(day: Day, hold: float) -> None:
    """The hub is stopped for ``hold`` s: events meanwhile wait in the outbox, ``/v1/health`` says
    ``hub_not_acknowledging``; then the outbox drains, the reason clears, the console shows outbox 0."""
    day.ledger.faults["hub down"] += 1
    day.outages.begin("hub")
    before = len(day.ledger.sales)
    day.rig.hub.stop()
    stopped = time.monotonic()
    # An event that must wait, whatever the kiosks do meanwhile: an associate's count, as any day has.
    try:
        with day.rig.client("pad-1") as pad:
            r = pad.post("/v1/stock/adjustments", json={"code": "TOTE01", "counted": 20, "reason": "count",
                                                        "client_adjustment_id": str(uuid.uuid4())})
        got: Any = f"{r.status_code}: {r.text[:200]}"
    except httpx.HTTPError as err:
        got = repr(err)
    day.checks.check(rows.ANSWERS, got.startswith("201"), "a stock count while the hub is down answered 201", 201,
                     got)
    deepest = 0

    def sample() -> dict | None:
        nonlocal deepest
        h = health(day)
        deepest = max(deepest, (h or {}).get("outbox_depth") or 0)
        return h

    if hold >= HUB_HOLD_MIN:
        expect(day, "hub down: /v1/health reasons say hub_not_acknowledging", sample,
               lambda h: "hub_not_acknowledging" in codes(h), SHOW_WITHIN)
    else:
        day.checks.note(f"hub down for {hold:.0f} s, under the {HUB_HOLD_MIN:.0f} s hub_not_acknowledging takes: "
                        "its reason not checked")
    while time.monotonic() - stopped < hold and not day.stop.is_set():
        sample()
        time.sleep(0.5)  # a sampling interval
    sold = len(day.ledger.sales) - before
    day.checks.check(rows.FAULT, deepest > 0, "hub down: /v1/health outbox_depth grows while events wait",
                     "> 0", deepest, sales_meanwhile=sold)
    day.rig.hub.start(timeout=120)
    back = datetime.now(timezone.utc)
    day.outages.end("hub")
    expect(day, "hub back: its console shows the store online", lambda: (console(day) or {}).get("summary"),
           lambda s: bool(s) and s.get("presence") == "online", SHOW_WITHIN)
    drains(day, "the hub's downtime", DRAIN_WITHIN)
    expect(day, "hub back: /v1/health reasons no longer say hub_not_acknowledging", lambda: health(day),
           lambda h: h is not None and "hub_not_acknowledging" not in codes(h), SHOW_WITHIN)
    # The console's figure is the last snapshot's: 0 in one the agent took after the hub came back (one
    # from before the downtime, read back at the hub's start, says 0 too and proves nothing).
    expect(day, "hub back: the console's GET /api/fleet shows the store's outbox at 0", lambda: _fleet_summary(day),
           lambda s: bool(s) and s.get("outbox_depth") == 0 and _after(s.get("snapshot_time"), back),
           SHOW_WITHIN + HEALTH_EVERY, hub_back_at=back.isoformat(timespec="seconds"))


def _after(iso: Any, moment: datetime) -> bool:
    """True if ``iso`` (a snapshot's time) is at or after ``moment``."""
    try:
        at = datetime.fromisoformat(str(iso))
    except ValueError:
        return False
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)) >= moment


def agent_kill(day: Day, hold: float) -> None:
    """SIGKILL the agent, ``hold`` s dead, restart: the console sees it go and come back; it drains; its
    new run numbers in a new stream at the hub, and the hub takes that for no identity issue."""
    day.ledger.faults["agent SIGKILL"] += 1
    day.outages.begin("agent")
    with day.ledger.lock:
        day.ledger.kills.append(time.monotonic())
    before = {s for (s,) in hub_read(day.rig.hub_db, "SELECT DISTINCT stream FROM events WHERE store = ?", (STORE,))}
    killed_at = now_iso()
    day.rig.kill_agent()
    expect(day, "agent killed: hub console shows the store offline", lambda: (console(day) or {}).get("summary"),
           lambda s: bool(s) and s.get("presence") != "online", SHOW_WITHIN)
    day.stop.wait(hold)
    day.rig.restart_agent()
    day.outages.end("agent")
    expect(day, "agent restarted: hub console shows the store online", lambda: (console(day) or {}).get("summary"),
           lambda s: bool(s) and s.get("presence") == "online", SHOW_WITHIN)
    drains(day, "the agent's restart", DRAIN_WITHIN)
    incarnation = day.rig.incarnation

    def restarted_sales() -> dict[str, list[str]]:
        """Streams (new since the kill, or older) holding sales of the restarted run."""
        mine = {s.sale_id for s in day.ledger.sales_list() if s.incarnation == incarnation}
        out: dict[str, list[str]] = {"new": [], "old": []}
        for stream, _, type_, data in hub_events(day.rig.hub_db):
            if type_ == "retail.sale.completed" and data.get("sale_id") in mine:
                out["old" if stream in before else "new"].append(stream[:8])
        return out

    expect(day, "agent restarted: its sales land in a stream new since the kill, none in an older one",
           restarted_sales, lambda got: bool(got["new"]) and not got["old"], SHOW_WITHIN, row=rows.IDENTITY,
           incarnation=incarnation)
    issues = [i for i in identity_issues(day) if i["code"] in ("database_restored", "duplicate_store")
              and (i["cleared_at"] is None or i["last_at"] >= killed_at)]
    day.checks.check(rows.IDENTITY, not issues, "agent restarted: the hub notes no database_restored or "
                     "duplicate_store from a restart", [], issues, incarnation=incarnation)
