"""What the hub worker notices besides storing events, for the health console.

From each health snapshot, the devices whose state changed since the last
one become ``device_states`` rows (the 24-hour timeline); from each events
batch, the ``retail.device.alert`` events become ``device_alerts`` rows (the
store's own alerts: paper out, labels, the link; one per device, code and
subject, as the agent keeps them). Both are written in the
worker's transaction, so they are as durable as the snapshot and the events.

After the commit, ``committed()`` hands what changed (status, health, command
answers) to a listener, the console's in-memory fleet, in one call per group:
the worker thread pays a dict update per message, never an HTTP client.
Everything here reads payloads defensively: a store's snapshot is data from
the field, and a field missing or of the wrong type is skipped, not fatal.
How a snapshot becomes timeline rows and how an alert is keyed are shared
with the agent's console (sync/console/timeline.py, facts.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.console.facts import alert_device
from sync.console.timeline import StateRow, device_rows, utc_iso
from sync.hub.db import Tx, now_iso
from sync.hub.ingest import EventRow

log = logging.getLogger("sync.hub")

ALERT_EVENT = "retail.device.alert"
Op = Callable[[Tx], Any]


@dataclass(slots=True)
class Changes:
    """What one committed group changed, for the console."""

    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    device_alerts: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.status or self.health or self.commands or self.device_alerts)


def alert_rows(rows: Sequence[EventRow]) -> list[tuple[int, dict[str, Any], str | None]]:
    """(seq, data, time) of the device alerts in a batch; other events are skipped by type alone."""
    out = []
    for r in rows:
        if r.type != ALERT_EVENT:
            continue
        try:
            data = json.loads(r.event).get("data")
        except (ValueError, AttributeError):
            continue
        if isinstance(data, dict):
            out.append((r.seq, data, r.time))
    return out


def _text(v: Any, limit: int, default: str | None = None) -> str | None:
    return v[:limit] if isinstance(v, str) and v else default


class Observer:
    """Timeline and device-alert rows for the worker's transaction, and changes for a listener."""

    def __init__(self, listener: Callable[[Changes], None] | None = None):
        self.listener = listener
        # (store, device) -> (state, since) as last recorded: only changes become rows.
        self._recorded: dict[tuple[str, str], tuple[str, str]] = {}
        self._pending = Changes()
        self._pending_rows: list[StateRow] = []

    def status(self, store: str, state: str, version: str | None, since: str) -> None:
        """A status message was planned."""
        if self.listener is not None:
            self._pending.status[store] = {"state": state, "version": version, "since": since, "at": now_iso()}

    def health(self, store: str, snap: dict[str, Any]) -> Op | None:
        """A health snapshot was planned: the op recording its devices' state changes, if any."""
        if self.listener is not None:
            self._pending.health[store] = snap
        changed = [r for r in device_rows(store, snap) if self._is_change(r)]
        if not changed:
            return None
        self._pending_rows.extend(changed)
        now = now_iso()

        def op(tx: Tx) -> None:
            # ON CONFLICT: every worker sees every snapshot, so a change may come twice; and two
            # states can share a millisecond (starting -> online): the later snapshot's wins.
            tx.executemany(
                "INSERT INTO device_states (store, device, since, state, kind, last_error, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, device, since) DO UPDATE SET "
                "state = excluded.state, last_error = excluded.last_error",
                [(r.store, r.device, r.since, r.state, r.kind, r.last_error, now) for r in changed])
        return op

    def _is_change(self, row: StateRow) -> bool:
        last = self._recorded.get((row.store, row.device))
        if last is None:
            return True  # first sight in this process: the database's key makes a repeat harmless
        if last[0] != row.state:
            return True
        # Same state with a new since: a new episode of offline or error is worth a row;
        # online -> online is the end of a busy spell (or a blip too short to matter).
        return last[1] != row.since and row.state != "online"

    def command(self, id: str, store: str, ok: bool, result: Any, error: str | None) -> None:
        """A command answer was planned."""
        if self.listener is not None:
            self._pending.commands.append({"id": id, "store": store, "ok": ok, "result": result, "error": error})

    def events(self, store: str, rows: Sequence[EventRow]) -> Op | None:
        """A batch was planned: the op recording its device alerts, if it has any."""
        alerts = alert_rows(rows)
        if not alerts:
            return None
        if self.listener is not None:
            self._pending.device_alerts.add(store)
        now = now_iso()
        params = []
        # Before alerts were kept per subject, one row held every label of a device: the first
        # label put right closes that row too, so that it does not stay raised forever.
        legacy = []
        stream = rows[0].stream if rows else ""  # a batch is of one stream
        for seq, data, time in alerts:
            state = "cleared" if data.get("state") == "cleared" else "raised"
            device, code = alert_device(data), _text(data.get("code"), 64, "unknown")
            at = utc_iso(time) or now
            params.append((store, device, code, state,
                           _text(data.get("severity"), 16), _text(data.get("message"), 500), seq, at, now, stream))
            plain = _text(data.get("device"), 64, "?")
            if state == "cleared" and device != plain:
                legacy.append((now, store, plain, code, stream, seq, stream, at))

        def op(tx: Tx) -> None:
            # The later event wins: a raise and its clear may be stored by two workers in either
            # order. Within one stream (one run of the store's database) the later seq; across
            # streams (seq starts again with each run) the later time by the store's clock.
            tx.executemany(
                "INSERT INTO device_alerts (store, device, code, state, severity, message, seq, time, received_at, "
                "stream) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, device, code) DO UPDATE SET "
                "state = excluded.state, severity = excluded.severity, message = excluded.message, "
                "seq = excluded.seq, time = excluded.time, received_at = excluded.received_at, stream = excluded.stream "
                "WHERE (coalesce(device_alerts.stream, '') = excluded.stream AND excluded.seq > device_alerts.seq) "
                "OR (coalesce(device_alerts.stream, '') <> excluded.stream "
                "AND (device_alerts.time IS NULL OR excluded.time > device_alerts.time))", params)
            if legacy:
                tx.executemany("UPDATE device_alerts SET state = 'cleared', received_at = ? WHERE store = ? "
                               "AND device = ? AND code = ? AND state = 'raised' AND ((coalesce(stream, '') = ? "
                               "AND seq < ?) OR (coalesce(stream, '') <> ? AND time < ?))", legacy)
        return op

    def committed(self) -> None:
        """The group is durable: remember what was recorded and tell the listener."""
        if not self._pending_rows and not self._pending:
            return  # the usual group: events only
        for r in self._pending_rows:
            self._recorded[(r.store, r.device)] = (r.state, r.since)
        self._pending_rows = []
        changes, self._pending = self._pending, Changes()
        if self.listener is not None and changes:
            try:
                self.listener(changes)
            except Exception:  # noqa: BLE001 - the console must never stop the ingest
                log.exception("the console could not take a change; the hub goes on storing events")

    def abandoned(self) -> None:
        """The group was not stored (the hub is stopping): forget it; the broker delivers it again."""
        self._pending_rows = []
        self._pending = Changes()
