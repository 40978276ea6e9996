"""The rollout engine: each store's word on a rollout, the look that moves rollouts on, halts and rolls them back,
and the update messages it asks for (sync/hub/fleet/rollout.py plans and starts rollouts, rollout_status.py reads
them).

``tick`` is run by every ``edge-hub run`` about once a second (sync/hub/service.py) with nothing but the tables as
its memory, so a restarted hub carries a rollout on, and two hub workers looking at once are harmless (each step is
a guarded update in one transaction):

- the next wave is asked once every store of the current one said ``healthy`` for the version, running it, on
  ``edge/{store}/update/res`` and then stayed no worse for the rollout's soak;
- a store it asked that gets worse halts it: its health snapshot ``degraded`` with a reason it did not have when
  it was asked (its ``baseline``), offline for longer than the grace (counted from the ask at the earliest), or
  its word ``rolled_back``, ``failed`` or ``refused`` for the version. Then every store it asked is asked for the
  release it ran before (the store may have gone back by itself already); the stores of later waves are never
  touched.

``send_pending`` hands each asked update to the broker (``hub/{store}/update``, QoS 1, retained) and marks it sent
only once taken: one that could not go is sent by the next tick.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from sync.console.facts import parse_time
from sync.hub.db import HubDB, Tx
from sync.topics import DesiredRelease, UpdateResult, hub_topic

RUNNING, HALTED, DONE = "running", "halted", "done"
ENGINE = "edge-hub (automatic)"
# What a store says of the release that makes the rollout halt.
WORSE_STATES = ("rolled_back", "failed", "refused")
PublishFn = Callable[[str, bytes], bool]  # (topic, payload) -> handed to the broker


def health_of(raw: Any) -> dict[str, Any]:
    """A stored health snapshot (JSON text) as a dict; {} when there is none or it does not parse."""
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


def action(tx: Tx, rid: str, by: str, what: str, detail: str) -> None:
    """Keep what was done to a rollout and by whom (``rollout_actions``), in the transaction that does it."""
    tx.execute("INSERT INTO rollout_actions (rollout, at, by_whom, action, detail) VALUES (?, ?, ?, ?, ?)",
               (rid, tx.now, by[:128], what, detail[:2000]))


def ask_wave(tx: Tx, rid: str, wave: int) -> None:
    """Ask every store of ``wave`` for the rollout's release; its health reasons now are its baseline."""
    version = tx.execute("SELECT version FROM rollouts WHERE id = ?", (rid,)).fetchone()[0]
    rows = tx.execute("SELECT rs.store, s.health FROM rollout_stores rs LEFT JOIN stores s ON s.store = rs.store "
                      "WHERE rs.rollout = ? AND rs.wave = ?", (rid, wave)).fetchall()
    for store, health in rows:
        tx.execute("UPDATE rollout_stores SET asked = ?, asked_at = ?, sent_at = NULL, healthy_at = NULL, "
                   "baseline = ? WHERE rollout = ? AND store = ?",
                   (version, tx.now, json.dumps(sorted(_reason_keys(health_of(health)))), rid, store))


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

def _worse(row: dict[str, Any], version: str, grace_s: float, now: datetime) -> str | None:
    """Why an asked store is worse than before, or None."""
    store = row["store"]
    if row["res_state"] in WORSE_STATES and row["res_version"] == version:
        return f"{store} reported {row['res_state']}" + (f": {row['res_reason']}" if row["res_reason"] else "")
    health = health_of(row["health"])
    if health.get("status") == "degraded":
        new = _reason_keys(health) - set(json.loads(row["baseline"] or "[]"))
        if new:
            return f"{store} degraded: {_reason_text(health, new) or ', '.join(sorted(new))}"
    since = parse_time(row["status_since"])
    if row["status"] == "offline" and since is not None:
        asked = parse_time(row["asked_at"])
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
            n = roll_back(tx, rid, ENGINE, f"halted by itself: {why}", if_running=True)
            if n < 0:
                return None
            return f"rollout {rid} of {version} halted: {why}; {n} store(s) asked for their previous version"
    current = [x for x in rows if x["wave"] == wave]
    for x in current:
        if x["healthy_at"] is None and x["res_state"] == "healthy" and x["res_version"] == version \
                and x["running"] == version:
            x["healthy_at"] = tx.now
            tx.execute("UPDATE rollout_stores SET healthy_at = ? WHERE rollout = ? AND store = ?", (tx.now, rid, x["store"]))
    times = [parse_time(x["healthy_at"]) for x in current]
    if not current or any(t is None for t in times):
        return None
    if (now - max(t for t in times if t is not None)).total_seconds() < soak_s:
        return None
    last = int(tx.execute("SELECT max(wave) FROM rollout_stores WHERE rollout = ?", (rid,)).fetchone()[0])
    if wave >= last:
        if tx.execute("UPDATE rollouts SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
                      (DONE, tx.now, rid, RUNNING)).rowcount:
            action(tx, rid, ENGINE, "done", f"every store healthy on {version}")
            return f"rollout {rid} of {version} done: every store healthy"
        return None
    if not tx.execute("UPDATE rollouts SET wave = ?, updated_at = ? WHERE id = ? AND wave = ? AND state = ?",
                      (wave + 1, tx.now, rid, wave, RUNNING)).rowcount:
        return None  # another hub worker moved it on first
    ask_wave(tx, rid, wave + 1)
    n = sum(1 for x in rows if x["wave"] == wave + 1)
    action(tx, rid, ENGINE, "wave", f"{wave + 2} of {last + 1} asked: {n} store(s), after wave {wave + 1} "
            f"soaked {soak_s:g} s")
    return f"rollout {rid} of {version}: wave {wave + 2} of {last + 1} started ({n} store(s))"


def roll_back(tx: Tx, rid: str, by: str, why: str, *, if_running: bool = False) -> int:
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
    action(tx, rid, by, "rollback", f"{why}; {len(rows)} store(s) asked for their previous version")
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
