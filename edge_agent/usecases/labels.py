"""Shelf labels: bind a label to a product, unbind it, push it again.

An associate at the shelf scans a label's barcode (its MAC), then the
product's; the PAD calls ``bind``. Each flow is one function: its write (the
label's row in ``labels``), then, once the row is on disk, its effects: the
label handed to its LabelService, which owns it in memory from then on
(edge_agent/labels/service.py), the label planned and queued at once, ahead
of any bulk update in progress, and ``label.bound`` or ``label.unbound`` on
the bus. The effects happen when the write completes even if the caller was
cancelled meanwhile (a client that hung up): memory never stays behind the
store, where the service's next batch would write the old binding back.

``repush`` writes nothing: it draws and pushes the label again now, even if
the agent believes it already shows the right thing (an associate at the
shelf sees a blank or wrong label). A re-push is not a way to flood the
access point (``RepushGuard``): a label re-pushed less than
``REPUSH_COOLDOWN_S`` ago, or whose forced push is still queued or under way,
is not queued again (``Repushed.repush`` says "cooldown" or
"already_pushing", with the seconds left); and one client may ask
``REPUSHES_PER_MIN`` times a minute, then RepushTooMany (with
``retry_after``). The cooldown and the counts live in memory, per label
service.

The rules (which device and model, what a re-bound label keeps, what a zone
is) and the errors are edge_agent/labels/bindings.py's: BindNotFound (no such
product or label), BindInvalid (a label id, device, model or zone that cannot
be), BindConflict (no label device in this store).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from edge_agent.errors import TooMany
from edge_agent.labels import bindings
from edge_agent.labels.table import Label, params, save
from edge_agent.scans import lookup_scanned
from edge_agent.store import Tx
from edge_core.bus import utcnow

if TYPE_CHECKING:
    from edge_agent.labels.service import LabelService

BOUND = "label.bound"
UNBOUND = "label.unbound"
REPUSH_COOLDOWN_S = 30.0  # a label re-pushed is not queued again by a re-push for this long
REPUSHES_PER_MIN = 30  # re-pushes one client may ask for in a minute
CLIENTS_KEPT = 1000  # clients whose re-pushes are counted; the oldest go first
QUEUED, ALREADY_PUSHING, COOLDOWN = "queued", "already_pushing", "cooldown"


class RepushTooMany(TooMany):
    """A client asked for more than ``REPUSHES_PER_MIN`` re-pushes this minute."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Repushed(NamedTuple):
    """A re-push's answer: the label, whether it was queued (or why not), and when to ask again."""

    label: Label
    repush: str  # QUEUED, ALREADY_PUSHING or COOLDOWN
    retry_after: int | None  # seconds until a re-push queues it again (not QUEUED)


class RepushGuard:
    """Per label, when it was last queued by a re-push; per client, its re-pushes of the last minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, cooldown_s: float = REPUSH_COOLDOWN_S,
                 per_minute: int = REPUSHES_PER_MIN, kept: int = CLIENTS_KEPT):
        self.clock, self.cooldown_s, self.per_minute, self._kept = clock, cooldown_s, per_minute, kept
        self._queued_at: dict[str, float] = {}  # mac -> when a re-push last queued it
        self._calls: OrderedDict[str, deque[float]] = OrderedDict()  # client -> its re-pushes this minute

    def admit(self, client: str) -> None:
        """Count a re-push of ``client``; RepushTooMany past ``per_minute`` a minute (not counted then)."""
        now = self.clock()
        calls = self._calls.pop(client, None) or deque()
        while calls and calls[0] <= now - 60:
            calls.popleft()
        self._calls[client] = calls
        while len(self._calls) > self._kept:
            self._calls.popitem(last=False)
        if len(calls) >= self.per_minute:
            wait = max(1, math.ceil(calls[0] + 60 - now))
            raise RepushTooMany(f"more than {self.per_minute} label re-pushes in a minute; try again in {wait} s",
                                wait)
        calls.append(now)

    def left(self, mac: str) -> int | None:
        """Seconds of ``mac``'s cooldown left, or None when a re-push may queue it."""
        at = self._queued_at.get(mac)
        if at is None:
            return None
        left = at + self.cooldown_s - self.clock()
        return math.ceil(left) if left > 0 else None

    def queued(self, mac: str) -> None:
        """A re-push queued ``mac`` now; cooldowns that ran out are forgotten."""
        now = self.clock()
        if len(self._queued_at) > 1000:
            self._queued_at = {m: t for m, t in self._queued_at.items() if t + self.cooldown_s > now}
        self._queued_at[mac] = now


_GUARDS: "weakref.WeakKeyDictionary[LabelService, RepushGuard]" = weakref.WeakKeyDictionary()


def repush_guard(labels: "LabelService") -> RepushGuard:
    """The re-push guard of ``labels`` (made at its first re-push)."""
    guard = _GUARDS.get(labels)
    if guard is None:
        guard = _GUARDS[labels] = RepushGuard()
    return guard


