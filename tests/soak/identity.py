"""Faults of the store's identity: a second PC running with the store's id, an old PC's stale event.

- ``second_pc``: another real ``edge-agent run`` with a copy of the soak
  store's devices.yaml (its own API port, no devices, an empty disk with the
  catalog) runs beside the soak's agent for the hold and sells a few sales,
  which join the ledger (at the hub exactly once, like any 201). Within 60 s
  the hub's ``identity`` has an open ``duplicate_store`` and the console an
  alert for it, and the soak agent's ``GET /v1/health`` names
  ``duplicate_store`` or ``mqtt_session_taken_over``. Its outbox drained, it
  is stopped with SIGTERM; within 60 s the hub clears the issue, the
  console's alert goes and the agent's reasons drop it (the rig runs those
  timers short: rig.DUPLICATE_CLEAR, TROUBLE_HOLD, TAKEOVER_BACKOFF). When the
  hub has a version of the store's devices.yaml (the fleet adopts it before
  the second PC comes), the second PC got it, retained, at connect: it held
  it, its own devices.yaml is unchanged, and ``edge-hub config status`` is
  the soak agent's word alone, with its version in force.

  Known consequence of a duplicated PC, which the alert is there to end: the
  two agents share one MQTT session (one client id), so each downlink
  message (orders, prices, stock, member cards, commands) reaches whichever
  PC holds the session at that moment, and the other never sees it. The
  hub actor holds its downlink for the fault's duration (``day.downlink``,
  outage ``second-pc``), or the ledger would rightly flag what the second PC
  swallowed. Sales on the soak's agent go on throughout.
- ``stale_event``: a plain MQTT client publishes on the store's events
  topic one CloudEvent at a position the hub already holds (the soak
  agent's current stream, a seq there), with another event id and a
  plausible ``retail.sale.completed`` body marked as injected, as a
  forgotten PC running an old build might. Within 60 s the hub keeps it
  whole in ``conflicts``, has an open ``stream_conflict``, ``edge-hub
  stores`` shows conflicts 1 and the console a ``stream-conflict`` alert;
  the store's own events are untouched (invariants.hub_ledger: exactly once,
  the injected one not among them).

Every check here is a row ``IDENTITY`` check; the drains are ``DRAIN``'s.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from soak import checks as rows
from soak.actors import call
from soak.day import SKUS, Day
from soak.faults import DRAIN_WITHIN, SHOW_WITHIN, codes, expect, health, identity_issues
from soak.invariants import drains, hub_conflicts, hub_events, hub_read
from soak.rig import STORE
from sync.topics import StoreTopics

ROOT = Path(__file__).resolve().parents[2]
TAKEOVER_CODES = ("duplicate_store", "mqtt_session_taken_over")
SECOND_PC_SALES = 5


def _open(day: Day, code: str) -> list[dict[str, Any]]:
    return [i for i in identity_issues(day) if i["code"] == code and i["cleared_at"] is None]


def _alerts(day: Day, rule: str) -> list[dict[str, Any]] | None:
    """The console's live alerts of ``rule`` for the soak store (``GET /api/alerts``); None if it does not answer."""
    try:
        with day.rig.console() as http:
            r = http.get("/api/alerts", params={"store": STORE})
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    return [a for a in r.json() if a.get("rule") == rule]


def _expect(day: Day, what: str, probe: Any, holds: Any, within: float = SHOW_WITHIN, **ids: Any) -> bool:
    return expect(day, what, probe, holds, within, row=rows.IDENTITY, **ids)


# A second PC with the store's id -----------------------------------------------------------

