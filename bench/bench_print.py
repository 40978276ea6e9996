"""Receipts per minute through the durable print queue to the printer emulator over TCP, and the queue's cost per job.

The agent's path, in one process: a real ``Store`` (WAL, synchronous=FULL,
on a real disk), the ``PrintSpool`` of edge_agent/printing.py and the
``printer.escpos`` driver run by the supervisor's ``DeviceOwner``, printing to
the emulator (drivers/printer/emulator.py) on 127.0.0.1. N sale receipts of
10 lines are queued at once (each ``submit`` durable before it returns); the
figure is from the first submit until the emulator has cut the last receipt.
Per job that path pays: a durable insert, a DLE EOT status round trip
before the job and one after it, the ``printing`` and ``done`` commits, and
rendering the receipt.

Baseline, same run, same emulator: the same receipts rendered beforehand,
their bytes written straight to one TCP connection, until the emulator has
cut the last one. The queue's overhead per job is the difference of the two
times over N. A second pair times single receipts on an idle printer, queued
one after the other, from submit until the receipt is cut (what a kiosk
customer waits), against writing its bytes straight to the socket.

Every job must end ``done`` once and the emulator must have printed each
receipt once (its sale id read back from the barcode), or a failure row and
exit status 1. ``--quick``: 100 receipts and 20 single ones (default 500 and 50).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from dataclasses import dataclass

from common import Row, check_row, durable_tmpdir, machine, percentile, row, script_main
from drivers.base import DriverContext
from drivers.printer.config import PrinterConfig
from drivers.printer.documents import render, sale_id_from_barcode
from drivers.printer.driver import EscPosPrinter
from drivers.printer.emulator import PrinterEmulator
from drivers.printer.spool import SPOOL, JobState
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig, StoreConfig
from edge_agent.printing import PrintSpool
from edge_agent.store import Store
from edge_agent.supervisor import DeviceOwner
from edge_core.backoff import Backoff

BENCH = "print"
PROFILE = "epson-tm-t88"


@dataclass(frozen=True)
class Plan:
    """How many receipts to print in the burst and one by one."""

    burst: int
    single: int


DEFAULT = Plan(burst=500, single=50)
QUICK = Plan(burst=100, single=20)


def receipt(i: int) -> dict:
    """A 10-line sale receipt's data, as the agent queues it."""
    lines = [{"sku": f"SKU-{n}", "name": f"Velvet Matte Lipstick #{n:02d}", "qty": 1 + n % 3,
              "unit_price": "159.00", "amount": f"{159 * (1 + n % 3)}.00"} for n in range(10)]
    return {"id": str(uuid.UUID(int=i + 1)), "created_at": "2025-03-01T14:05:00+08:00", "store_name": "Bench Store",
            "lines": lines, "total": f"{sum(159 * (1 + n % 3) for n in range(10))}.00", "currency": "CNY",
            "payment": {"method": "card", "reference": "TERM-42"},
            "receipt_url": f"https://receipts.example.com/r/{uuid.UUID(int=i + 1)}"}


def cut(emu: PrinterEmulator) -> int:
    return sum(1 for r in emu.receipts() if r.end == "cut")


@dataclass
class Measured:
    queue_s: float
    direct_s: float
    queue_single: list[float]
    direct_single: list[float]
    done: int
    printed_ids: list[str]
    expected_ids: list[str]


async def through_queue(plan: Plan, emu: PrinterEmulator) -> tuple[float, list[float], int]:
    """(burst seconds, single-receipt seconds, jobs done) through store, spool and driver."""
    with durable_tmpdir("bench-print-") as tmp:
        cfg = PrinterConfig.model_validate({"id": "printer-1", "kind": "printer.escpos", "connection": "tcp",
                                            "address": f"127.0.0.1:{emu.port}", "profile": PROFILE})
        config = AgentConfig(store=StoreConfig(id="store-bench", name="Bench Store"), devices=[cfg])
        store = Store(tmp / "store.db")
        await store.start()
        bus = EventBus()
        spool = PrintSpool(store, bus, config)
        await spool.start()
        driver = EscPosPrinter(cfg, DriverContext("printer-1", bus, logging.getLogger("bench"), extras={SPOOL: spool}))
        owner = DeviceOwner(driver, bus, Backoff(initial=0.05, cap=0.5))
        owner.start()
        try:
            await wait_online(owner)
            base = cut(emu)
            began = time.perf_counter()
            for i in range(plan.burst):
                await spool.submit("printer-1", "sale_receipt", receipt(i))
            await emu.wait_for(lambda: cut(emu) == base + plan.burst, timeout=600)
            burst = time.perf_counter() - began
            singles = []
            for i in range(plan.burst, plan.burst + plan.single):
                base = cut(emu)
                start = time.perf_counter()
                await spool.submit("printer-1", "sale_receipt", receipt(i))
                await emu.wait_for(lambda: cut(emu) == base + 1, timeout=60)
                singles.append(time.perf_counter() - start)
            # The last job is marked done after its receipt is out: wait for the queue to settle.
            deadline = time.monotonic() + 30
            while (await spool.counts())["printing"] or (await spool.counts())["queued"]:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            done = len(await spool.jobs(state=JobState.DONE, limit=plan.burst + plan.single + 10))
        finally:
            await owner.stop()
            await store.stop()
    return burst, singles, done