class _Keep:
    """The zone a bind leaves as it was (the request named none)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


class Bound(NamedTuple):
    """A label as bound, and whether the store had never seen it before."""

    label: Label
    new: bool


async def bind(labels: "LabelService", label: str, code: str, *, device: str | None = None,
               model: str | None = None, zone: str | None = KEEP) -> Bound:
    """Bind label ``label`` (its MAC or file key) to the product with barcode or SKU ``code``, in ``zone``
    (None: no zone; KEEP: the zone it had), then push it at once.

    Raises bindings.BindInvalid, BindNotFound (no such product), BindConflict (no label device) or StoreError.
    """
    target = bindings.resolve(labels, label, device, model)
    if zone is not KEEP:
        zone = bindings.check_zone_text(zone)
    product = await labels.store.read(lambda c: lookup_scanned(c, code))
    if product is None:
        raise bindings.BindNotFound(f"no product with barcode or SKU {code!r}")
    now = utcnow()
    old = labels.label(target.mac)
    if zone is KEEP:
        zone = old.zone if old is not None else None
    row = params(bindings.rebound(old, target, product.sku, zone, now))

    def effects() -> asyncio.Task[int]:
        # Built again from the label as it is now: a push that returned during the write stays recorded.
        bound = bindings.rebound(labels.label(target.mac), target, product.sku, zone, now)
        labels.put(bound)
        labels.bus.publish(BOUND, _event(bound, new=old is None))
        return labels.push_soon({bound.mac})

    await _commit(labels, target.mac, lambda tx: save(tx.conn, [row]), effects)
    return Bound(bindings.find(labels, target.mac), old is None)


async def unbind(labels: "LabelService", label: str) -> Label:
    """Bind a label to nothing: it shows "not in use" and stays listed until bound again.

    Raises bindings.BindNotFound (no such label) or StoreError.
    """
    found = bindings.find(labels, label)
    if found.sku is None:
        return found  # bound to nothing already
    now = utcnow()
    row = params(bindings.unbound(found, now))

    def effects() -> asyncio.Task[int]:
        current = labels.label(found.mac) or found
        gone = bindings.unbound(current, now)
        labels.put(gone)
        labels.bus.publish(UNBOUND, _event(gone, was=current.sku))
        return labels.push_soon({gone.mac})

    await _commit(labels, found.mac, lambda tx: save(tx.conn, [row]), effects)
    return bindings.find(labels, found.mac)


async def repush(labels: "LabelService", label: str, client: str = "") -> Label:
    """``repush_label``'s label alone."""
    return (await repush_label(labels, label, client)).label


async def repush_label(labels: "LabelService", label: str, client: str = "") -> Repushed:
    """Draw and push label ``label`` again now, ahead of any bulk update, changed or not: unless it was
    re-pushed less than ``REPUSH_COOLDOWN_S`` ago (COOLDOWN) or its forced push is queued or under way
    (ALREADY_PUSHING). ``client`` names who asks ("": every caller that does not name itself, together).

    Raises RepushTooMany (past ``REPUSHES_PER_MIN`` a minute for ``client``), bindings.BindNotFound.
    """
    guard = repush_guard(labels)
    guard.admit(client)
    found = bindings.find(labels, label)
    if labels.forced(found.device, found.mac):
        return Repushed(found, ALREADY_PUSHING, guard.left(found.mac) or 1)
    left = guard.left(found.mac)
    if left is not None:
        return Repushed(found, COOLDOWN, left)
    guard.queued(found.mac)  # before the await: a re-push asked meanwhile finds the cooldown
    await _settled(labels.push_soon({found.mac}, force=True))
    return Repushed(bindings.find(labels, found.mac), QUEUED, None)


def _event(label: Label, **extra: Any) -> dict[str, Any]:
    """A binding's bus event: the label, its device, product and zone (no personal data)."""
    return {"mac": label.mac, "device": label.device, "sku": label.sku, "zone": label.zone, "model": label.model,
            "source": label.source, **extra}


async def _commit(labels: "LabelService", mac: str, write: Callable[[Tx], None],
                  effects: Callable[[], asyncio.Task[int]]) -> None:
    """Run ``write`` of label ``mac``'s row; once it is on disk, ``effects`` (whether or not the caller is still
    there); then wait for the label's plan, which queues it at its device. Meanwhile the service writes no row
    of the label (its old binding, in memory until ``effects``, would land after this one)."""
    planned: list[asyncio.Task[int]] = []

    def after_commit(done: asyncio.Future[None]) -> None:
        try:
            if not done.cancelled() and done.exception() is None:
                planned.append(effects())
        finally:
            labels.release(mac)

    labels.hold(mac)
    done: asyncio.Future[None] = asyncio.ensure_future(labels.store.write(write))
    # Registered before anyone awaits the write, so it runs before the caller resumes, and also when the
    # caller was cancelled meanwhile.
    done.add_done_callback(after_commit)
    await asyncio.shield(done)
    for task in planned:
        await _settled(task)


async def _settled(task: asyncio.Task[int]) -> None:
    """Wait for the service's plan of a label. Its failure (the store unreadable for a moment) is the
    service's to log and the next sweep's to mend: the binding itself is on disk."""
    await asyncio.wait([task])
