"""Personal data kept no longer than needed, and who read it (PIPL).

What of a member the store keeps, and for how long (``privacy:`` in
devices.yaml; the README's "Personal data" section is the operator's view):

- **Sales and returns** carry the member id in their stored event (the
  outbox sends it from there, store/outbox.py RECORDS). Once the hub has
  acknowledged the event and ``retention_days`` have passed since, the sweep
  replaces ``member_id`` with null and adds ``member_pseudonym``
  (store/keys.py: a keyed hash). Pseudonymised, not purged: the store's own
  statistics (visits, baskets per member) still link a member's rows, and a
  return of an old sale still knows it had a member, whose points the hub
  takes back by the sale id. A return's ``reason`` is purged: free text
  typed at the counter may name the customer, and nothing here links on it.
- **Collected pickup orders**: the member id is pseudonymised in the same
  way once the order's last status event is acknowledged and retention has
  passed; open orders keep it (the associate hands them over). Pickup codes
  are stored only as keyed hashes (store/keys.py ``code_hash``) and go at
  collection, when nothing needs them any more. A placed order's stored
  answer (for an idempotent retry) shows the code in clear only for
  ``REPLAY_WINDOW`` after placing; its member id is swept like an order's.
- **Outbox rows** are deleted at the acknowledgement; an event the hub has
  not acknowledged is never touched, whatever its age: the hub must get it
  whole.
- **Print jobs** (receipts, slips and pick tickets name the member) are
  deleted after printing.KEEP_DONE / KEEP_FAILED, now by every sweep, not
  only at start-up.
- **The access log** (``access_log``): every read of a member's data through
  the API or the live feed, with the client, its role, the time, what was
  read (the route or feed event type) and the member as its pseudonym: the
  log itself does not spread member ids, and a member's request "who read my
  data" is answered by hashing the id asked about. Kept ``access_log_days``.
  Reads are buffered and written together (one write a second at most), so
  recording them never adds a write to a checkout; a crash loses at most the
  last second of the log.
- **The summary**: each sweep sends the reads since the last summary as one
  ``retail.privacy.access_summary`` event (sync/topics.py ``AccessSummary``),
  counts per client and role without any member, in the same transaction
  that marks them summarised: exactly once, like every event.

The sweep runs every ``sweep_interval`` seconds, first shortly after start.
It works in short writes (``SPAN`` seqs, ``CHUNK`` log rows each), each one
request in the store's group commit, so a checkout never waits long behind
it. ``clock`` is injectable: tests move time instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge_agent import printing
from edge_agent.config import PrivacyConfig, Role
from edge_agent.errors import StoreClosed, StoreError
from edge_agent.store import Store, Tx, codec, keys
from edge_agent.store.outbox import Priority
from edge_core.bus import utcnow
from edge_core.logonce import LogOnce
from edge_core.tasks import cancel_and_wait
from sync.topics import ACCESS_SUMMARY

log = logging.getLogger(__name__)
_once = LogOnce(log)

Clock = Callable[[], datetime]
# Seqs swept per write. Sales of 3 lines with a member, unpacked and packed again on the 2-core test
# machine: 500 took 15 ms (median; 26 ms at most), 200 take 8.5 ms (9.4 ms at most), which is what a
# checkout queued behind one such write waits at worst.
SPAN = 200
# Access log rows (or print jobs) deleted per write.
CHUNK = 5000
# How long a placed order's stored answer keeps the pickup code for an idempotent retry.
REPLAY_WINDOW = timedelta(hours=24)
# Reads waiting to be written: at most one write a second, at once past FLUSH_AT.
FLUSH_EVERY = 1.0
FLUSH_AT = 2000
MAX_BUFFERED = 100_000
# The first sweep after start, unless sweep_interval is shorter.
FIRST_SWEEP = 10.0


@dataclass
class SweepReport:
    """What one sweep did (for the log line and the tests)."""

    swept_to: int = 0         # sales, returns and orders up to this seq are swept
    sales: int = 0            # rows whose member id was pseudonymised
    returns: int = 0
    orders: int = 0
    placed: int = 0           # placed orders whose stored answer lost its pickup code
    access_deleted: int = 0
    print_jobs_deleted: int = 0
    summary: dict[str, Any] | None = None


class AccessLog:
    """Reads of members' data, buffered in memory and written in batches."""

    def __init__(self, store: Store, clock: Clock = utcnow):
        self.store = store
        self.clock = clock
        self._buffer: list[tuple[str, str, str, str, str]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.lost = 0  # reads not recorded because the buffer was full (the store could not write)

    def record(self, client: str, role: Role | str, member_id: str | None, what: str) -> None:
        """Note that ``client`` read ``member_id``'s data through ``what``; never blocks, never fails."""
        if not member_id or not self.store.secret:
            return
        if len(self._buffer) >= MAX_BUFFERED:
            self.lost += 1
            _once.error("access-lost", "access log: %d reads could not be recorded (the store does not write)",
                        self.lost)
            return
        role_name = role.value if isinstance(role, Role) else str(role)
        member = keys.pseudonym(self.store.secret, member_id)
        self._buffer.append((self.clock().isoformat(), client, role_name, member, what))
        if len(self._buffer) >= FLUSH_AT:
            self._wake.set()

    async def start(self) -> None:
        """Start writing the buffer."""
        self._task = asyncio.create_task(self._run(), name="access-log")

    async def stop(self) -> None:
        """Write what is buffered and stop."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        with contextlib.suppress(StoreError, StoreClosed):
            await self.flush()

    async def flush(self) -> int:
        """Write every buffered read now (one write); how many."""
        rows, self._buffer = self._buffer, []
        if not rows:
            return 0
        try:
            await self.store.write(lambda tx: tx.conn.executemany(
                "INSERT INTO access_log (at, client, role, member, what) VALUES (?, ?, ?, ?, ?)", rows))
        except BaseException:
            self._buffer[:0] = rows  # kept for the next try, in order
            raise
        return len(rows)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_EVERY):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except (StoreError, StoreClosed) as err:
                _once.warning("access-flush", "access log: cannot write %d reads yet: %s", len(self._buffer), err)


class Privacy:
    """The periodic sweep and the access log of one store."""

    def __init__(self, store: Store, config: PrivacyConfig, store_id: str, clock: Clock = utcnow):
        self.store = store
        self.config = config
        self.store_id = store_id
        self.clock = clock
        self.access = AccessLog(store, clock)
        self._task: asyncio.Task[None] | None = None
        self.last: SweepReport | None = None

    async def start(self) -> None:
        """Start the access log and the sweep."""
        await self.access.start()
        self._task = asyncio.create_task(self._run(), name="privacy-sweep")

    async def stop(self) -> None:
        """Stop the sweep (between two of its writes) and write the buffered reads."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.access.stop()

    async def _run(self) -> None:
        delay = min(FIRST_SWEEP, self.config.sweep_interval)
        while True:
            await asyncio.sleep(delay)
            delay = self.config.sweep_interval
            try:
                report = await self.sweep()
            except (StoreError, StoreClosed) as err:
                _once.warning("sweep", "privacy sweep failed, tried again in %.0f s: %s", delay, err)
                continue
            if report.sales or report.returns or report.orders or report.access_deleted:
                log.info("privacy sweep: member ids pseudonymised in %d sale(s), %d return(s), %d order(s); "
                         "%d access log row(s) past retention deleted", report.sales, report.returns,
                         report.orders, report.access_deleted)

    async def sweep(self) -> SweepReport:
        """One sweep: retention, the placed orders' replay window, the summary, the log's retention, print jobs."""
        now = self.clock()
        report = SweepReport()
        await self.access.flush()
        cutoff = (now - timedelta(days=self.config.retention_days)).isoformat()
        bound = await self.store.read(lambda conn: conn.execute(
            "SELECT coalesce(max(seq), 0) FROM acks WHERE at <= ?", (cutoff,)).fetchone()[0])
        while True:
            done, counts = await self.store.write(lambda tx: _sweep_span(tx, bound, SPAN))
            report.sales += counts[0]
            report.returns += counts[1]
            report.orders += counts[2]
            moved, report.swept_to = done != report.swept_to, done
            if done >= bound or not moved:  # not moved: held back by meta.acked_seq
                break
        placed_before = (now - REPLAY_WINDOW).isoformat()
        while True:
            n, passed = await self.store.write(lambda tx: _forget_placed_codes(tx, placed_before, CHUNK))
            report.placed += n
            if not passed:
                break
        report.summary = await self.store.write(lambda tx: summarise(tx, self.store_id))
        log_cutoff = (now - timedelta(days=self.config.access_log_days)).isoformat()
        while n := await self.store.write(lambda tx: _expire_access(tx, log_cutoff, CHUNK)):
            report.access_deleted += n
        done_before = (now - printing.KEEP_DONE).isoformat()
        failed_before = (now - printing.KEEP_FAILED).isoformat()
        while n := await self.store.write(lambda tx: _expire_print_jobs(tx, done_before, failed_before, CHUNK)):
            report.print_jobs_deleted += n
        self.last = report
        return report


def _meta(tx: Tx, key: str) -> int:
    return tx.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]


