"""Staged rollouts of a release: a canary store, then a share, then all; halted and rolled back when updated stores get worse.

``edge-hub rollout start VERSION --base-url URL --manifest-sha256 HEX`` (or
``--releases DIR``, the hub's bundles, where the hashes are read) plans
the waves (``--waves 1,25%,100%``: the canary, then a quarter of the stores,
then all; each a count or a share of the stores, counted from the start) and
asks the first wave for the release on ``hub/{store}/update`` (QoS 1,
retained: ``DesiredRelease``). The engine (``tick``, run by every
``edge-hub run`` about once a second from sync/hub/service.py, and with
nothing but the tables as its memory, so a restarted hub carries on) moves
a rollout on:

- the next wave is asked once every store of the current one said
  ``healthy`` for the version on ``edge/{store}/update/res`` and then stayed
  no worse for ``soak_s``;
- it halts by itself when a store it asked gets worse: its health snapshot
  is ``degraded`` with a reason it did not have when it was asked, it is
  offline for longer than ``grace_s``, or it answers ``rolled_back``,
  ``failed`` or ``refused``. Then it rolls back: every store it asked is
  asked for the release it ran before (the same message naming the earlier
  version; the store may have gone back by itself already), and the stores of
  later waves are never touched.

``halt`` (an operator's pause, no rollback), ``resume`` and ``rollback`` are
the operator's; every action is kept in ``rollout_actions`` with who did it.
A message is marked sent only once handed to the broker: one that could not
go (the broker down, the hub stopped in between) is sent by the next tick.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import math
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from sync.hub.broker import BrokerURL, make_client, parse_broker_url
from sync.hub.db import HubDB, Tx, open_db
from sync.hub.publish import DownlinkError
from sync.topics import MAX_MANIFEST_BYTES, VERSION_PATTERN, DesiredRelease, StoreTopics, UpdateResult, hub_topic

log = logging.getLogger("sync.hub.rollout")

_OK, _FAIL, _USAGE = 0, 1, 2
RUNNING, HALTED, DONE = "running", "halted", "done"
ENGINE = "edge-hub (automatic)"
# What a store says of the release that makes the rollout halt.
WORSE_STATES = ("rolled_back", "failed", "refused")
MAX_WAVES = 20
MAX_STORES = 100_000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(VERSION_PATTERN)
PublishFn = Callable[[str, bytes], bool]  # (topic, payload) -> handed to the broker


class RolloutError(ValueError):
    """A rollout that cannot be started or acted on as asked; the message says why and what to do."""


# Plans ----------------------------------------------------------------------------------

def parse_waves(spec: str) -> list[str]:
    """``1,25%,100%`` as a list; each a count of stores or a share of them (cumulative)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts or len(parts) > MAX_WAVES:
        raise RolloutError(f"--waves {spec!r}: give 1 to {MAX_WAVES} waves, e.g. 1,25%,100%")
    for p in parts:
        m = re.fullmatch(r"([0-9]{1,6})(%?)", p)
        if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(1)) > 100):
            raise RolloutError(f"--waves: {p!r} is neither a count of stores (1, 5) nor a share (25%, 100%)")
    return parts


def plan_waves(stores: list[str], canary: str, waves: list[str]) -> list[list[str]]:
    """The stores of each wave: the canary first, then the others by id; each wave's spec says how many
    stores have been asked once it starts; a wave that adds nobody is left out, and the last takes the rest."""
    order = [canary, *sorted(s for s in stores if s != canary)]
    out: list[list[str]] = []
    done = 0
    for spec in waves:
        want = math.ceil(len(order) * int(spec[:-1]) / 100) if spec.endswith("%") else int(spec)
        want = min(max(want, done), len(order))
        if want > done:
            out.append(order[done:want])
            done = want
    if done < len(order):
        out.append(order[done:])
    return out


@dataclass(frozen=True, slots=True)
class Release:
    """A release as a store is asked for it: version, bundle URL, manifest hash."""

    version: str
    base_url: str
    manifest_sha256: str


def manifest_sha256(releases: Path, version: str) -> str | None:
    """The SHA-256 of ``releases/<version>/manifest.json`` (the hub's bundles, edge-hub release build), or None
    when there is no such bundle; RolloutError when it is not a manifest of that version."""
    if not _VERSION.match(version):
        return None  # never a path of anything but a version
    path = releases / version / "manifest.json"
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise RolloutError(f"{path}: {err.strerror or err}") from err
    try:
        said = json.loads(data).get("version") if len(data) <= MAX_MANIFEST_BYTES else None
    except (ValueError, AttributeError):
        said = None
    if said != version:
        raise RolloutError(f"{path} is not the manifest of release {version}; edge-hub release build makes one")
    return hashlib.sha256(data).hexdigest()


