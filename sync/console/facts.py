"""A store's status and health snapshot, read defensively, summed up for the console.

The snapshot comes from the field and grows over time (``labels`` and
``printing`` sections came later than ``devices``, ``status`` and
``reasons`` later still), so every read here
accepts a missing key or a value of the wrong type and shows nothing for it.
A store's identity issues (``identity``) come from the hub's own database,
not from the snapshot: a stream conflict, a database restored or copied,
two agents running as the store (sync/hub/db.py).
``summarize`` is what the fleet view shows of a store; it depends only on
its inputs, so the hub caches it until the store's next message.
``config`` is the store's devices.yaml as its snapshot says: the version in
force (0: the store's own file, never sent by the hub), its state and whether
the file drifted from it (a local edit).
``alert_device`` names a store's alert the one way both sides key it (the
snapshot's open alerts here, the hub's ``device_alerts`` rows in
sync/hub/observe.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# What each identity code means, in the words of a chain's IT person (titles, the store page).
IDENTITY_PROBLEMS = {
    "stream_conflict": "stream conflict: event kept aside",
    "database_restored": "store database restored or copied",
    "duplicate_store": "two agents run as this store",
}
MAX_IDENTITY_IN_SUMMARY = 10

# States in which a device is not doing its job, worst first.
PROBLEM_STATES = ("error", "offline", "starting")
STATES = ("online", "busy", "starting", "offline", "error")


def parse_time(text: Any) -> datetime | None:
    """An aware datetime from ISO-8601 text, or None."""
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def number(v: Any) -> float | None:
    """``v`` if it is a real number (not a bool), else None."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What the hub knows of one store: its status message, last snapshot, raised device alerts and
    open identity issues (each ``code, subject, detail, first_at, last_at, count, handled_at``)."""

    store: str
    presence: str | None = None          # "online" | "offline" | None (never heard)
    presence_since: str | None = None
    version: str | None = None
    health: dict[str, Any] | None = None
    health_at: str | None = None         # when the hub received the snapshot (hub clock)
    device_alerts: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    identity: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def devices(health: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The snapshot's well-formed devices: ``id, kind, state, since, last_error, counters, actions``
    (``actions`` None when the snapshot has no well-formed list of them)."""
    raw = (health or {}).get("devices")
    if not isinstance(raw, list):
        return []
    out = []
    for d in raw:
        if isinstance(d, dict) and isinstance(d.get("id"), str) and isinstance(d.get("state"), str):
            out.append({"id": d["id"], "kind": d.get("kind") if isinstance(d.get("kind"), str) else None,
                        "state": d["state"], "since": d.get("since") if isinstance(d.get("since"), str) else None,
                        "last_error": d.get("last_error") if isinstance(d.get("last_error"), str) else None,
                        "counters": d.get("counters") if isinstance(d.get("counters"), dict) else {},
                        "actions": _actions(d.get("actions"))})
    return out


# An action is a name a driver declares (drivers/base.py): short, and few per device.
_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
MAX_ACTIONS = 32


def _actions(raw: Any) -> list[str] | None:
    """A device's ``actions`` from the field: a list of at most 32 names of [a-z0-9_], 1-64 long, or None."""
    if not isinstance(raw, list) or len(raw) > MAX_ACTIONS:
        return None
    if not all(isinstance(a, str) and 0 < len(a) <= 64 and set(a) <= _ACTION_CHARS for a in raw):
        return None
    return list(dict.fromkeys(raw))


