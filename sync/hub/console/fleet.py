"""The console's picture of every store, in memory: last status, health snapshot, raised device alerts,
open identity issues, and since when its devices.yaml has drifted.

The hub worker thread calls ``apply`` after each commit (sync/hub/observe.py);
the console reads from its own thread. A store's facts are a frozen object
replaced whole on every change, so a reader never sees half an update and
needs no lock; the lock only guards the dicts being replaced. Each store has
a version, bumped on change: summaries are cached until the next one, and
listeners (the live stream) are told which stores changed.

``desired_configs`` reads the hub's side of every store's devices.yaml from
the database (the newest version pushed, the store's word on the newest it
answered about): what the fleet view needs to say a version is pending or
was refused, which no snapshot says.

Drift (a local edit of the devices.yaml the hub sent) is in the snapshot as
a flag only; when the hub first saw it is kept here and added to the
summary's ``config`` as ``drift_since``. A hub that restarts knows no better
than the last snapshot's time (the flag was up then, at the latest).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sync.console.facts import StoreFacts, config, summarize
from sync.hub.db import HubDB, now_iso
from sync.hub.fleet import desired
from sync.hub.observe import Changes

log = logging.getLogger("sync.hub.console")


@dataclass(slots=True)
class FleetChange:
    """Stores whose facts changed, and command answers that came in."""

    stores: set[str] = field(default_factory=set)
    commands: list[dict[str, Any]] = field(default_factory=list)


class Fleet:
    """Every store the hub has heard from, by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._facts: dict[str, StoreFacts] = {}
        self._versions: dict[str, int] = {}
        self._summaries: dict[str, tuple[int, dict[str, Any]]] = {}
        self._listeners: list[Callable[[FleetChange], None]] = []
        self._drift_since: dict[str, str] = {}  # store -> when its config was first seen drifted
        self.version = 0
        self.updates = 0  # store updates applied since start (metrics)

    def subscribe(self, listener: Callable[[FleetChange], None]) -> None:
        """Call ``listener`` (from the thread that changed the fleet) after every change."""
        self._listeners.append(listener)

    def load(self, db: HubDB) -> int:
        """The last status and health of every store from the database (what a restarted hub shows first)."""
        rows = db.query("SELECT store, status, status_version, status_since, health, health_at FROM stores")
        loaded = 0
        with self._lock:
            for store, status, version, since, health, health_at in rows:
                if store in self._facts:
                    continue  # the worker was faster: its news is newer than the table's
                try:
                    snap = json.loads(health) if health else None
                except ValueError:
                    snap = None
                snap = snap if isinstance(snap, dict) else None
                self._put(StoreFacts(store, status, since, version, snap, health_at))
                self._note_drift(store, snap, health_at)
                loaded += 1
        return loaded

    def _put(self, facts: StoreFacts) -> None:
        self._facts[facts.store] = facts
        self.version += 1
        self._versions[facts.store] = self.version

    def _note_drift(self, store: str, health: dict[str, Any] | None, at: str | None) -> None:
        """Remember when a store's config was first seen drifted; forget it once the snapshot says no drift."""
        c = config(health)
        if c is not None and c["drift"]:
            self._drift_since.setdefault(store, at or now_iso())
        else:
            self._drift_since.pop(store, None)

    def apply(self, changes: Changes) -> None:
        """What the worker committed (its thread): new status and health, command answers."""
        change = FleetChange(commands=list(changes.commands))
        at = now_iso()
        with self._lock:
            for store, st in changes.status.items():
                old = self._facts.get(store) or StoreFacts(store)
                # Offline again (a retained Will redelivered): it has been offline since the first one.
                since = old.presence_since if old.presence == st["state"] == "offline" else st["since"]
                self._put(replace(old, presence=st["state"], presence_since=since,
                                  version=st["version"] or old.version))
                change.stores.add(store)
            for store, snap in changes.health.items():
                old = self._facts.get(store) or StoreFacts(store)
                self._put(replace(old, health=snap, health_at=at))
                self._note_drift(store, snap, at)
                change.stores.add(store)
            self.updates += len(change.stores)
        self._tell(change)

    def set_device_alerts(self, by_store: dict[str, tuple[dict[str, Any], ...]]) -> None:
        """The raised device alerts of every store (from the database; any worker may have stored them)."""
        self._set_from_db("device_alerts", by_store)

    def set_identity(self, by_store: dict[str, tuple[dict[str, Any], ...]]) -> None:
        """The open identity issues of every store (from the database: the worker that noticed one stored it)."""
        self._set_from_db("identity", by_store)

    def _set_from_db(self, name: str, by_store: dict[str, tuple[dict[str, Any], ...]]) -> None:
        """Replace one tuple field of every store's facts; stores not in ``by_store`` get an empty one."""
        change = FleetChange()
        with self._lock:
            for store in set(by_store) | {s for s, f in self._facts.items() if getattr(f, name)}:
                rows = by_store.get(store, ())
                old = self._facts.get(store) or StoreFacts(store)
                if getattr(old, name) != rows:
                    self._put(replace(old, **{name: rows}))
                    change.stores.add(store)
        if change.stores:
            self._tell(change)

    def _tell(self, change: FleetChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the worker
                log.exception("a fleet listener failed")

    def facts(self) -> list[StoreFacts]:
        """Every store's facts, by id."""
        with self._lock:
            return [self._facts[s] for s in sorted(self._facts)]

    def get(self, store: str) -> StoreFacts | None:
        """One store's facts, or None."""
        return self._facts.get(store)

    def __len__(self) -> int:
        return len(self._facts)

    def summary(self, store: str) -> dict[str, Any] | None:
        """The fleet view's line of a store, computed once per version."""
        with self._lock:
            facts, version = self._facts.get(store), self._versions.get(store, 0)
            cached = self._summaries.get(store)
        if facts is None:
            return None
        if cached is not None and cached[0] == version:
            return cached[1]
        s = summarize(facts)
        if s["config"] is not None:
            s["config"]["drift_since"] = self._drift_since.get(store) if s["config"]["drift"] else None
        with self._lock:
            self._summaries[store] = (version, s)
        return s

    def summaries(self) -> list[dict[str, Any]]:
        """Every store's line, by id."""
        with self._lock:
            ids = sorted(self._facts)
        return [s for i in ids if (s := self.summary(i)) is not None]


def desired_configs(db: HubDB) -> dict[str, dict[str, Any]]:
    """Every store with a devices.yaml version pushed (``edge-hub config push``): ``desired`` (the newest),
    ``answered`` and ``state`` (the newest version it answered about and what it said; None before any word)."""
    out: dict[str, dict[str, Any]] = {
        store: {"desired": int(v), "answered": None, "state": None}
        for store, v in db.query("SELECT store, max(version) FROM desired_configs GROUP BY store")}
    for store, said in desired.answers(db, newest_only=True).items():
        if store in out and said:
            out[store].update(answered=said[-1].version, state=said[-1].state)
    return out