def _previous_releases(db: HubDB, version: str, base_url: str, given: dict[str, str],
                       running: Iterable[str], releases: Path | None) -> dict[str, Release]:
    """Every release the hub can ask a store to go back to: those of earlier rollouts, ``given`` (version ->
    manifest hash) and those of ``running`` found in ``releases``; the bundles of the last two next to the
    new one's."""
    known: dict[str, Release] = {}
    for v, url, sha in db.query("SELECT version, base_url, manifest_sha256 FROM rollouts ORDER BY created_at"):
        known[v] = Release(v, url, sha)
    given = dict(given)
    for v in set(running) - set(known) - set(given) - {version}:
        if releases is not None and (sha := manifest_sha256(releases, v)) is not None:
            given[v] = sha
    suffix = f"/{version}/"
    for v, sha in given.items():
        if not base_url.endswith(suffix):
            raise RolloutError(f"--previous-manifest {v}=...: the bundle of {v} is looked for next to {version}'s, "
                               f"but --base-url does not end in {suffix}")
        known[v] = Release(v, base_url[: -len(suffix)] + f"/{v}/", sha)
    return known


def _health(raw: Any) -> dict[str, Any]:
    try:
        h = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return h if isinstance(h, dict) else {}


def _reason_keys(health: dict[str, Any]) -> set[str]:
    raw = health.get("reasons")
    if not isinstance(raw, list):
        return set()
    return {f"{r.get('code')}|{r.get('subject') or ''}" for r in raw[:100]
            if isinstance(r, dict) and isinstance(r.get("code"), str)}


def _reason_text(health: dict[str, Any], keys: Iterable[str]) -> str:
    wanted, out = set(keys), []
    for r in health.get("reasons") or []:
        if isinstance(r, dict) and f"{r.get('code')}|{r.get('subject') or ''}" in wanted:
            msg = r.get("message") if isinstance(r.get("message"), str) else ""
            out.append(" ".join(x for x in (str(r.get("code"))[:64], str(r.get("subject") or "")[:64],
                                            msg[:200]) if x))
    return "; ".join(out)