def second_pc(day: Day, hold: float) -> None:
    """A second ``edge-agent run`` as the store for ``hold`` s, selling; seen, stopped, cleared (see above)."""
    d = day
    d.ledger.faults["second PC with the same store id"] += 1
    pc = d.rig.second_pc()  # its disk and catalog first: the pause below lasts only while it runs
    d.outages.begin("second-pc")
    with d.downlink:
        pass  # the hub actor's step in flight, if any, has ended: nothing more goes down until the PC is gone
    try:
        pc.start(timeout=120)
    except AssertionError as err:
        d.checks.fail(rows.IDENTITY, "second PC: edge-agent run with the store's devices.yaml starts", "READY=1",
                      str(err)[-400:])
        d.outages.end("second-pc")
        return
    started = time.monotonic()
    rng = d.rng("second-pc")
    sold = 0
    with d.rig.client("kiosk-1", agent=pc) as kiosk:
        sold += _sell(d, kiosk, rng)
        _expect(d, "second PC: the hub's identity has an open duplicate_store", lambda: _open(d, "duplicate_store"),
                bool)
        _expect(d, "second PC: the soak agent's /v1/health names duplicate_store or mqtt_session_taken_over",
                lambda: health(d), lambda h: bool(set(codes(h)) & set(TAKEOVER_CODES)))
        _expect(d, "second PC: the hub console has a live duplicate-store alert",
                lambda: _alerts(d, "duplicate-store"), lambda a: bool(a and any(x["active"] for x in a)))
        every = max(1.0, hold / (SECOND_PC_SALES + 1))
        tries = 1
        while tries < SECOND_PC_SALES or time.monotonic() - started < hold:
            if d.stop.wait(every):
                break
            sold += _sell(d, kiosk, rng)
            tries += 1
    d.checks.check(rows.IDENTITY, sold > 0, "second PC: its sales answered 201 (they join the ledger)", "> 0",
                   f"{sold} of {tries}")
    drains(d, "the second PC's sales (its own /v1/health)", DRAIN_WITHIN, agent=pc)
    try:
        code: Any = pc.stop(timeout=60)
    except subprocess.TimeoutExpired:
        code = "no exit within 60 s of SIGTERM"
    pc.close()
    d.rig.second = None
    d.checks.check(rows.IDENTITY, code == 0, "second PC: edge-agent exits 0 on SIGTERM", 0, code)
    _expect(d, "second PC stopped: the hub clears duplicate_store", lambda: _open(d, "duplicate_store"), lambda o: not o)
    _expect(d, "second PC stopped: the soak agent's /v1/health drops duplicate_store and mqtt_session_taken_over",
            lambda: health(d), lambda h: h is not None and not set(codes(h)) & set(TAKEOVER_CODES))
    _expect(d, "second PC stopped: the console's duplicate-store alert is no longer live",
            lambda: _alerts(d, "duplicate-store"), lambda a: a is not None and not any(x["active"] for x in a))
    _expect(d, "second PC stopped: the soak agent holds the session (/v1/health hub online)", lambda: health(d),
            lambda h: h is not None and h.get("hub") == "online")
    if d.fleet.pushed:
        _took_no_version(d, pc)
    d.outages.end("second-pc")  # the session is the soak agent's alone again: the downlink goes on
    drains(d, "the second PC's stay", DRAIN_WITHIN)


def _took_no_version(d: Day, pc: Any) -> None:
    """The hub's version, retained on the store's topic, reached the second PC at connect: it held it, its
    devices.yaml is the one it started with, and the hub's word from the store is the soak agent's."""
    d.checks.check(rows.IDENTITY, re.search(r"config: hub version \d+ held: ", pc.log()) is not None,
                   "second PC: it held the hub's retained version (its log says so)", "held", pc.log()[-300:])
    d.checks.check(rows.IDENTITY, pc.config_path.read_text() == yaml.safe_dump(pc.config, allow_unicode=True),
                   "second PC: its devices.yaml is the one it started with", "unchanged", "rewritten")
    _expect(d, "second PC stopped: the hub's config status is the soak agent's alone, its version in force",
            d.fleet.status, lambda st: st is not None and not st.others and st.in_force == d.fleet.version,
            version=d.fleet.version)


def _sell(day: Day, kiosk: httpx.Client, rng: Any) -> int:
    """One sale at the second PC; 1 if it answered 201 (then it is in the ledger), else 0 and a violation."""
    body = {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": rng.choice(SKUS), "qty": 1}],
            "payment": {"method": "cash", "reference": "SOAK-SECOND-PC"}}
    r = call(day, kiosk, "POST", "/v1/sales", json=body)
    if not day.checks.check(rows.ANSWERS, r.status_code == 201, "second PC: a sale answered 201", 201,
                            f"{r.status_code}: {r.text[:300]}"):
        return 0
    with day.ledger.lock:
        day.ledger.elsewhere[r.json()["sale_id"]] = r.json()
    day.ledger.did("sales at the second PC")
    return 1


# An old PC's stale event ---------------------------------------------------------------------