def _swept(event: dict[str, Any], key: bytes) -> bool:
    """Pseudonymise the event's member in place; True if it had one."""
    member = event.get("member_id")
    if not member:
        return False
    event["member_id"] = None
    event["member_pseudonym"] = keys.pseudonym(key, member)
    return True


def _sweep_span(tx: Tx, bound: int, span: int) -> tuple[int, tuple[int, int, int]]:
    """Sweep the records of the next ``span`` seqs up to ``bound``; (the new cursor, (sales, returns, orders))."""
    cursor = _meta(tx, "privacy_swept_seq")
    # Never past what the hub acknowledged, whatever the acks table says: the outbox
    # reads an unacknowledged sale's event from its record, which must stay as sent.
    upto = min(bound, cursor + span, _meta(tx, "acked_seq"))
    if upto <= cursor:
        return cursor, (0, 0, 0)
    key = tx.secret
    n_sales = n_returns = n_orders = 0
    for seq, body in tx.execute("SELECT seq, body FROM sales WHERE seq > ? AND seq <= ?", (cursor, upto)).fetchall():
        stored = codec.unpack(body)
        if _swept(stored["event"], key):
            tx.execute("UPDATE sales SET body = ? WHERE seq = ?", (codec.pack(stored), seq))
            n_sales += 1
    for seq, body in tx.execute("SELECT seq, body FROM returns WHERE seq > ? AND seq <= ?",
                                (cursor, upto)).fetchall():
        stored = codec.unpack(body)
        event = stored["event"]
        member = _swept(event, key)
        if member or event.get("reason") is not None:
            event["reason"] = None
            tx.execute("UPDATE returns SET body = ? WHERE seq = ?", (codec.pack(stored), seq))
            n_returns += member
    for order_id, member in tx.execute(
            "SELECT order_id, member_id FROM orders WHERE status_seq > ? AND status_seq <= ? AND status = 'collected' "
            "AND member_id IS NOT NULL", (cursor, upto)).fetchall():
        tx.execute("UPDATE orders SET member_id = NULL, member_pseudonym = ? WHERE order_id = ?",
                   (keys.pseudonym(key, member), order_id))
        n_orders += 1
    for order_id, body in tx.execute("SELECT order_id, body FROM placed_orders WHERE seq > ? AND seq <= ?",
                                     (cursor, upto)).fetchall():
        order = codec.unpack(body)
        if _swept(order, key):
            tx.execute("UPDATE placed_orders SET body = ? WHERE order_id = ?", (codec.pack(order), order_id))
    tx.execute("UPDATE meta SET value = ? WHERE key = 'privacy_swept_seq'", (upto,))
    tx.execute("DELETE FROM acks WHERE seq <= ?", (upto,))  # their work is done
    return upto, (n_sales, n_returns, n_orders)