def start(db: HubDB, version: str, base_url: str, manifest_sha256: str, *, stores: str = "all",
          canary: str | None = None, waves: str = "1,25%,100%", soak_s: float = 600.0, grace_s: float = 600.0,
          by: str = "edge-hub", previous: dict[str, str] | None = None, releases: Path | None = None) -> str:
    """Plan a rollout and ask its first wave (marked to send); its id. RolloutError when it cannot start.

    A store is asked back, if need be, for the release it runs now: one an
    earlier rollout brought, one in ``previous`` (version -> manifest hash) or
    one whose bundle is in ``releases`` (the hub's directory of bundles).
    """
    try:
        DesiredRelease(version=version, base_url=base_url, manifest_sha256=manifest_sha256, rollout="r", by=by[:128])
    except ValueError as err:
        raise RolloutError(f"the release does not make a valid update message: {err}") from err
    if not (0 <= soak_s <= 7 * 86400) or not (0 < grace_s <= 7 * 86400):
        raise RolloutError("--soak-s is 0 to 604800 seconds and --grace-s 1 to 604800")
    specs = parse_waves(waves)
    known = {r[0]: r[1] for r in db.query("SELECT store, status_version FROM stores")}
    if stores == "all":
        chosen = sorted(s for s, v in known.items() if v)
        if not chosen:
            raise RolloutError("no store has told this hub which version it runs yet; nothing to roll out to")
    else:
        chosen = sorted({s.strip() for s in stores.split(",") if s.strip()})
        if not chosen or len(chosen) > MAX_STORES:
            raise RolloutError("--stores: give all, or store ids separated by commas")
        for s in chosen:
            StoreTopics(s)  # a bad store id stops here
        unknown = [s for s in chosen if not known.get(s)]
        if unknown:
            raise RolloutError(f"no version known for {', '.join(unknown[:10])}: a store must have reported to this "
                               "hub (its status names the version it runs) before a rollout can take it back")
    canary = canary or chosen[0]
    if canary not in chosen:
        raise RolloutError(f"--canary {canary} is not among the rollout's stores")
    back = _previous_releases(db, version, base_url, previous or {}, {known[s] for s in chosen}, releases)
    lacking = sorted({known[s] for s in chosen if known[s] != version and known[s] not in back})
    if lacking:
        raise RolloutError(f"stores run {', '.join(lacking)}, whose bundle this hub never rolled out, so it could not "
                           "ask them back; give --releases DIR holding it, or --previous-manifest VERSION=SHA256 "
                           "(of that version's manifest.json, served next to the new one) for each")
    plan = plan_waves(chosen, canary, specs)
    rid = f"r-{uuid.uuid4().hex[:12]}"
    with db.transaction() as tx:
        busy = tx.execute("SELECT rs.store, r.id FROM rollout_stores rs JOIN rollouts r ON r.id = rs.rollout "
                          "WHERE r.state = ?", (RUNNING,)).fetchall()
        clash = sorted({(s, r) for s, r in busy if s in set(chosen)})
        if clash:
            raise RolloutError(f"{clash[0][0]} is in rollout {clash[0][1]}, still running: halt it first "
                               f"({len(clash)} store(s) in running rollouts)")
        tx.execute("INSERT INTO rollouts (id, version, base_url, manifest_sha256, waves, plan, soak_s, grace_s, state, "
                   "wave, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                   (rid, version, base_url, manifest_sha256, ",".join(specs), json.dumps([len(w) for w in plan]),
                    float(soak_s), float(grace_s), RUNNING, tx.now, by, tx.now))
        for i, wave in enumerate(plan):
            for s in wave:
                prev = back.get(known[s]) if known[s] != version else None
                tx.execute("INSERT INTO rollout_stores (rollout, store, wave, previous, previous_base_url, "
                           "previous_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                           (rid, s, i, known[s], prev.base_url if prev else None, prev.manifest_sha256 if prev else None))
        _action(tx, rid, by, "start", f"{version} to {len(chosen)} store(s) in {len(plan)} wave(s) "
                f"({', '.join(str(len(w)) for w in plan)}), canary {canary}, soak {soak_s:g} s")
        _ask_wave(tx, rid, 0)
    return rid


def _action(tx: Tx, rid: str, by: str, action: str, detail: str) -> None:
    tx.execute("INSERT INTO rollout_actions (rollout, at, by_whom, action, detail) VALUES (?, ?, ?, ?, ?)",
               (rid, tx.now, by[:128], action, detail[:2000]))


def _ask_wave(tx: Tx, rid: str, wave: int) -> None:
    """Ask every store of ``wave`` for the rollout's release; its health reasons now are its baseline."""
    version = tx.execute("SELECT version FROM rollouts WHERE id = ?", (rid,)).fetchone()[0]
    rows = tx.execute("SELECT rs.store, s.health FROM rollout_stores rs LEFT JOIN stores s ON s.store = rs.store "
                      "WHERE rs.rollout = ? AND rs.wave = ?", (rid, wave)).fetchall()
    for store, health in rows:
        tx.execute("UPDATE rollout_stores SET asked = ?, asked_at = ?, sent_at = NULL, healthy_at = NULL, "
                   "baseline = ? WHERE rollout = ? AND store = ?",
                   (version, tx.now, json.dumps(sorted(_reason_keys(_health(health)))), rid, store))


# The stores' word ---------------------------------------------------------------------

def record_result(tx: Tx, store: str, res: UpdateResult) -> bool:
    """A store's word on a rollout (``edge/{store}/update/res``): the latest per store and rollout is kept.

    Only for a rollout the store is in: words about any other id (an update
    installed by hand, a made-up id) are not kept, so a store cannot fill the
    table. False when it was not kept.
    """
    cur = tx.execute(
        "INSERT INTO update_results (store, rollout, version, state, reason, running, at, received_at) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM rollout_stores WHERE rollout = ? AND store = ?) "
        "ON CONFLICT (store, rollout) DO UPDATE SET version = excluded.version, "
        "state = excluded.state, reason = excluded.reason, running = excluded.running, at = excluded.at, "
        "received_at = excluded.received_at",
        (store, res.rollout, res.version, res.state, res.reason, res.running, res.at.isoformat(), tx.now,
         res.rollout, store))
    return bool(cur.rowcount)


# The engine ---------------------------------------------------------------------------

def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _worse(row: dict[str, Any], version: str, grace_s: float, now: datetime) -> str | None:
    """Why an asked store is worse than before, or None."""
    store = row["store"]
    if row["res_state"] in WORSE_STATES and row["res_version"] == version:
        return f"{store} reported {row['res_state']}" + (f": {row['res_reason']}" if row["res_reason"] else "")
    health = _health(row["health"])
    if health.get("status") == "degraded":
        new = _reason_keys(health) - set(json.loads(row["baseline"] or "[]"))
        if new:
            return f"{store} degraded: {_reason_text(health, new) or ', '.join(sorted(new))}"
    since = _parse(row["status_since"])
    if row["status"] == "offline" and since is not None:
        asked = _parse(row["asked_at"])
        if (now - max(since, asked or since)).total_seconds() > grace_s:  # counted from the ask at the earliest
            return f"{store} offline since {since.isoformat(timespec='seconds')} (over the grace of {grace_s:g} s)"
    return None


def tick(db: HubDB, now: datetime | None = None) -> list[str]:
    """Move every running rollout on by one look; what it did, one line each (for the log)."""
    now = now or datetime.now(timezone.utc)
    done: list[str] = []
    for (rid,) in db.query("SELECT id FROM rollouts WHERE state = ? ORDER BY created_at", (RUNNING,)):
        with db.transaction() as tx:
            line = _step(tx, rid, now)
        if line:
            done.append(line)
    return done


def _step(tx: Tx, rid: str, now: datetime) -> str | None:
    r = tx.execute("SELECT version, soak_s, grace_s, wave, state FROM rollouts WHERE id = ?", (rid,)).fetchone()
    if r is None or r[4] != RUNNING:
        return None
    version, soak_s, grace_s, wave = r[0], float(r[1]), float(r[2]), int(r[3])
    cols = ("store", "wave", "asked", "asked_at", "healthy_at", "baseline", "res_version", "res_state", "res_reason",
            "running", "status", "status_since", "health")
    rows = [dict(zip(cols, x)) for x in tx.execute(
        "SELECT rs.store, rs.wave, rs.asked, rs.asked_at, rs.healthy_at, rs.baseline, u.version, u.state, u.reason, "
        "u.running, s.status, s.status_since, s.health FROM rollout_stores rs "
        "LEFT JOIN update_results u ON u.store = rs.store AND u.rollout = rs.rollout "
        "LEFT JOIN stores s ON s.store = rs.store WHERE rs.rollout = ? ORDER BY rs.wave, rs.store", (rid,)).fetchall()]
    asked = [x for x in rows if x["asked_at"] is not None and x["wave"] <= wave]
    for x in asked:
        why = _worse(x, version, grace_s, now)
        if why:
            n = _roll_back(tx, rid, ENGINE, f"halted by itself: {why}", if_running=True)
            if n < 0:
                return None
            return f"rollout {rid} of {version} halted: {why}; {n} store(s) asked for their previous version"
    current = [x for x in rows if x["wave"] == wave]
    for x in current:
        if x["healthy_at"] is None and x["res_state"] == "healthy" and x["res_version"] == version \
                and x["running"] == version:
            x["healthy_at"] = tx.now
            tx.execute("UPDATE rollout_stores SET healthy_at = ? WHERE rollout = ? AND store = ?", (tx.now, rid, x["store"]))
    times = [_parse(x["healthy_at"]) for x in current]
    if not current or any(t is None for t in times):
        return None
    if (now - max(t for t in times if t is not None)).total_seconds() < soak_s:
        return None
    last = int(tx.execute("SELECT max(wave) FROM rollout_stores WHERE rollout = ?", (rid,)).fetchone()[0])
    if wave >= last:
        if tx.execute("UPDATE rollouts SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
                      (DONE, tx.now, rid, RUNNING)).rowcount:
            _action(tx, rid, ENGINE, "done", f"every store healthy on {version}")
            return f"rollout {rid} of {version} done: every store healthy"
        return None
    if not tx.execute("UPDATE rollouts SET wave = ?, updated_at = ? WHERE id = ? AND wave = ? AND state = ?",
                      (wave + 1, tx.now, rid, wave, RUNNING)).rowcount:
        return None  # another hub worker moved it on first
    _ask_wave(tx, rid, wave + 1)
    n = sum(1 for x in rows if x["wave"] == wave + 1)
    _action(tx, rid, ENGINE, "wave", f"{wave + 2} of {last + 1} asked: {n} store(s), after wave {wave + 1} "
            f"soaked {soak_s:g} s")
    return f"rollout {rid} of {version}: wave {wave + 2} of {last + 1} started ({n} store(s))"


def _roll_back(tx: Tx, rid: str, by: str, why: str, *, if_running: bool = False) -> int:
    """Halt ``rid`` and ask every store it asked for its previous release; how many were asked (-1: it was
    not running and ``if_running`` asked for that: the engine's case, another hub worker halted it first)."""
    sql = "UPDATE rollouts SET state = ?, reason = ?, rolled_back_at = ?, updated_at = ? WHERE id = ?"
    if not tx.execute(sql + (" AND state = ?" if if_running else ""),
                      (HALTED, why[:2000], tx.now, tx.now, rid, *((RUNNING,) if if_running else ()))).rowcount:
        return -1
    rows = tx.execute("SELECT store, previous FROM rollout_stores WHERE rollout = ? AND asked_at IS NOT NULL "
                      "AND previous_base_url IS NOT NULL", (rid,)).fetchall()
    for store, previous in rows:
        tx.execute("UPDATE rollout_stores SET asked = ?, asked_at = ?, sent_at = NULL WHERE rollout = ? AND store = ?",
                   (previous, tx.now, rid, store))
    _action(tx, rid, by, "rollback", f"{why}; {len(rows)} store(s) asked for their previous version")
    return len(rows)


def pending(db: HubDB) -> list[tuple[str, str, str, bytes]]:
    """(rollout, store, asked, message) of every update asked and not yet handed to the broker."""
    rows = db.query("SELECT rs.rollout, rs.store, rs.asked, rs.previous, rs.previous_base_url, rs.previous_sha256, "
                    "r.version, r.base_url, r.manifest_sha256, r.created_by FROM rollout_stores rs "
                    "JOIN rollouts r ON r.id = rs.rollout WHERE rs.asked_at IS NOT NULL AND rs.sent_at IS NULL "
                    "ORDER BY rs.rollout, rs.store")
    out = []
    for rid, store, asked, prev, prev_url, prev_sha, version, url, sha, by in rows:
        if asked == version:
            msg = DesiredRelease(version=version, base_url=url, manifest_sha256=sha, rollout=rid, by=by[:128])
        elif asked == prev and prev_url and prev_sha:
            msg = DesiredRelease(version=prev, base_url=prev_url, manifest_sha256=prev_sha, rollout=rid, by=by[:128])
        else:
            continue
        out.append((rid, store, asked, msg.model_dump_json().encode()))
    return out


def send_pending(db: HubDB, publish: PublishFn) -> int:
    """Hand every pending update to ``publish`` (QoS 1, retained) and mark those it took as sent; how many."""
    sent = 0
    for rid, store, asked, payload in pending(db):
        if not publish(hub_topic(store, "update"), payload):
            break  # the broker is away: the next tick tries again
        with db.transaction() as tx:
            tx.execute("UPDATE rollout_stores SET sent_at = ? WHERE rollout = ? AND store = ? AND asked = ? "
                       "AND sent_at IS NULL", (tx.now, rid, store, asked))
        sent += 1
    return sent


# The operator's actions --------------------------------------------------------------

def _state(tx: Tx, rid: str) -> tuple[str, str | None]:
    row = tx.execute("SELECT state, rolled_back_at FROM rollouts WHERE id = ?", (rid,)).fetchone()
    if row is None:
        raise RolloutError(f"no rollout {rid}; edge-hub rollout status lists them")
    return row[0], row[1]


def halt(db: HubDB, rid: str, by: str) -> None:
    """Pause a running rollout where it is (no store is asked anything); resume carries on."""
    with db.transaction() as tx:
        state, _ = _state(tx, rid)
        if state != RUNNING:
            raise RolloutError(f"rollout {rid} is {state}, not running")
        tx.execute("UPDATE rollouts SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                   (HALTED, f"halted by {by}", tx.now, rid))
        _action(tx, rid, by, "halt", "paused by hand")


def resume(db: HubDB, rid: str, by: str) -> None:
    """Carry on a rollout halted by hand; one that rolled back is over (start a new one)."""
    with db.transaction() as tx:
        state, rolled_back = _state(tx, rid)
        if state != HALTED:
            raise RolloutError(f"rollout {rid} is {state}, not halted")
        if rolled_back:
            raise RolloutError(f"rollout {rid} rolled back its stores; start a new rollout once the release is fixed")
        tx.execute("UPDATE rollouts SET state = ?, reason = NULL, updated_at = ? WHERE id = ?", (RUNNING, tx.now, rid))
        _action(tx, rid, by, "resume", "resumed by hand")


def rollback(db: HubDB, rid: str, by: str) -> int:
    """Halt a rollout and ask every store it asked for its previous release; how many."""
    with db.transaction() as tx:
        _state(tx, rid)
        return _roll_back(tx, rid, by, f"rolled back by {by}")


# Reading -------------------------------------------------------------------------------

@dataclass
class StoreLine:
    """One store of a rollout as ``status`` shows it."""

    store: str
    wave: int
    asked: str | None
    state: str | None            # the store's latest word on the rollout
    reason: str | None
    running: str | None          # by the store's status (else its latest word)
    presence: str | None
    health: str | None           # the snapshot's status: ok / degraded
    healthy_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "wave": self.wave + 1, "asked": self.asked, "state": self.state,
                "reason": self.reason, "running": self.running, "presence": self.presence, "health": self.health,
                "healthy_at": self.healthy_at}


@dataclass
class RolloutView:
    """A rollout, its waves and stores, and what was done to it."""

    id: str
    version: str
    state: str
    wave: int
    waves: str
    soak_s: float
    reason: str | None
    created_at: str
    created_by: str
    rolled_back_at: str | None
    stores: list[StoreLine] = field(default_factory=list)
    actions: list[tuple[str, str, str, str]] = field(default_factory=list)  # at, by, action, detail

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /api/rollouts``."""
        waves: list[dict[str, Any]] = []
        for s in self.stores:
            while len(waves) <= s.wave:
                waves.append({"wave": len(waves) + 1, "stores": []})
            waves[s.wave]["stores"].append(s.as_dict())
        for w in waves:
            st = w["stores"]
            w["asked"] = sum(1 for x in st if x["asked"])
            w["healthy"] = sum(1 for x in st if x["state"] == "healthy" and x["running"] == self.version)
        return {"id": self.id, "version": self.version, "state": self.state, "wave": self.wave + 1,
                "waves": waves, "spec": self.waves, "soak_s": self.soak_s, "reason": self.reason,
                "created_at": self.created_at, "created_by": self.created_by, "rolled_back_at": self.rolled_back_at,
                "actions": [{"at": a, "by": b, "action": c, "detail": d} for a, b, c, d in self.actions]}


def views(db: HubDB, rid: str | None = None, limit: int = 50) -> list[RolloutView]:
    """Rollouts, newest first (one when ``rid`` is given)."""
    where, params = (" WHERE id = ?", (rid,)) if rid else ("", ())
    out = []
    for row in db.query("SELECT id, version, state, wave, waves, soak_s, reason, created_at, created_by, "
                        f"rolled_back_at FROM rollouts{where} ORDER BY created_at DESC LIMIT {int(limit)}", params):
        v = RolloutView(row[0], row[1], row[2], int(row[3]), row[4], float(row[5]), row[6], row[7], row[8], row[9])
        for (store, wave, asked, healthy_at, state, reason, running, presence, version, health) in db.query(
                "SELECT rs.store, rs.wave, rs.asked, rs.healthy_at, u.state, u.reason, u.running, s.status, "
                "s.status_version, s.health FROM rollout_stores rs "
                "LEFT JOIN update_results u ON u.store = rs.store AND u.rollout = rs.rollout "
                "LEFT JOIN stores s ON s.store = rs.store WHERE rs.rollout = ? ORDER BY rs.wave, rs.store", (v.id,)):
            status = _health(health).get("status")
            v.stores.append(StoreLine(store, int(wave), asked, state, reason, version or running or None, presence,
                                      status if status in ("ok", "degraded") else None, healthy_at))
        v.actions = [tuple(a) for a in db.query("SELECT at, by_whom, action, detail FROM rollout_actions "
                                                "WHERE rollout = ? ORDER BY at", (v.id,))]
        out.append(v)
    return out


def latest_word(db: HubDB, store: str) -> dict[str, Any] | None:
    """A store's latest word on any rollout (``rollout, version, state, reason, running, at``), or None."""
    cols = ("rollout", "version", "state", "reason", "running", "at")
    rows = db.query(f"SELECT {', '.join(cols)} FROM update_results WHERE store = ? ORDER BY received_at DESC LIMIT 1",
                    (store,))
    return dict(zip(cols, rows[0])) if rows else None


def format_view(v: RolloutView) -> str:
    """``edge-hub rollout status ID``: the rollout, its waves, a line per store, its actions."""
    lines = [f"rollout {v.id}: {v.version}, {v.state}" + (f" ({v.reason})" if v.reason else "")
             + f", wave {v.wave + 1} of {max((s.wave for s in v.stores), default=0) + 1} ({v.waves}), "
             f"soak {v.soak_s:g} s, started {v.created_at[:19]} by {v.created_by}"]
    table = [("WAVE", "STORE", "ASKED", "STATE", "RUNNING", "PRESENCE", "HEALTH")]
    for s in v.stores:
        table.append((str(s.wave + 1), s.store, s.asked or "-", s.state or "-", s.running or "-", s.presence or "-",
                      s.health or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines += [f"  {a[:19]}  {b}: {c} {d}" for a, b, c, d in v.actions]
    return "\n".join(lines)


def format_list(vs: list[RolloutView]) -> str:
    """``edge-hub rollout status``: one line per rollout."""
    if not vs:
        return "(no rollout yet)"
    table = [("ID", "VERSION", "STATE", "WAVE", "STORES", "HEALTHY", "STARTED", "BY")]
    for v in vs:
        healthy = sum(1 for s in v.stores if s.state == "healthy" and s.running == v.version)
        table.append((v.id, v.version, v.state, f"{v.wave + 1}/{max((s.wave for s in v.stores), default=0) + 1}",
                      str(len(v.stores)), str(healthy), v.created_at[:19], v.created_by))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines += [f"    {v.id}: {v.reason}" for v in vs if v.reason]
    return "\n".join(lines)


# Publishing from the command line -----------------------------------------------------

class _Broker:
    """One connection for the messages a command sends, each waited for (PUBACK)."""

    def __init__(self, broker: BrokerURL, timeout: float = 10.0):
        self.broker, self.timeout = broker, timeout
        self.client = make_client(broker, f"edge-hub-rollout-{uuid.uuid4().hex[:12]}")
        self.ok = False

    def __enter__(self) -> "_Broker":
        connected, refused = threading.Event(), []

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            if reason_code.is_failure:
                refused.append(str(reason_code))
            connected.set()
        self.client.on_connect = on_connect
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=True)
        except OSError as err:
            raise DownlinkError(f"cannot reach the broker {self.broker}: {err}") from err
        self.client.loop_start()
        self.ok = connected.wait(self.timeout) and not refused
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.ok:
            return False
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(self.timeout)
        return info.is_published()


def _send(db: HubDB, broker_url: str) -> str:
    try:
        with _Broker(parse_broker_url(broker_url)) as b:
            n = send_pending(db, b.publish)
    except DownlinkError as err:
        return f"not sent now ({err}); edge-hub run sends it once the broker is back"
    left = len(pending(db))
    return f"{n} update message(s) sent" + (f", {left} left for edge-hub run to send" if left else "")


# Commands ------------------------------------------------------------------------------

def _previous_opt(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        version, _, sha = v.partition("=")
        if not _VERSION.match(version) or not _HEX64.match(sha):
            raise RolloutError(f"--previous-manifest {v!r}: give VERSION=SHA256, e.g. 0.1.0=<64 hex digits>")
        out[version] = sha
    return out


def _run(args: argparse.Namespace, fn: Callable[[HubDB], str]) -> int:
    db = open_db(args.db)
    try:
        print(fn(db))
    except RolloutError as err:
        print(f"edge-hub: {err}", file=sys.stderr)
        return _FAIL
    finally:
        db.close()
    return _OK


def cmd_start(args: argparse.Namespace) -> int:
    """Plan a rollout and ask its first wave."""
    try:
        previous = _previous_opt(args.previous_manifest or [])
        parse_waves(args.waves)
    except RolloutError as err:
        print(f"edge-hub: {err}", file=sys.stderr)
        return _USAGE

    releases = Path(args.releases) if args.releases else None

    def go(db: HubDB) -> str:
        sha = args.manifest_sha256 or (manifest_sha256(releases, args.version) if releases else None)
        if not sha:
            raise RolloutError(f"no manifest for {args.version}: give --manifest-sha256 HEX, or --releases DIR "
                               f"holding {args.version}/manifest.json")
        rid = start(db, args.version, args.base_url, sha, stores=args.stores, canary=args.canary,
                    waves=args.waves, soak_s=args.soak_s, grace_s=args.grace_s, by=args.by, previous=previous,
                    releases=releases)
        return f"rollout {rid} of {args.version} started; {_send(db, args.broker)}; edge-hub rollout status {rid}"
    return _run(args, go)


def cmd_status(args: argparse.Namespace) -> int:
    """One rollout in full, or every rollout in a line."""
    def show(db: HubDB) -> str:
        vs = views(db, args.id)
        if args.id and not vs:
            raise RolloutError(f"no rollout {args.id}")
        return format_view(vs[0]) if args.id else format_list(vs)
    return _run(args, show)


def cmd_halt(args: argparse.Namespace) -> int:
    """Pause a running rollout."""
    def go(db: HubDB) -> str:
        halt(db, args.id, args.by)
        return f"rollout {args.id} halted; edge-hub rollout resume {args.id} carries on"
    return _run(args, go)


def cmd_resume(args: argparse.Namespace) -> int:
    """Carry on a rollout halted by hand."""
    def go(db: HubDB) -> str:
        resume(db, args.id, args.by)
        return f"rollout {args.id} running again (edge-hub run moves it on)"
    return _run(args, go)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Halt a rollout and ask its stores for their previous release."""
    def go(db: HubDB) -> str:
        n = rollback(db, args.id, args.by)
        return f"rollout {args.id} rolled back: {n} store(s) asked for their previous version; {_send(db, args.broker)}"
    return _run(args, go)


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of rollouts."""
    ro = sub.add_parser("rollout", help="roll a release out in waves: canary, a share, all; halt and roll back")
    verbs = ro.add_subparsers(dest="verb", required=True)
    st = verbs.add_parser("start", help="plan a rollout of VERSION and ask its first wave (the canary)")
    st.add_argument("version", metavar="VERSION")
    st.add_argument("--base-url", required=True, help="where the bundle is, ending in /VERSION/")
    st.add_argument("--manifest-sha256", default=None, metavar="HEX",
                    help="SHA-256 of the bundle's manifest.json (default: read from --releases)")
    st.add_argument("--releases", default=None, metavar="DIR",
                    help="the hub's bundles (edge-hub release build): the manifests' hashes of VERSION and of the "
                         "versions the stores run now are read there")
    st.add_argument("--stores", default="all", help="all (every store that reported a version), or a,b,c")
    st.add_argument("--canary", default=None, metavar="STORE", help="the first wave's store (default: the first by id)")
    st.add_argument("--waves", default="1,25%,100%", help="counts or shares of the stores, cumulative (default 1,25%%,100%%)")
    st.add_argument("--soak-s", type=float, default=600.0, metavar="S",
                    help="how long a wave stays healthy before the next starts (default 600)")
    st.add_argument("--grace-s", type=float, default=600.0, metavar="S",
                    help="an asked store offline longer than this halts the rollout (default 600)")
    st.add_argument("--previous-manifest", action="append", metavar="VERSION=SHA256",
                    help="a version stores run now that no earlier rollout brought: its manifest.json's hash "
                         "(its bundle next to VERSION's); repeatable")
    st.set_defaults(func=cmd_start)
    status = verbs.add_parser("status", help="every rollout, or one: waves, each store's state, version, health")
    status.add_argument("id", metavar="ID", nargs="?", default=None)
    status.set_defaults(func=cmd_status)
    h = verbs.add_parser("halt", help="pause a running rollout where it is")
    h.add_argument("id", metavar="ID")
    h.set_defaults(func=cmd_halt)
    r = verbs.add_parser("resume", help="carry on a rollout halted by hand")
    r.add_argument("id", metavar="ID")
    r.set_defaults(func=cmd_resume)
    rb = verbs.add_parser("rollback", help="halt and ask every store the rollout asked for its previous release")
    rb.add_argument("id", metavar="ID")
    rb.set_defaults(func=cmd_rollback)
    for sp in (st, status, h, r, rb):
        sp.add_argument("--db", default=env_db)
    for sp in (st, h, r, rb):
        sp.add_argument("--by", default=_who(), help="who does it (default: the user running this)")
    for sp in (st, rb):
        broker_opt(sp)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "edge-hub"