def stale_event(day: Day, hold: float) -> None:
    """Publish one event at a position the hub holds (the soak agent's current stream); seen as a conflict."""
    d = day
    d.ledger.faults["an old PC's stale event"] += 1
    held = _latest_sale(d)
    if held is None:
        return
    stream, seq, data = held
    kept = next(c[0] for c in _ids(d, stream, seq))
    event = {"specversion": "1.0", "id": f"old-pc-{uuid.uuid4()}", "source": StoreTopics(STORE).source,
             "type": "retail.sale.completed", "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
             "datacontenttype": "application/json", "seq": seq, "stream": stream,
             "data": {**data, "sale_id": f"OLD-PC-{uuid.uuid4().hex[:8]}", "client_sale_id": str(uuid.uuid4()),
                      "injected": "soak: an old PC's stale event, no sale of this store"}}
    d.injected.append(event)
    got = _publish(d, event)
    if not d.checks.check(rows.IDENTITY, got is None, "stale event: the broker takes it", "published", got):
        return
    ids = {"stream": stream[:8], "seq": seq, "event": event["id"]}
    _expect(d, "stale event: the hub's conflicts hold it whole", lambda: _conflict(d, event),
            lambda c: c is not None and c.get("kept_id") == kept and whole(c["event"], event), **ids)
    _expect(d, "stale event: the hub's identity has an open stream_conflict for the stream",
            lambda: _open(d, "stream_conflict"), lambda o: any(i["subject"] == stream for i in o), **ids)
    _expect(d, "stale event: edge-hub stores --db shows conflicts 1 for the store", lambda: _stores_cli(d),
            lambda row: bool(row) and row.get("CONFLICTS") == "1", **ids)
    _expect(d, "stale event: the hub console has a live stream-conflict alert",
            lambda: _alerts(d, "stream-conflict"), lambda a: bool(a and any(x["active"] for x in a)), **ids)
    day.stop.wait(hold)


def _latest_sale(day: Day) -> tuple[str, int, dict] | None:
    """(stream, seq, data) at the hub of the newest sale of the agent's current run, once the hub has one."""
    d = day
    deadline = time.monotonic() + DRAIN_WITHIN
    while time.monotonic() < deadline:
        mine = {s.sale_id: s.at for s in d.ledger.sales_list() if s.incarnation == d.rig.incarnation}
        at_hub = [(mine[data["sale_id"]], stream, seq, data) for stream, seq, type_, data in hub_events(d.rig.hub_db)
                  if type_ == "retail.sale.completed" and data.get("sale_id") in mine]
        if at_hub:
            _, stream, seq, data = max(at_hub, key=lambda x: x[0])
            return stream, seq, data
        time.sleep(0.5)  # a poll interval: the kiosks sell, the outbox drains
    d.checks.fail(rows.IDENTITY, "stale event: a sale of the agent's current run at the hub to stand in for",
                  f"within {DRAIN_WITHIN:.0f} s", "none", incarnation=d.rig.incarnation)
    return None


def _ids(day: Day, stream: str, seq: int) -> list[tuple[str]]:
    return hub_read(day.rig.hub_db, "SELECT id FROM events WHERE store = ? AND stream = ? AND seq = ?",
                    (STORE, stream, seq))


def _publish(day: Day, event: dict) -> str | None:
    """Publish ``[event]`` on the store's events topic at QoS 1 as a client of its own; None once the
    broker took it, else why not."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-old-pc-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    try:
        client.connect("127.0.0.1", day.rig.broker.port)
        client.loop_start()
        info = client.publish(StoreTopics(STORE).events, json.dumps([event]).encode(), qos=1)
        info.wait_for_publish(30)
        return None if info.is_published() else "not acknowledged by the broker within 30 s"
    except (OSError, RuntimeError, ValueError) as err:
        return repr(err)
    finally:
        client.loop_stop()
        client.disconnect()


def _conflict(day: Day, event: dict) -> dict | None:
    return next((c for c in hub_conflicts(day.rig.hub_db) if c["id"] == event["id"]), None)


def whole(stored: dict, sent: dict) -> bool:
    """The hub kept the event as sent: every field, the time as the same instant."""
    times = (stored.get("time"), sent.get("time"))
    rest = ({k: v for k, v in stored.items() if k != "time"}, {k: v for k, v in sent.items() if k != "time"})
    try:
        same_time = datetime.fromisoformat(str(times[0])) == datetime.fromisoformat(str(times[1]))
    except ValueError:
        return False
    return same_time and rest[0] == rest[1]


def _stores_cli(day: Day) -> dict[str, str] | None:
    """The soak store's line of the real ``edge-hub stores --db`` table, by column header."""
    out = subprocess.run([sys.executable, "-m", "sync.hub", "stores", "--db", f"sqlite:///{day.rig.hub_db}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return {"exit": str(out.returncode), "stderr": out.stderr[-300:]}
    return store_line(out.stdout, STORE)


def store_line(table: str, store: str) -> dict[str, str] | None:
    """``store``'s line of an ``edge-hub stores`` table as {column header: cell}, or None."""
    lines = table.splitlines()
    if not lines:
        return None
    header = lines[0]  # columns are left-justified and two spaces apart; "OPEN GAPS" has one inside
    starts = [0, *(m.start() for m in re.finditer(r"(?<=  )\S", header))]
    row = next((ln for ln in lines[1:] if ln.split() and ln.split()[0] == store), None)
    if row is None:
        return None
    bounds = [*starts, max(len(header), len(row)) + 1]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(bounds, bounds[1:])}