def _forget_placed_codes(tx: Tx, placed_before: str, limit: int) -> tuple[int, int]:
    """Drop the pickup code from placed orders' stored answers older than the replay window;
    (answers changed, orders passed)."""
    cursor = _meta(tx, "privacy_placed_seq")
    n = passed = 0
    last = cursor
    for seq, order_id, body in tx.execute("SELECT seq, order_id, body FROM placed_orders WHERE seq > ? "
                                          "ORDER BY seq LIMIT ?", (cursor, limit)).fetchall():
        order = codec.unpack(body)
        if order.get("placed_at", "") > placed_before:
            break
        if order.get("pickup_code") is not None or order.get("pickup_qr") is not None:
            order["pickup_code"] = order["pickup_qr"] = None
            tx.execute("UPDATE placed_orders SET body = ? WHERE order_id = ?", (codec.pack(order), order_id))
            n += 1
        last = seq
        passed += 1
    if passed:
        tx.execute("UPDATE meta SET value = ? WHERE key = 'privacy_placed_seq'", (last,))
    return n, passed


def summarise(tx: Tx, store_id: str) -> dict[str, Any] | None:
    """Emit the reads logged since the last summary as one ``retail.privacy.access_summary``; its data, or None."""
    last = _meta(tx, "privacy_summary_id")
    top = tx.execute("SELECT max(id) FROM access_log").fetchone()[0]
    if top is None or top <= last:
        return None
    clients: dict[tuple[str, str], dict[str, Any]] = {}
    for client, role, reads, members in tx.execute(
            "SELECT client, role, count(*), count(DISTINCT member) FROM access_log WHERE id > ? AND id <= ? "
            "GROUP BY client, role ORDER BY client, role", (last, top)):
        clients[client, role] = {"client": client, "role": role, "reads": reads, "members": members, "what": {}}
    for client, role, what, reads in tx.execute(
            "SELECT client, role, what, count(*) FROM access_log WHERE id > ? AND id <= ? "
            "GROUP BY client, role, what ORDER BY client, role, what", (last, top)):
        clients[client, role]["what"][what] = reads
    first, latest, total = tx.execute("SELECT min(at), max(at), count(*) FROM access_log WHERE id > ? AND id <= ?",
                                      (last, top)).fetchone()
    data = {"store": store_id, "first": first, "last": latest, "reads": total, "clients": list(clients.values())}
    tx.emit(ACCESS_SUMMARY, data, Priority.BUSINESS)  # an audit record: never dropped for the outbox budget
    tx.execute("UPDATE meta SET value = ? WHERE key = 'privacy_summary_id'", (top,))
    return data


def _expire_access(tx: Tx, before: str, limit: int) -> int:
    """Delete up to ``limit`` access log rows older than ``before`` that a summary already counted."""
    summarised = _meta(tx, "privacy_summary_id")
    return tx.execute("DELETE FROM access_log WHERE id IN (SELECT id FROM access_log WHERE at < ? AND id <= ? "
                      "LIMIT ?)", (before, summarised, limit)).rowcount


def _expire_print_jobs(tx: Tx, done_before: str, failed_before: str, limit: int) -> int:
    """Delete finished print jobs past printing's own retention (their documents name members)."""
    return tx.execute(
        "DELETE FROM print_jobs WHERE seq IN (SELECT seq FROM print_jobs WHERE (state = 'done' AND finished_at < ?) "
        "OR (state = 'failed' AND finished_at < ?) LIMIT ?)", (done_before, failed_before, limit)).rowcount


def member_pseudonym(store: Store, member_id: str) -> str:
    """The pseudonym ``member_id`` has in this store (to look a member up in swept rows or the access log)."""
    return keys.pseudonym(store.secret, member_id)
