"""The console's reads of the hub database: device timelines, device alerts, identity issues, commands;
and pruning.

The worker writes ``device_states`` and ``device_alerts`` (sync/hub/observe.py),
``identity``, ``conflicts`` and ``commands`` (sync/hub/db.py); this module
only reads them, marks commands that got no answer, and deletes what is too
old to show. The timeline's bars are drawn as on the agent (sync/console/timeline.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sync.console.timeline import segments
from sync.hub.console.alerts import iso
from sync.hub.db import HubDB, Tx

KEEP_STATES = timedelta(days=8)   # the page shows 24 h; a week more for questions after the fact
KEEP_ALERTS = timedelta(days=90)
KEEP_COMMANDS = timedelta(days=30)
STALE_COMMAND = timedelta(hours=1)
_DEVICE_ALERT_COLS = ("store", "device", "code", "state", "severity", "message", "seq", "time", "received_at")
_COMMAND_COLS = ("id", "store", "device", "action", "args", "sent_at", "state", "result", "error", "answered_at")


def timeline(db: HubDB, store: str, now: datetime, hours: float = 24) -> dict[str, Any]:
    """Each device's states over the last ``hours``: ``{"from", "to", "devices": {id: [segments]}}``.

    A segment is ``{state, since, until, last_error}``, ``until`` None for the
    current one; the state a device was in when the window opened starts it.
    """
    start = iso(now - timedelta(hours=hours))
    inside = db.query("SELECT device, since, state, kind, last_error FROM device_states "
                      "WHERE store = ? AND since >= ? ORDER BY device, since", (store, start))
    before = db.query(
        "SELECT d.device, d.since, d.state, d.kind, d.last_error FROM device_states d WHERE d.store = ? AND d.since = "
        "(SELECT max(since) FROM device_states e WHERE e.store = d.store AND e.device = d.device AND e.since < ?)",
        (store, start))
    return {"from": start, "to": iso(now), "devices": segments(sorted(before) + list(inside), start)}


def raised_device_alerts(db: HubDB) -> dict[str, tuple[dict[str, Any], ...]]:
    """Every store's device alerts that are raised and not cleared."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in db.query(f"SELECT {', '.join(_DEVICE_ALERT_COLS)} FROM device_alerts WHERE state = 'raised'"):
        out.setdefault(r[0], []).append(dict(zip(_DEVICE_ALERT_COLS, r)))
    return {k: tuple(v) for k, v in out.items()}


# An identity issue's alert has the subject ``code/subject`` (rules.py StoreIdentityRule); the
# latest time such an alert was resolved tells the rule that staff have seen the issue as it is.
_OPEN_IDENTITY = (
    "SELECT i.store, i.code, i.subject, i.detail, i.first_at, i.last_at, i.count, "
    "(SELECT max(a.resolved_at) FROM alerts a WHERE a.store = i.store AND a.subject = i.code || '/' || i.subject "
    "AND a.resolved_at IS NOT NULL) FROM identity i WHERE i.cleared_at IS NULL ORDER BY i.store, i.first_at")
_IDENTITY_COLS = ("code", "subject", "detail", "first_at", "last_at", "count", "handled_at")
MAX_IDENTITY_PER_STORE = 100
_CONFLICT_COLS = ("stream", "seq", "id", "kept_id", "type", "received_at")


def open_identity(db: HubDB) -> dict[str, tuple[dict[str, Any], ...]]:
    """Every store's identity issues not cleared (at most 100 a store, oldest first), each with
    ``handled_at``: when staff last resolved its alert (None: never)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in db.query(_OPEN_IDENTITY):
        rows = out.setdefault(r[0], [])
        if len(rows) < MAX_IDENTITY_PER_STORE:
            rows.append(dict(zip(_IDENTITY_COLS, (*r[1:6], int(r[6]), r[7]))))
    return {k: tuple(v) for k, v in out.items()}


def identity(db: HubDB, store: str, limit: int = 20) -> dict[str, Any]:
    """A store's identity for its page: ``issues`` (open and cleared, newest first), ``conflicts``
    (how many events were kept aside) with the latest ones (without their bodies), ``streams``."""
    issues = [{"code": i.code, "subject": i.subject, "detail": i.detail, "first_at": i.first_at,
               "last_at": i.last_at, "count": i.count, "cleared_at": i.cleared_at}
              for i in db.identity_issues(store)[:50]]
    n = db.query("SELECT count(*) FROM conflicts WHERE store = ?", (store,))
    latest = db.query(f"SELECT {', '.join(_CONFLICT_COLS)} FROM conflicts WHERE store = ? "
                      "ORDER BY received_at DESC, stream, seq LIMIT ?", (store, limit))
    streams = db.query("SELECT count(*) FROM streams WHERE store = ?", (store,))
    return {"issues": issues, "conflicts": int(n[0][0]),
            "latest_conflicts": [dict(zip(_CONFLICT_COLS, r)) for r in latest], "streams": int(streams[0][0])}


def device_alerts(db: HubDB, store: str, limit: int = 100) -> list[dict[str, Any]]:
    """A store's device alerts, raised or cleared, newest first."""
    rows = db.query(f"SELECT {', '.join(_DEVICE_ALERT_COLS)} FROM device_alerts WHERE store = ? "
                    "ORDER BY seq DESC LIMIT ?", (store, limit))
    return [dict(zip(_DEVICE_ALERT_COLS, r)) for r in rows]


def command_dict(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``commands`` row with its JSON columns decoded."""
    if row is None:
        return None
    out = dict(row)
    for key in ("args", "result"):
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except ValueError:
                pass  # a result that is not JSON is shown as the text it is
    return out


def commands(db: HubDB, store: str, limit: int = 20) -> list[dict[str, Any]]:
    """A store's latest commands, newest first."""
    rows = db.query(f"SELECT {', '.join(_COMMAND_COLS)} FROM commands WHERE store = ? "
                    "ORDER BY sent_at DESC LIMIT ?", (store, limit))
    return [command_dict(dict(zip(_COMMAND_COLS, r))) for r in rows]  # type: ignore[misc]


def mark_timeout(tx: Tx, cmd_id: str, seconds: float, now: datetime) -> bool:
    """A command still unanswered after ``seconds``: state ``timeout``; False if it was answered meanwhile."""
    cur = tx.execute("UPDATE commands SET state = 'timeout', error = ?, answered_at = ? WHERE id = ? AND state = 'sent'",
                     (f"no answer within {seconds:g} s", iso(now), cmd_id))
    return cur.rowcount == 1


def prune(tx: Tx, now: datetime) -> None:
    """Delete timeline rows, resolved alerts and commands past their keeping time; time out orphans.

    The newest row of each device is kept however old: it is the state the
    device is in, and the timeline starts from it.
    """
    tx.execute("DELETE FROM device_states WHERE recorded_at < ? AND since < (SELECT max(since) FROM device_states e "
               "WHERE e.store = device_states.store AND e.device = device_states.device)", (iso(now - KEEP_STATES),))
    tx.execute("DELETE FROM alerts WHERE active_key IS NULL AND resolved_at < ?", (iso(now - KEEP_ALERTS),))
    tx.execute("DELETE FROM commands WHERE sent_at < ?", (iso(now - KEEP_COMMANDS),))
    # Whoever waited for these is gone (a hub restarted, a CLI killed); the broker dropped them long ago.
    tx.execute("UPDATE commands SET state = 'timeout', error = 'no answer (nobody was waiting any more)' "
               "WHERE state = 'sent' AND sent_at < ?", (iso(now - STALE_COMMAND),))
