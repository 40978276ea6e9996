"""The console's device timeline: states read from snapshots, and the bars drawn from them. No I/O.

A store's health snapshot (and each ``device.state`` event) lists devices
with their ``state`` and ``since``; ``device_rows`` reads them defensively
into ``StateRow``s, ``busy`` counted as ``online``. The hub keeps the rows
that changed in its ``device_states`` table (sync/hub/observe.py) and reads
them back for the page (sync/hub/console/history.py); the agent keeps none
and builds its rows from its feed's ring (``changes``). Either way
``segments`` turns the rows into the bars the page draws.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from sync.console.facts import parse_time

# "busy" is online and doing a job (a receipt, a label push): as a timeline
# state it would add two rows per print job and say nothing about health.
_TIMELINE_STATE = {"busy": "online"}


def utc_iso(text: Any) -> str | None:
    """An ISO-8601 time from a store as the hub writes times (UTC, ms), or None if it is not one."""
    t = parse_time(text)  # the agent always sends aware times; UTC is assumed otherwise
    return None if t is None else t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class StateRow:
    """One state a device entered."""

    store: str
    device: str
    since: str
    state: str
    kind: str | None
    last_error: str | None


def device_rows(store: str, snap: dict[str, Any]) -> list[StateRow]:
    """Every well-formed device of a snapshot as a timeline row (busy counted as online)."""
    devices = snap.get("devices")
    if not isinstance(devices, list):
        return []
    rows = []
    for d in devices:
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("state"), str):
            continue
        since = utc_iso(d.get("since"))
        if since is None:
            continue
        kind, err = d.get("kind"), d.get("last_error")
        rows.append(StateRow(store, d["id"][:64], since, _TIMELINE_STATE.get(d["state"], d["state"])[:16],
                             kind[:64] if isinstance(kind, str) else None,
                             err[:500] if isinstance(err, str) else None))
    return rows


def changes(rows: Iterable[StateRow]) -> list[tuple]:
    """The rows where a device's state changed, as ``(device, since, state, kind, last_error)`` sorted by
    device and since: what ``segments`` takes. Of two rows with one ``since``, the later news wins."""
    out: list[tuple] = []
    for r in sorted(rows, key=lambda r: (r.device, r.since)):
        row = (r.device, r.since, r.state, r.kind, r.last_error)
        prev = out[-1] if out and out[-1][0] == r.device else None
        if prev is not None and prev[1] == r.since:
            out[-1] = row  # two states in one millisecond: the later news wins
        elif prev is None or prev[2] != r.state:  # busy -> online counts as no change
            out.append(row)
    return out


def segments(rows: list[tuple], start: str) -> dict[str, list[dict[str, Any]]]:
    """Timeline bars from ``(device, since, state, kind, last_error)`` rows sorted by device and since.

    A segment lasts until the next row of its device (``until`` None for the
    last); a state entered before ``start`` is cut to begin there.
    """
    by_device: dict[str, list[tuple]] = {}
    for r in rows:
        by_device.setdefault(r[0], []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for device, rs in sorted(by_device.items()):
        out[device] = [{"state": state, "kind": kind, "since": max(since, start),
                        "until": rs[i + 1][1] if i + 1 < len(rs) else None, "last_error": err}
                       for i, (_, since, state, kind, err) in enumerate(rs)]
    return out
