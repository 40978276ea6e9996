"""ESC/POS receipt printer (kind ``printer.escpos``) over TCP (port 9100), serial or USB.

The driver owns its printer's transport and drains its jobs from the
durable print queue (``Spool``, edge_agent/printing.py), one at a time:

1. Before each job, and every ``IDLE_STATUS`` s between jobs, it asks for
   the real-time status (DLE EOT 1-4). Paper out, cover open, a cutter
   error...: the job waits, the device shows ``error`` with the reason, one
   alert goes out, and the status is polled every ``paper_check_interval``
   s until the printer is fixed; then the alert is cleared and printing
   goes on by itself.
2. The job is marked ``printing`` on disk, rendered (with "REPRINT" if an
   earlier attempt may have printed), and sent in chunks.
3. The status is asked again. Its answer means the printer has all of the
   job; if it stopped meanwhile (paper ran out mid-receipt) the rest waits
   in its buffer and comes out when it is fixed, so the job is done then.
   Only then is the job marked ``done``.

A link that drops, a write that stalls, or a status query that gets no or a
garbled answer during a job puts the job back in the queue marked for a
reprint and ends the session (the supervisor shows ``offline``/``error``
with the reason and reopens). A printer that answers nothing or garbage to
DLE EOT never gets a job: it is not known to be able to print it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import ValidationError

from drivers.base import DemoEmulator, DemoSite, DeviceConfig, Driver, DriverContext, Reporting
from drivers.printer import status as st
from drivers.printer.config import PrinterConfig
from drivers.printer.documents import render
from drivers.printer.profiles import get_profile
from drivers.printer.spool import SPOOL, Job, Spool
from drivers.transport import Transport
from drivers.transport.serial import SerialTransport
from edge_core.errors import DeviceError, DeviceProtocolError, DeviceTimeout, TransportClosed

# Seconds between status queries while idle: a printer that ran out of paper
# or was opened is noticed before the next customer's receipt needs it.
IDLE_STATUS = 5.0
# Seconds a chunk may take to go out before the printer counts as stalled
# (it stopped taking data: buffer full and not printing).
WRITE_STALL = 10.0
# Bytes per write: the printer's buffer takes a few KiB at a time.
CHUNK = 4096
# A job cut short this many times fails instead of printing for ever.
MAX_ATTEMPTS = 5


def _code(reason: str) -> str:
    """An alert code from a reason: "paper out" -> "paper_out"."""
    return re.sub(r"[^a-z0-9]+", "_", reason.split(" (")[0].lower()).strip("_")


class EscPosPrinter(Driver):
    """Prints the jobs of the durable print queue on an ESC/POS printer, checking its status around each."""

    kind = "printer.escpos"
    health_fields = ("printed", "reprints", "interrupted", "failed", "alerts", "replaced_chars")
    Config = PrinterConfig
    capabilities = frozenset({"print", "status"})
    commands = frozenset({"print_test_page"})
    reporting = Reporting.POLL
    check_interval = IDLE_STATUS
    # A printer that answered garbage is retried at least this often, so one
    # that is fixed prints again within seconds, not after a 30 s backoff.
    retry_cap = 5.0

    @classmethod
    def demo_emulator(cls, config: DeviceConfig, site: DemoSite) -> DemoEmulator | None:
        """The ESC/POS emulator for a TCP printer on loopback (drivers/printer/demo.py)."""
        from drivers.printer.demo import demo_emulator
        if not isinstance(config, PrinterConfig):
            return None
        return demo_emulator(config, site)

    def __init__(self, config: PrinterConfig, ctx: DriverContext, transport: Transport | None = None,
                 spool: Spool | None = None):
        super().__init__(config, ctx)
        self.transport = transport or config.transport()
        self.profile = get_profile(config.profile)
        # open() connects (up to 3 s for TCP) and asks for the status once.
        self.op_timeout = 4.0 + config.status_timeout
        self._spool = spool
        self.status: st.PrinterStatus | None = None
        # The problem associates were alerted about (an alert code), until it clears.
        self._alerted: str | None = None
        self._warned: str | None = None
        if isinstance(self.transport, SerialTransport):
            # A chunk goes out in about two seconds at the line's speed (10 bits a byte),
            # well within the port's 5 s write timeout.
            self._chunk = max(64, min(CHUNK, config.baudrate // 5))
        else:
            self._chunk = CHUNK

    @property
    def spool(self) -> Spool:
        """The print queue, from the constructor or from the agent (DriverContext.extras)."""
        spool = self._spool or self.ctx.extras.get(SPOOL)
        if spool is None:
            raise RuntimeError(f"{self.ctx.device_id}: no print queue; the agent passes one in extras[{SPOOL!r}]")
        return spool

    # Life cycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect and make sure the printer answers a status query."""
        await self.transport.open()
        self.status = await self.read_status()

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        await self.transport.close()

    async def check(self) -> None:
        """The link is still there; run() asks the printer itself between jobs."""
        if not self.transport.is_open:
            raise TransportClosed(f"{self.transport.describe()} is closed")

    async def run(self) -> None:
        """Print queued jobs one by one, for as long as the printer answers."""
        device = self.ctx.device_id
        cut = await self.spool.interrupted(device, "the link to the printer dropped during the job")
        if cut:
            self.ctx.log.warning("%s: %d job(s) cut short by a dropped link will print again as REPRINT", device, cut)
        while True:
            job, waiting = await self.spool.next_job(device, timeout=0 if self._alerted else IDLE_STATUS)
            self.ctx.counters["waiting"] = waiting
            if await self._attend(await self.read_status()):
                await asyncio.sleep(self.config.paper_check_interval)  # type: ignore[attr-defined]
                continue
            if job is not None:
                self.ctx.counters["waiting"] = waiting - 1  # the ones behind this job
                async with self.busy():
                    await self._print(job)

    async def command(self, action: str, args: dict[str, Any]) -> Any:
        """``print_test_page``: queue a test page; the answer has its job id."""
        if action != "print_test_page":
            raise NotImplementedError(action)
        job = await self.spool.submit(self.ctx.device_id, "test_page", {"device_id": self.ctx.device_id})
        return {"device": self.ctx.device_id, "job": job.id, "state": job.state.value}

    # Status ----------------------------------------------------------------------

    async def read_status(self) -> st.PrinterStatus:
        """Ask DLE EOT 1-4; DeviceTimeout without four replies, DeviceProtocolError for garbage."""
        timeout: float = self.config.status_timeout  # type: ignore[attr-defined]
        try:
            await self._discard_stale()
            await self.transport.write(st.all_queries())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            got = b""
            while len(got) < len(st.STATUS_QUERIES):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                got += await self.transport.read(len(st.STATUS_QUERIES) - len(got), timeout=remaining)
            if not got:
                raise DeviceTimeout(f"no answer to the status query (DLE EOT) within {timeout:g} s: "
                                    "is the printer on, and does it speak ESC/POS?")
            if len(got) < len(st.STATUS_QUERIES):
                raise DeviceTimeout(f"only {len(got)} of 4 status bytes within {timeout:g} s ({got!r})")
            try:
                return st.parse_status(got)
            except DeviceProtocolError as err:
                raise DeviceProtocolError(f"garbage in answer to the status query: {err}") from err
        except (DeviceTimeout, DeviceProtocolError) as err:
            # There, but not making sense: staff should look at it.
            code = "no_status" if isinstance(err, DeviceTimeout) else "bad_status"
            await self._raise_alert(code, str(err))
            raise

    async def _discard_stale(self) -> None:
        """Drop bytes left from an earlier exchange (a late reply), so replies line up with queries."""
        for _ in range(64):
            if not await self.transport.read(4096, timeout=0):
                return

    async def _attend(self, status: st.PrinterStatus) -> bool:
        """Show and alert a problem (True: wait), or clear an earlier one (False: print)."""
        self.status = status
        reason = st.problem(status)
        if reason is not None:
            self.fault(reason)
            await self._raise_alert(_code(reason), reason)
            return True
        if self._alerted is not None:
            code, self._alerted = self._alerted, None
            await self.spool.alert(self.ctx.device_id, code, f"{self.ctx.device_id}: fixed, printing again",
                                   cleared=True)
            self.ctx.log.warning("%s: printer fixed (%s), printing again", self.ctx.device_id, code)
        self.fault(None)
        warning = st.warning(status)
        if warning != self._warned:
            if self._warned is not None:
                await self.spool.alert(self.ctx.device_id, _code(self._warned), f"{self.ctx.device_id}: ok again",
                                       cleared=True)
            if warning is not None:
                await self.spool.alert(self.ctx.device_id, _code(warning), f"{self.ctx.device_id}: {warning}",
                                       warning=True)
            self._warned = warning
        return False

    async def _raise_alert(self, code: str, message: str) -> None:
        """One alert per problem: a poll that finds the same problem again says nothing.

        Another problem replaces the one alerted before, whose alert is cleared
        first: opening the cover to load paper turns ``paper_out`` into
        ``cover_open``, and closing it must leave no alert up.
        """
        if self._alerted == code:
            return
        if self._alerted is not None:
            await self.spool.alert(self.ctx.device_id, self._alerted,
                                   f"{self.ctx.device_id}: {self._alerted.replace('_', ' ')} is over; now {message}",
                                   cleared=True)
        self._alerted = code
        self.ctx.count("alerts")
        await self.spool.alert(self.ctx.device_id, code, f"{self.ctx.device_id}: {message}")

    # Printing ------------------------------------------------------------------

    async def _print(self, job: Job) -> None:
        """One job, from queued to done (or failed, or back to queued for a reprint)."""
        device = self.ctx.device_id
        if job.attempts >= MAX_ATTEMPTS:
            await self._fail(job, f"cut short {job.attempts} times; check the printer and its cable, then retry")
            return
        try:
            job = await self.spool.started(job)
        except LookupError:
            return  # retried, or taken by someone else, since it was read
        try:
            doc = await asyncio.to_thread(render, job.kind, job.data, self.profile, reprint=job.reprint)
        except (ValidationError, ValueError, KeyError, TypeError) as err:
            await self._fail(job, f"cannot render the {job.kind}: {_short(err)}")
            return
        try:
            await self._send(doc.data)
            status = await self.read_status()
            while await self._attend(status):  # stopped mid-job: the rest is in its buffer
                await asyncio.sleep(self.config.paper_check_interval)  # type: ignore[attr-defined]
                status = await self.read_status()
        except DeviceError as err:
            await self.spool.interrupted(device, f"cut short: {err}")
            self.ctx.count("interrupted")
            raise
        await self.spool.done(job, doc.replaced)
        self.ctx.count("printed")
        if job.reprint:
            self.ctx.count("reprints")
        if doc.replaced:
            self.ctx.count("replaced_chars", doc.replaced)
            self.ctx.log.info("%s: job %s printed with %d character(s) as '?' (not in the printer's code pages)",
                              device, job.id, doc.replaced)

    async def _send(self, data: bytes) -> None:
        """Write ``data`` in chunks; DeviceTimeout when the printer stops taking it."""
        for start in range(0, len(data), self._chunk):
            try:
                async with asyncio.timeout(WRITE_STALL):
                    await self.transport.write(data[start:start + self._chunk])
            except TimeoutError as err:
                raise DeviceTimeout(f"the printer took no data for {WRITE_STALL:g} s "
                                    f"({start} of {len(data)} bytes sent)") from err

    async def _fail(self, job: Job, reason: str) -> None:
        await self.spool.failed(job, reason)
        self.ctx.count("failed")


def _short(err: Exception) -> str:
    if isinstance(err, ValidationError):
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"]) or "data"
        return f"{loc}: {e['msg']} ({err.error_count()} problem(s))"
    return str(err)[:300]
