"""The durable print queue: ``print_jobs`` in the local store, and what the API and printers do with it.

A job is committed (``Store.write``) before anyone hears "accepted": the
test page of ``POST /v1/print`` before its 202, a sale's receipt in the very
transaction that stores the sale, so a sale never exists without its
receipt job and a replayed sale adds none. Each printer driver
(drivers/printer/driver.py) takes its jobs from here through the ``Spool``
interface of drivers/printer/spool.py, oldest first, and moves them
``queued -> printing -> done | failed``. A job found ``printing`` when the
agent starts was cut short (power cut, kill -9): it goes back to ``queued``
with ``reprint`` set and prints again marked "REPRINT", never lost and never
silently doubled.

Receipts print on the printer of the selling client (``station:``); a
return slip too, or, for a client without one (an associate's PAD), on the
printer with ``return_slips: true``; pick tickets on the one with
``pick_tickets: true``.

Alerts for printers that need someone (paper out, cover open) go to the hub
as ``retail.device.alert`` (telemetry) and to associates as ``alert.raised``
on the bus, with ``alert.cleared`` when fixed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from drivers.printer.config import PrinterConfig
from drivers.printer.documents import MODELS, DocumentKind
from drivers.printer.spool import Job, JobState
from edge_agent import catalog, loyalty
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig
from edge_agent.store import Store, Tx
from edge_agent.store.outbox import Priority
from edge_core.bus import utcnow

log = logging.getLogger(__name__)

# Finished jobs are kept this long for GET /v1/print/jobs, then deleted at start-up.
KEEP_DONE = timedelta(days=7)
KEEP_FAILED = timedelta(days=30)
_COLUMNS = ("id, device, kind, data, state, reprint, attempts, replaced, reason, ref, "
            "created_at, started_at, finished_at")


class UnknownJob(LookupError):
    """No print job with that id."""


class NotRetryable(ValueError):
    """Only a failed job can be retried."""


def _job(row: tuple) -> Job:
    id_, device, kind, data, state, reprint, attempts, replaced, reason, ref, created, started, finished = row
    return Job(id=id_, device=device, kind=kind, data=json.loads(data), state=JobState(state),
               reprint=bool(reprint), attempts=attempts, replaced=replaced, reason=reason, ref=ref,
               created_at=created, started_at=started, finished_at=finished)


def insert_job(conn: sqlite3.Connection | Tx, device: str, kind: DocumentKind, data: dict[str, Any],
               ref: str | None = None) -> Job:
    """Queue a job inside the caller's transaction (a sale's, or one of its own)."""
    if kind not in MODELS:
        raise ValueError(f"unknown document kind {kind!r}; one of {', '.join(MODELS)}")
    job = Job(id=str(uuid.uuid4()), device=device, kind=kind, data=data, state=JobState.QUEUED, ref=ref,
              created_at=utcnow().isoformat())
    conn.execute(
        "INSERT INTO print_jobs (id, device, kind, data, state, ref, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job.id, device, kind, json.dumps(data, ensure_ascii=False, separators=(",", ":")), job.state.value,
         ref, job.created_at),
    )
    return job


def member_points(conn: sqlite3.Connection, member_id: str | None) -> int | None:
    """The member's points as this store knows them now: the card the hub last sent, less what the
    store used from it since, plus what sales here earned since (this very transaction's included);
    None without a card."""
    if not member_id:
        return None
    balance = loyalty.balance(conn, member_id, utcnow())
    return None if balance is None else balance.total


def promoted_lines(conn: sqlite3.Connection, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sale's lines, each sold below the catalog's regular price with that price and its promotion's label.

    Read in the sale's own transaction, so the catalog is the one the sale was
    priced from: a unit price below the regular one is the promotion's price.
    The sale's own unit price stays what is printed as paid."""
    products = catalog.products(conn, (ln["sku"] for ln in lines))
    out = []
    for line in lines:
        product = products.get(line["sku"])
        if product is not None and product.price > Decimal(line["unit_price"]):
            label = product.promo.label if product.promo is not None else None
            line = {**line, "regular_price": catalog.money(product.price), "promo": label}
        out.append(line)
    return out


class PrintSpool:
    """The print queue of every printer of the store (implements drivers.printer.spool.Spool)."""

    def __init__(self, store: Store, bus: EventBus, config: AgentConfig):
        self.store = store
        self.bus = bus
        self.config = config
        self.zone = ZoneInfo(config.store.timezone)
        self.printers: dict[str, PrinterConfig] = {
            d.id: d for d in config.devices if isinstance(d, PrinterConfig) and d.enabled}
        self._wake: dict[str, asyncio.Event] = {}

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Put jobs cut short by the last run back in the queue; forget old finished ones."""
        now = utcnow()

        def recover(tx: Tx) -> int:
            cut = tx.execute("UPDATE print_jobs SET state = 'queued', reprint = 1, "
                             "reason = 'interrupted by an agent restart' WHERE state = 'printing'").rowcount
            tx.execute("DELETE FROM print_jobs WHERE state = 'done' AND finished_at < ?",
                       ((now - KEEP_DONE).isoformat(),))
            tx.execute("DELETE FROM print_jobs WHERE state = 'failed' AND finished_at < ?",
                       ((now - KEEP_FAILED).isoformat(),))
            return cut

        cut = await self.store.write(recover)
        if cut:
            log.warning("printing: %s cut short by the last stop; %s again marked REPRINT",
                        "1 job was" if cut == 1 else f"{cut} jobs were", "it prints" if cut == 1 else "they print")

    # What the API uses -----------------------------------------------------

    def printer_for(self, station: str) -> PrinterConfig | None:
        """The printer whose receipts are ``station``'s (the api client name), if any."""
        return next((p for p in self.printers.values() if p.station == station), None)

    def local_time(self, when: datetime | str) -> str:
        """``when`` in the store's timezone, ISO-8601: documents print times as given."""
        moment = datetime.fromisoformat(when) if isinstance(when, str) else when
        return moment.astimezone(self.zone).isoformat()

    def receipt_data(self, conn: sqlite3.Connection, printer: PrinterConfig, sale: dict[str, Any]) -> dict[str, Any]:
        """A sale receipt's document data: the sale as stored plus store name, e-receipt URL, points
        balance and the promotions of its lines (the sale's ``points_value`` prints as it is)."""
        store = self.config.store
        data = {k: v for k, v in sale.items() if k not in ("seq", "client", "store")}
        data["store_name"] = store.name
        data["created_at"] = self.local_time(sale["created_at"])
        url = printer.receipt_link(sale["id"], store.id)
        if url:
            data["receipt_url"] = url
        points = member_points(conn, sale.get("member_id"))
        if points is not None:
            data["points_balance"] = points  # this sale's redeemed and earned points already counted
        data["lines"] = promoted_lines(conn, sale["lines"])
        return data

    def queue_receipt(self, tx: Tx, station: str, sale: dict[str, Any]) -> Job | None:
        """In the sale's own transaction: its receipt job on ``station``'s printer, if it has one."""
        printer = self.printer_for(station)
        if printer is None:
            return None
        return insert_job(tx, printer.id, "sale_receipt", self.receipt_data(tx.conn, printer, sale), ref=sale["id"])

    def return_slip_printer(self, station: str) -> PrinterConfig | None:
        """Where ``station``'s return slips print: its own printer, else the first with ``return_slips: true``."""
        return self.printer_for(station) or next((p for p in self.printers.values() if p.return_slips), None)

    def queue_return_slip(self, tx: Tx, station: str, ret: dict[str, Any]) -> Job | None:
        """In the return's own transaction: its slip, if ``station`` or the store has a printer for it."""
        printer = self.return_slip_printer(station)
        if printer is None:
            return None
        data = {k: v for k, v in ret.items() if k not in ("seq", "client", "store")}
        data["store_name"] = self.config.store.name
        data["created_at"] = self.local_time(ret["created_at"])
        data["currency"] = ret.get("currency") or self.config.store.currency  # online returns: the hub refunds
        points = member_points(tx.conn, ret.get("member_id"))
        if points is not None:
            data["points_balance"] = points
        return insert_job(tx, printer.id, "return_slip", data, ref=ret["id"])

    def pick_printer(self) -> PrinterConfig | None:
        """The printer pick tickets go to: the first with ``pick_tickets: true``, if any."""
        return next((p for p in self.printers.values() if p.pick_tickets), None)

    def queue_pick_ticket(self, tx: Tx, order: dict[str, Any]) -> Job | None:
        """In the order's own transaction: its pick ticket, if a printer takes them."""
        printer = self.pick_printer()
        if printer is None:
            return None
        data = {**order, "store_name": self.config.store.name, "time": self.local_time(order["received_at"])}
        if order.get("ready_by"):
            data["ready_by"] = self.local_time(order["ready_by"])
        return insert_job(tx, printer.id, "pick_ticket", data, ref=order["order_id"])

    def notify(self, device: str) -> None:
        """Wake the printer's driver: a job was committed for it."""
        self._wake.setdefault(device, asyncio.Event()).set()

    async def jobs(self, device: str | None = None, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Jobs, newest first, optionally of one device and in one state."""
        where, args = [], []
        if device is not None:
            where.append("device = ?")
            args.append(device)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        sql = (f"SELECT {_COLUMNS} FROM print_jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY seq DESC LIMIT ?")
        rows = await self.store.read(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [_job(r) for r in rows]

    async def job(self, job_id: str) -> Job:
        """One job; UnknownJob if there is none."""
        row = await self.store.read(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM print_jobs WHERE id = ?", (job_id,)).fetchone())
        if row is None:
            raise UnknownJob(f"no print job {job_id}")
        return _job(row)

    async def retry(self, job_id: str) -> Job:
        """A failed job back in the queue (marked REPRINT if it had started printing before)."""

        def again(tx: Tx) -> tuple | None:
            cur = tx.execute("UPDATE print_jobs SET state = 'queued', reason = NULL, finished_at = NULL, "
                             "reprint = (attempts > 0 OR reprint), attempts = 0 WHERE id = ? AND state = 'failed'",
                             (job_id,))
            if cur.rowcount == 0:
                return None
            return tx.execute(f"SELECT {_COLUMNS} FROM print_jobs WHERE id = ?", (job_id,)).fetchone()

        row = await self.store.write(again)
        if row is None:
            job = await self.job(job_id)  # UnknownJob if there is no such job
            raise NotRetryable(f"job {job_id} is {job.state.value}; only a failed job can be retried")
        job = _job(row)
        self.notify(job.device)
        return job

    async def counts(self) -> dict[str, int]:
        """Jobs per state, for GET /v1/health (done jobs are not counted)."""
        rows = await self.store.read(lambda c: c.execute(
            "SELECT state, count(*) FROM print_jobs WHERE state != 'done' GROUP BY state").fetchall())
        found = dict(rows)
        return {s.value: found.get(s.value, 0) for s in (JobState.QUEUED, JobState.PRINTING, JobState.FAILED)}

    # The Spool interface, for printer drivers ------------------------------

    async def next_job(self, device: str, timeout: float) -> tuple[Job | None, int]:
        """The oldest queued job of ``device`` and the queue's depth; waits up to ``timeout`` s for one."""
        wake = self._wake.setdefault(device, asyncio.Event())
        wake.clear()  # before the read: a job committed after it sets the event again
        found = await self.store.read(lambda c: _next(c, device))
        if found[0] is None and timeout > 0:
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                return found
            found = await self.store.read(lambda c: _next(c, device))
        return found

    async def submit(self, device: str, kind: DocumentKind, data: dict[str, Any]) -> Job:
        """Queue a job; returns once it is on disk. Store name and local time are filled in if missing."""
        defaults: dict[str, Any] = {"store_name": self.config.store.name}
        if "time" not in data and "created_at" not in data:
            defaults["time"] = self.local_time(utcnow())
        data = {**defaults, **data}
        job = await self.store.write(lambda tx: insert_job(tx, device, kind, data))
        self.notify(device)
        return job

    async def started(self, job: Job) -> Job:
        """queued -> printing with one more attempt; the job as it now is."""
        now = utcnow().isoformat()

        def start(tx: Tx) -> tuple | None:
            cur = tx.execute("UPDATE print_jobs SET state = 'printing', attempts = attempts + 1, started_at = ?, "
                             "reason = NULL WHERE id = ? AND state = 'queued'", (now, job.id))
            if cur.rowcount == 0:
                return None
            return tx.execute(f"SELECT {_COLUMNS} FROM print_jobs WHERE id = ?", (job.id,)).fetchone()

        row = await self.store.write(start)
        if row is None:
            raise UnknownJob(f"print job {job.id} is no longer queued")
        return _job(row)

    async def done(self, job: Job, replaced: int) -> None:
        """printing -> done; ``replaced`` characters came out as "?"."""
        now = utcnow().isoformat()
        await self.store.write(lambda tx: tx.execute(
            "UPDATE print_jobs SET state = 'done', replaced = ?, finished_at = ?, reason = NULL WHERE id = ?",
            (replaced, now, job.id)))

    async def failed(self, job: Job, reason: str) -> None:
        """-> failed with ``reason``."""
        now = utcnow().isoformat()
        await self.store.write(lambda tx: tx.execute(
            "UPDATE print_jobs SET state = 'failed', reason = ?, finished_at = ? WHERE id = ?",
            (reason[:1000], now, job.id)))
        log.warning("printing: job %s (%s on %s) failed: %s", job.id, job.kind, job.device, reason)

    async def interrupted(self, device: str, reason: str) -> int:
        """Every ``printing`` job of ``device`` back to queued, marked for a reprint."""
        n = await self.store.write(lambda tx: tx.execute(
            "UPDATE print_jobs SET state = 'queued', reprint = 1, reason = ? WHERE device = ? AND state = 'printing'",
            (reason[:1000], device)).rowcount)
        if n:
            self.notify(device)
        return n

    async def alert(self, device: str, code: str, message: str, *, cleared: bool = False,
                    warning: bool = False) -> None:
        """One alert (or its clearing) to the hub (outbox, telemetry) and to associates (bus)."""
        severity = "info" if cleared else "warning" if warning else "error"
        data = {"device": device, "severity": severity, "code": code,
                "state": "cleared" if cleared else "raised", "message": message[:500]}
        printer = self.printers.get(device)
        if printer is not None and printer.station:
            data["station"] = printer.station
        await self.store.emit("retail.device.alert", data, Priority.TELEMETRY)
        self.bus.publish("alert.cleared" if cleared else "alert.raised", data)


def _next(conn: sqlite3.Connection, device: str) -> tuple[Job | None, int]:
    row = conn.execute(f"SELECT {_COLUMNS} FROM print_jobs WHERE device = ? AND state = 'queued' "
                       "ORDER BY seq LIMIT 1", (device,)).fetchone()
    if row is None:
        return None, 0
    depth = conn.execute("SELECT count(*) FROM print_jobs WHERE device = ? AND state = 'queued'",
                         (device,)).fetchone()[0]
    return _job(row), depth
