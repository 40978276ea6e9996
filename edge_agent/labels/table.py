"""The ``labels`` table: one row per label, kept in memory by the label service
and written back in batches (``Recorder``).

Per label: its binding (device, SKU, model, zone, whether devices.yaml or the
API made it), what it should show (``desired_*``, the last plan, and the
checkout's price then), the last upload its back end accepted (``pushed_*``),
what the back end confirmed it shows (``shown_*``, ``confirmed_at``), the
last error, and since when it has not shown the checkout's price
(``wrong_since``). Prices are Decimals in memory, decimal strings on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from edge_agent.errors import StoreError
from edge_agent.store import Store

log = logging.getLogger(__name__)

_TIMES = {"bound_at", "planned_at", "pushed_at", "shown_since", "confirmed_at", "error_at", "wrong_since"}
_PRICES = {"desired_price", "checkout_price", "pushed_price", "shown_price"}


@dataclass(slots=True)
class Label:
    """One label as the service knows it; a row of ``labels``."""

    mac: str
    device: str
    sku: str | None
    model: str
    source: str  # "config" or "api"
    bound_at: datetime
    desired_hash: str | None = None
    desired_price: Decimal | None = None  # None: the label should show a notice
    desired_note: str | None = None  # why a notice
    checkout_price: Decimal | None = None  # what the checkout charged at the last plan; None: not for sale
    planned_at: datetime | None = None
    pushed_hash: str | None = None
    pushed_price: Decimal | None = None
    pushed_sku: str | None = None
    pushed_at: datetime | None = None
    push_token: str | None = None  # the back end's hash of the label's picture when we pushed
    shown_hash: str | None = None
    shown_price: Decimal | None = None
    shown_sku: str | None = None
    shown_since: datetime | None = None
    confirmed_at: datetime | None = None
    shown_token: str | None = None  # the back end's hash of the confirmed picture
    last_error: str | None = None
    error_at: datetime | None = None
    wrong_since: datetime | None = None
    zone: str | None = None  # the shelf's area ("cosmetics"): its alerts go to that zone's associates

    @property
    def outstanding(self) -> bool:
        """True while an accepted push shows something else than what is confirmed."""
        return self.pushed_hash is not None and self.pushed_hash != self.shown_hash

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times ISO-8601, prices decimal strings."""
        return {f: _out(getattr(self, f)) for f in COLUMNS}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Label))
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM labels"
_UPSERT = (f"INSERT INTO labels ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           f"ON CONFLICT (mac) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "mac"))


def _out(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _in(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _TIMES:
        return datetime.fromisoformat(value)
    if column in _PRICES:
        return Decimal(value)
    return value


def from_row(row: tuple[Any, ...]) -> Label:
    """A Label from a row selected in ``COLUMNS`` order."""
    return Label(*(_in(c, v) for c, v in zip(COLUMNS, row)))


def params(label: Label) -> tuple[Any, ...]:
    """The row's values in ``COLUMNS`` order, as stored."""
    return tuple(_out(getattr(label, c)) for c in COLUMNS)


def load(conn: sqlite3.Connection, macs: list[str] | None = None) -> list[Label]:
    """Every label, or those of ``macs``."""
    if macs is None:
        return [from_row(r) for r in conn.execute(_SELECT + " ORDER BY mac")]
    out: list[Label] = []
    for i in range(0, len(macs), 500):
        part = macs[i:i + 500]
        out += [from_row(r) for r in conn.execute(_SELECT + f" WHERE mac IN ({', '.join('?' * len(part))})", part)]
    return out


def save(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert or replace rows made by ``params``."""
    conn.executemany(_UPSERT, rows)


class Recorder:
    """Writes changed labels back to the store, many per commit; one write in flight at a time.

    The service changes its in-memory labels and marks them; the rows are
    copied when the write is queued, so a later change waits for the next one.

    A label whose binding is being written by a flow is held: its row, still
    the old binding in memory, is not copied until the flow's write is on
    disk and the label in memory is the new one (``hold``, ``release``);
    writes commit in the order they are queued, so an older row can never
    land after the flow's.
    """

    def __init__(self, store: Store, labels: dict[str, Label]):
        self.store = store
        self.labels = labels
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._held: dict[str, int] = {}
        self.failures = 0

    def mark(self, label: Label) -> None:
        """Write ``label`` with the next batch."""
        self._dirty.add(label.mac)
        self._idle.clear()
        self._wake.set()

    def hold(self, mac: str) -> None:
        """Write no row of ``mac`` until it is released (as often as it was held)."""
        self._held[mac] = self._held.get(mac, 0) + 1

    def release(self, mac: str) -> None:
        """Undo one ``hold``; a row marked meanwhile goes with the next batch."""
        n = self._held.get(mac, 0) - 1
        if n > 0:
            self._held[mac] = n
            return
        self._held.pop(mac, None)
        if mac in self._dirty:
            self._wake.set()

    def start(self) -> None:
        """Start the writing task."""
        self._task = asyncio.create_task(self._run(), name="labels-recorder")

    async def flush(self) -> None:
        """Return once everything marked so far is written (or failed)."""
        while self._dirty or not self._idle.is_set():
            await self._idle.wait()
            if self._dirty:
                self._wake.set()
                await asyncio.sleep(0)

    async def stop(self) -> None:
        """Write what is marked, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), 5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            macs, self._dirty = self._dirty, set()
            if self._held:
                self._dirty = {m for m in macs if m in self._held}  # written once released
                macs -= self._dirty
            rows = [params(self.labels[m]) for m in macs if m in self.labels]
            try:
                if rows:
                    await self.store.write(lambda tx: save(tx.conn, rows))
            except StoreError as err:
                # Memory stays right; the rows are written again with the next batch.
                self.failures += 1
                log.warning("labels: could not save %d label(s): %s", len(rows), err)
                self._dirty |= macs
                await asyncio.sleep(1)
                self._wake.set()
            if not self._dirty:
                self._idle.set()
