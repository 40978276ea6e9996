"""The hub's alerts, kept in its database: raised by rules, acknowledged and resolved by staff.

Life of an alert: ``open`` when a rule's condition has held for its
``for_s``; ``acknowledged`` when someone takes it; ``resolved`` by staff once
the cause is gone (or by itself, for rules with ``auto_resolve``). When the
cause clears, ``cleared_at`` says so and the alert waits for staff; if the
cause comes back first, the same alert carries on (``cleared_at`` empties)
rather than a second one piling up. Resolving while the cause is still there
is refused (CauseStillThere): the alert would only be raised again. A few
causes never clear by themselves (a stream conflict is history once the
hub kept the event aside); their rules say so, and staff may resolve those
alerts once they have looked (``present_ok``).

One live alert per store, rule and subject: ``active_key`` is unique while
the alert is not resolved, so two consoles evaluating the same rules on one
database raise it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sync.console.rules import Condition, Evaluation, RuleSet
from sync.hub.db import HubDB, Tx

COLUMNS = ("id", "store", "rule", "subject", "severity", "title", "detail", "since", "raised_at", "state",
           "acked_by", "acked_at", "resolved_by", "resolved_at", "cleared_at", "updated_at")
_SELECT = f"SELECT {', '.join(COLUMNS)}, active_key FROM alerts"
STATES = ("open", "acknowledged", "resolved")


class CauseStillThere(Exception):
    """Staff tried to resolve an alert whose condition still holds."""


def iso(t: datetime) -> str:
    """A time as the hub writes it (UTC ISO-8601, milliseconds)."""
    return t.isoformat(timespec="milliseconds")


def _row(r: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(COLUMNS, r))
    out["active"] = r[len(COLUMNS)] is not None
    return out


@dataclass(slots=True)
class Diff:
    """What one evaluation changes: new alerts, live ones whose cause came back, and causes gone."""

    raise_: list[Condition] = field(default_factory=list)
    refire: list[str] = field(default_factory=list)
    clear: list[tuple[str, bool]] = field(default_factory=list)  # (id, resolve it too)

    def __bool__(self) -> bool:
        return bool(self.raise_ or self.refire or self.clear)


def active(db: HubDB | Tx) -> dict[str, dict[str, Any]]:
    """Every alert not resolved, by ``store/rule/subject``."""
    rows = db.query(f"{_SELECT} WHERE active_key IS NOT NULL") if isinstance(db, HubDB) \
        else db.execute(f"{_SELECT} WHERE active_key IS NOT NULL").fetchall()
    return {f"{r[1]}/{r[2]}/{r[3]}": _row(r) for r in rows}


def diff(live: dict[str, dict[str, Any]], ev: Evaluation, rules: RuleSet) -> Diff:
    """Compare the live alerts with what is firing under ``rules``."""
    auto_resolve = {r.id: r.auto_resolve for r in rules.rules}
    store_level = {r.id for r in rules.rules if r.store_level}
    d = Diff()
    firing = {c.key: c for c in ev.firing}
    for key, c in firing.items():
        a = live.get(key)
        if a is None:
            d.raise_.append(c)
        elif a["cleared_at"] is not None:
            d.refire.append(a["id"])
    for key, a in live.items():
        if key in firing or a["cleared_at"] is not None:
            continue
        if a["store"] in ev.held and a["rule"] not in store_level:
            continue  # the store is offline or silent: its device alerts stay as they were
        # A rule removed from the file resolves nothing by itself: its alerts clear and wait for staff.
        d.clear.append((a["id"], auto_resolve.get(a["rule"], False)))
    return d


def apply(tx: Tx, d: Diff, now: datetime) -> list[str]:
    """Write a Diff; the ids of the alerts it changed."""
    t = iso(now)
    changed = []
    for c in d.raise_:
        if tx.execute("SELECT 1 FROM alerts WHERE active_key IS NULL AND store = ? AND rule = ? AND subject = ? "
                      "AND resolved_at >= ?", (c.store, c.rule, c.subject, t)).fetchone() is not None:
            continue  # staff resolved it while this pass ran on facts read before: the next pass knows
        aid = str(uuid.uuid4())
        cur = tx.execute(
            "INSERT INTO alerts (id, active_key, store, rule, subject, severity, title, detail, since, raised_at, "
            "state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?) ON CONFLICT (active_key) DO NOTHING",
            (aid, c.key, c.store, c.rule, c.subject, c.severity, c.title, c.detail, iso(c.since), t, t))
        if cur.rowcount == 1:  # 0: another console raised it first
            changed.append(aid)
    for aid in d.refire:
        tx.execute("UPDATE alerts SET cleared_at = NULL, updated_at = ? WHERE id = ? AND active_key IS NOT NULL",
                   (t, aid))
        changed.append(aid)
    for aid, resolve in d.clear:
        if resolve:
            tx.execute("UPDATE alerts SET cleared_at = ?, state = 'resolved', resolved_by = 'auto', resolved_at = ?, "
                       "active_key = NULL, updated_at = ? WHERE id = ? AND active_key IS NOT NULL", (t, t, t, aid))
        else:
            tx.execute("UPDATE alerts SET cleared_at = ?, updated_at = ? WHERE id = ? AND active_key IS NOT NULL "
                       "AND cleared_at IS NULL", (t, t, aid))
        changed.append(aid)
    return changed


def get(db: HubDB | Tx, aid: str) -> dict[str, Any] | None:
    """One alert, or None."""
    sql, params = f"{_SELECT} WHERE id = ?", (aid,)
    rows = db.query(sql, params) if isinstance(db, HubDB) else db.execute(sql, params).fetchall()
    return _row(rows[0]) if rows else None


def acknowledge(tx: Tx, aid: str, by: str, now: datetime) -> dict[str, Any] | None:
    """Someone took the alert (an open one; acknowledging twice keeps the first); None if there is no such alert."""
    t = iso(now)
    tx.execute("UPDATE alerts SET state = 'acknowledged', acked_by = ?, acked_at = ?, updated_at = ? "
               "WHERE id = ? AND state = 'open'", (by[:64], t, t, aid))
    return get(tx, aid)


def resolve(tx: Tx, aid: str, by: str, now: datetime, present_ok: Collection[str] = ()) -> dict[str, Any] | None:
    """Staff say it is fixed; CauseStillThere while the condition holds, unless the alert's rule is in
    ``present_ok`` (its cause never clears by itself). None if there is no such alert."""
    a = get(tx, aid)
    if a is None or a["state"] == "resolved":
        return a
    if a["cleared_at"] is None and a["rule"] not in present_ok:
        raise CauseStillThere(f"{a['title']}: the cause is still there (since {a['since']}); acknowledge the alert "
                              "now and resolve it once the cause has cleared")
    t = iso(now)
    tx.execute("UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_at = ?, active_key = NULL, "
               "updated_at = ? WHERE id = ?", (by[:64], t, t, aid))
    code, _, subject = str(a["subject"]).partition("/")
    if a["cleared_at"] is None and a["rule"] in present_ok and code in ("stream_conflict", "database_restored"):
        # An identity issue staff have now looked at: closed at the hub too (edge-hub stores no
        # longer counts it); it opens again, and so does the alert, if the hub sees it again.
        tx.close_identity(a["store"], code, subject)
    return get(tx, aid)


def listing(db: HubDB, store: str | None = None, resolved: bool = False, limit: int = 500) -> list[dict[str, Any]]:
    """Live alerts (and with ``resolved`` the resolved ones too), newest first."""
    where, params = [], []
    if store is not None:
        where.append("store = ?")
        params.append(store)
    if not resolved:
        where.append("active_key IS NOT NULL")
    sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY raised_at DESC LIMIT ?"
    return [_row(r) for r in db.query(sql, (*params, limit))]


def by_ids(db: HubDB, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The alerts with these ids."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    return [_row(r) for r in db.query(f"{_SELECT} WHERE id IN ({marks})", tuple(ids))]