async def wait_online(owner: DeviceOwner) -> None:
    deadline = time.monotonic() + 10
    while owner.snapshot.state.value != "online":
        if time.monotonic() > deadline:
            raise RuntimeError(f"the printer did not come online: {owner.snapshot.last_error}")
        await asyncio.sleep(0.01)  # polling a device coming up, not timing anything


async def straight(plan: Plan, emu: PrinterEmulator) -> tuple[float, list[float]]:
    """The same receipts' bytes, rendered beforehand, written to one connection."""
    burst_docs = [render("sale_receipt", receipt(i), PROFILE).data for i in range(plan.burst)]
    single_docs = [render("sale_receipt", receipt(i), PROFILE).data
                   for i in range(plan.burst, plan.burst + plan.single)]
    _, writer = await asyncio.open_connection("127.0.0.1", emu.port)
    try:
        base = cut(emu)
        began = time.perf_counter()
        for doc in burst_docs:
            writer.write(doc)
            await writer.drain()
        await emu.wait_for(lambda: cut(emu) == base + plan.burst, timeout=600)
        burst = time.perf_counter() - began
        singles = []
        for doc in single_docs:
            base = cut(emu)
            start = time.perf_counter()
            writer.write(doc)
            await writer.drain()
            await emu.wait_for(lambda: cut(emu) == base + 1, timeout=60)
            singles.append(time.perf_counter() - start)
    finally:
        writer.close()
        await writer.wait_closed()
    return burst, singles


async def measure_async(plan: Plan) -> Measured:
    async with PrinterEmulator(profile=PROFILE) as emu:
        direct_s, direct_single = await straight(plan, emu)
        emu.clear()
        queue_s, queue_single, done = await through_queue(plan, emu)
        printed = [sale_id_from_barcode(r.barcodes[0].data) for r in emu.receipts() if r.end == "cut" and r.barcodes]
    expected = [str(uuid.UUID(int=i + 1)) for i in range(plan.burst + plan.single)]
    return Measured(queue_s, direct_s, queue_single, direct_single, done, printed, expected)


def measure(plan: Plan) -> list[Row]:
    """Both paths on one emulator, then the rows."""
    note = machine()
    m = asyncio.run(measure_async(plan))
    return rows_for(plan, m, note)


def rows_for(plan: Plan, m: Measured, note: str) -> list[Row]:
    n, ms = plan.burst, 1000
    per_min_q, per_min_d = n / m.queue_s * 60, n / m.direct_s * 60
    overhead = (m.queue_s - m.direct_s) / n * ms
    how = f"{n} receipts of 10 lines queued at once, {PROFILE}, emulator on 127.0.0.1; {note}"
    q50, d50 = percentile(m.queue_single, 50) * ms, percentile(m.direct_single, 50) * ms
    q99, d99 = percentile(m.queue_single, 99) * ms, percentile(m.direct_single, 99) * ms
    single = f"{plan.single} receipts one at a time on an idle printer, submit until cut"
    return [
        row(BENCH, "receipts per minute through the durable queue", per_min_q, "receipts/min",
            "same bytes straight to the socket", per_min_d, note=how),
        row(BENCH, "queue time per receipt (burst)", m.queue_s / n * ms, "ms", "straight to the socket, per receipt",
            m.direct_s / n * ms, higher_is_better=False,
            note=f"overhead {overhead:.2f} ms/job: durable insert, 2 DLE EOT round trips, 2 commits, render"),
        row(BENCH, "one receipt on an idle printer, p50", q50, "ms", "straight to the socket p50", d50,
            higher_is_better=False, note=single),
        row(BENCH, "one receipt on an idle printer, p99", q99, "ms", "straight to the socket p99", d99,
            higher_is_better=False, note=single),
        check_row(BENCH, "every job done once", m.done, n + plan.single, "jobs", "state done in print_jobs"),
        check_row(BENCH, "every receipt printed once, in order", int(m.printed_ids == m.expected_ids), 1, "",
                  f"{len(m.printed_ids)} receipts read back by their barcode's sale id"),
    ]


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT))
