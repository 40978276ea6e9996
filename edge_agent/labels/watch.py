"""What a back end's poll tells about each label: pure functions on the service's labels.

Confirmation. After a push the access point queues the picture and the tag
takes it at its next check-in (every 40 to 600 s). A label counts as showing
its last push once a poll *that began after the push returned* reports the
tag with nothing pending and either a new picture hash (the tag confirmed
new data, newproto.cpp) or a check-in after the push (the AP found the
picture identical to what the tag shows and queued nothing). A poll that
began earlier may predate the upload, so it confirms nothing.

Drift. A label confirmed earlier whose back end now reports another picture
hash, with nothing pending from us (someone used the AP's web page, a file
was replaced or deleted), no longer shows what we think: its shown state is
forgotten, so compliance reports it, and it is planned again. Only a poll
that began after the last push returned can tell: a push that puts back the
picture confirmed before (a price changed and changed back before the tag
took the first change) leaves the label not outstanding, and a poll begun
before it may still show the first change. And a label being pushed right
now is not looked at: the back end may show the new picture (a file is
renamed into place, a tag checks in during the upload) before the push
returns and the service records it, so a poll would take our own push for
someone else's.

Health. A tag not heard from for ``stale_after`` (never heard from, for
that long after binding), and a battery under ``low_battery_mv``; a battery
alert clears 100 mV above the threshold, so a reading that wobbles around it
does not raise and clear an alert at every poll.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drivers.shelf_label.driver import Snapshot, TagState
from edge_agent.labels.table import Label

BATTERY_HYSTERESIS_MV = 100


@dataclass
class Outcome:
    """What one snapshot changed."""

    confirmed: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    changed: list[Label] = field(default_factory=list)  # to write back


def confirms(label: Label, state: TagState, polled_at: datetime) -> bool:
    """True when ``state``, polled at ``polled_at``, shows that ``label``'s last push is on the label."""
    if not label.outstanding or label.pushed_at is None or polled_at <= label.pushed_at:
        return False
    if not state.known or state.pending:
        return False
    return state.token != label.push_token or (state.last_seen is not None and state.last_seen > label.pushed_at)


def confirm(label: Label, token: str | None, at: datetime, seen: datetime | None = None) -> None:
    """Record that ``label`` shows its last push, as of ``at``."""
    label.shown_hash = label.pushed_hash
    label.shown_price = label.pushed_price
    label.shown_sku = label.pushed_sku
    label.shown_token = token
    label.confirmed_at = at
    label.shown_since = seen if seen is not None and label.pushed_at and seen > label.pushed_at else at


def forget_shown(label: Label, why: str, at: datetime) -> None:
    """The label no longer shows what we recorded: what it shows is unknown; push it again."""
    label.shown_hash = label.shown_price = label.shown_sku = label.shown_token = None
    label.shown_since = label.confirmed_at = None
    label.pushed_hash = label.pushed_price = label.pushed_sku = label.push_token = None
    label.pushed_at = None
    label.last_error = why
    label.error_at = at


def drifted(label: Label, state: TagState, polled_at: datetime) -> bool:
    """True when ``state``, polled at ``polled_at``, shows that ``label`` no longer shows its confirmed picture."""
    if label.confirmed_at is None or label.outstanding or label.shown_token is None or state.pending:
        return False
    if polled_at <= label.confirmed_at or (label.pushed_at is not None and polled_at <= label.pushed_at):
        return False  # the poll may predate what we know
    return not state.known or state.token != label.shown_token


def apply(snapshot: Snapshot, labels: dict[str, Label], at: datetime,
          pushing: Collection[str] = frozenset()) -> Outcome:
    """Confirmations and drift of ``snapshot``'s labels bound to its device; labels in ``pushing``
    (a push to them has begun and not yet returned) are left for a later poll."""
    out = Outcome()
    for mac, state in snapshot.tags.items():
        label = labels.get(mac)
        if label is None or label.device != snapshot.device or mac in pushing:
            continue
        if confirms(label, state, snapshot.polled_at):
            confirm(label, state.token, at, state.last_seen)
            if label.last_error and label.error_at and label.error_at < label.pushed_at:  # type: ignore[operator]
                label.last_error = label.error_at = None
            out.confirmed.append(mac)
            out.changed.append(label)
        elif drifted(label, state, snapshot.polled_at):
            what = "is gone" if not state.known else "shows a picture the agent did not send"
            forget_shown(label, f"the label {what}", at)
            out.drifted.append(mac)
            out.changed.append(label)
    return out


def is_stale(label: Label, state: TagState, at: datetime, stale_after: float) -> bool:
    """True when the tag has not been heard from for ``stale_after`` seconds (since binding, if never)."""
    since = state.last_seen if state.known and state.last_seen is not None else label.bound_at
    return at - since > timedelta(seconds=stale_after)


def battery_low(state: TagState, threshold: int, alerted: bool) -> bool | None:
    """Whether the tag's battery counts as low now: below ``threshold``; once alerted, until it is
    ``BATTERY_HYSTERESIS_MV`` above it. None when the tag reported no battery."""
    if not state.battery_mv:
        return None
    return state.battery_mv < threshold + (BATTERY_HYSTERESIS_MV if alerted else 0)
