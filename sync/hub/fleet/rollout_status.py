"""Reading rollouts: ``edge-hub rollout status`` and the hub console's ``GET /api/rollouts`` (each rollout, its waves,
each store's version asked, word, running version, presence and health, and every action with who did it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync.hub.db import HubDB
from sync.hub.fleet.rollout_engine import health_of


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
            status = health_of(health).get("status")
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