def labels(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """Price compliance, or None if not reported: ``labels``, ``non_compliant`` (in their grace
    or past it), ``past_grace`` (wrong past the grace time: the ones that count; None from an agent
    too old to say), ``alerts`` and the oldest times of both."""
    raw = (health or {}).get("labels")
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {k: number(raw.get(k)) for k in ("labels", "non_compliant", "past_grace", "alerts")}
    for key in ("oldest_non_compliant_since", "oldest_past_grace_since"):
        out[key] = raw.get(key) if isinstance(raw.get(key), str) else None
    return out


def reasons(health: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The store's own reasons for ``degraded`` (``code``, ``subject``, ``message``), well-formed ones only."""
    raw = (health or {}).get("reasons")
    if not isinstance(raw, list):
        return []
    return [{"code": r["code"][:64], "subject": r.get("subject") if isinstance(r.get("subject"), str) else None,
             "message": r.get("message")[:500] if isinstance(r.get("message"), str) else ""}
            for r in raw[:100] if isinstance(r, dict) and isinstance(r.get("code"), str)]


_PRINT_KEYS = {"queued": ("queued", "queue_depth", "depth", "pending"), "waiting": ("waiting", "held", "stuck"),
               "failed": ("failed", "failed_jobs")}


CONFIG_STATES = ("applied", "refused", "rolled_back", "restart_required")


def config(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """The snapshot's ``config``: ``version`` (int), ``drift`` (bool), ``state``; None when it has none."""
    raw = (health or {}).get("config")
    if not isinstance(raw, dict):
        return None
    version = raw.get("version")
    state = raw.get("state")
    return {"version": version if isinstance(version, int) and not isinstance(version, bool) and version >= 0
            else None,
            "drift": raw.get("drift") is True,
            "state": state if state in CONFIG_STATES else None}


def printing(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """Print queue: ``queued, waiting, failed`` summed over the section (and one level of printers), or None."""
    raw = (health or {}).get("printing")
    if not isinstance(raw, dict):
        return None
    totals = {k: 0.0 for k in _PRINT_KEYS}
    # The section may be totals, or per printer ({"printers": {"printer-1": {...}}}):
    # totals when it has any, else the sum of what sits one or two levels down.
    known = {n for names in _PRINT_KEYS.values() for n in names}
    parts = [raw]
    if not known & raw.keys():
        parts = [v for v in raw.values() if isinstance(v, dict)]
        parts += [p for v in parts for p in v.values() if isinstance(p, dict)]
    for part in parts:
        for total, names in _PRINT_KEYS.items():
            for name in names:
                n = number(part.get(name))
                if n is not None:
                    totals[total] += n
    out: dict[str, Any] = {k: int(v) for k, v in totals.items()}
    oldest = raw.get("oldest_waiting_since")
    out["oldest_waiting_since"] = oldest if isinstance(oldest, str) else None
    return out


def _text(v: Any, limit: int, default: str | None = None) -> str | None:
    return v[:limit] if isinstance(v, str) and v else default


def alert_device(data: dict[str, Any]) -> str:
    """The ``device`` of a store's alert as the hub keys it: ``device/subject`` when the alert is about
    one of the device's parts (a shelf label of an access point), so that each label's alert is its own.

    The hub's ``device_alerts`` key is (store, device, code): with the device alone, six labels of
    one access point would share one row, and the first label put right would mark all six cleared.
    """
    device = _text(data.get("device"), 64, "?")
    subject = _text(data.get("subject"), 64)
    if subject is None or subject == device:
        return device
    return f"{device}/{subject}"[:64] if len(device) + len(subject) < 64 else f"{device[:30]}/{subject[-33:]}"


def open_alerts(health: dict[str, Any] | None) -> tuple[dict[str, Any], ...] | None:
    """The alerts the store says are open now (``open_alerts`` of its snapshot), or None if it does not say.

    Each as a ``device_alerts`` row: ``device`` (``device/subject`` for a part of a device),
    ``code``, ``severity``, ``message``, ``time``, ``state: raised``.
    """
    raw = (health or {}).get("open_alerts")
    if not isinstance(raw, list):
        return None
    out = []
    for a in raw[:1000]:
        if isinstance(a, dict) and isinstance(a.get("device"), str) and isinstance(a.get("code"), str):
            out.append({"device": alert_device(a), "code": a["code"][:64],
                        "severity": a.get("severity") if isinstance(a.get("severity"), str) else None,
                        "message": a.get("message")[:500] if isinstance(a.get("message"), str) else None,
                        "time": a.get("time") if isinstance(a.get("time"), str) else None, "state": "raised"})
    return tuple(out)


def store_alerts(f: StoreFacts) -> tuple[dict[str, Any], ...]:
    """The store's open alerts: what its last snapshot says when it says it (the truth now, even
    after a restart that lost a clear), else the raised rows of ``device_alerts`` (older agents)."""
    from_snapshot = open_alerts(f.health if isinstance(f.health, dict) else None)
    return from_snapshot if from_snapshot is not None else f.device_alerts


def identity_problem(code: str) -> str:
    """An identity code in words (an unknown code as itself)."""
    return IDENTITY_PROBLEMS.get(code, code.replace("_", " "))


def identity_summary(f: StoreFacts) -> dict[str, Any]:
    """``open`` (how many identity issues are open) and the first few: ``code, problem, subject, since, count``."""
    issues = [{"code": i["code"], "problem": identity_problem(i["code"]), "subject": i["subject"],
               "since": i.get("first_at"), "count": i.get("count")}
              for i in f.identity[:MAX_IDENTITY_IN_SUMMARY]]
    return {"open": len(f.identity), "issues": issues}


def summarize(f: StoreFacts) -> dict[str, Any]:
    """One store as the fleet view shows it: presence, device counts, problem devices, queues, clock."""
    h = f.health if isinstance(f.health, dict) else None
    devs = devices(h)
    counts = {s: 0 for s in STATES}
    for d in devs:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    problems = [d for d in devs if d["state"] in PROBLEM_STATES]
    problems.sort(key=lambda d: (PROBLEM_STATES.index(d["state"]), d["id"]))
    status = (h or {}).get("status")
    return {
        "store": f.store,
        # The store's own verdict (GET /v1/health): "ok", "degraded", or None from an older agent.
        "status": status if status in ("ok", "degraded") else None,
        "reasons": reasons(h),
        "presence": f.presence or "unknown",
        "presence_since": f.presence_since,
        "version": f.version or (h or {}).get("version"),
        # The devices.yaml in force: {"version", "drift", "state"}, or None from an older agent.
        "config": config(h),
        "health_at": f.health_at,
        "snapshot_time": (h or {}).get("time") if isinstance((h or {}).get("time"), str) else None,
        "devices": {"total": len(devs), **counts},
        "problems": [{k: d[k] for k in ("id", "kind", "state", "since", "last_error")} for d in problems],
        "outbox_depth": number((h or {}).get("outbox_depth")),
        "oldest_unacked_age_s": number((h or {}).get("oldest_unacked_age_s")),
        "clock_offset_s": number((h or {}).get("clock_offset_s")),
        "over_budget": bool((h or {}).get("over_budget")),
        "labels": labels(h),
        "printing": printing(h),
        "device_alerts": len(store_alerts(f)),
        "identity": identity_summary(f),
    }
