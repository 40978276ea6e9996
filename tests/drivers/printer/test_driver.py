"""The printer driver against the real emulator over TCP and a pty, with the real print queue on a real Store.

Each test runs the driver under a real DeviceOwner (the supervisor's), so
the device's state (online, busy, error with its reason) is what the API
would show. Waits are on conditions with deadlines: the emulator's
``wait_for`` or ``until`` below, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DeviceState, DriverContext
from drivers.printer import documents
from drivers.printer.config import PrinterConfig
from drivers.printer.driver import EscPosPrinter
from drivers.printer.emulator import Element, PrinterEmulator, Text
from drivers.printer.spool import SPOOL, Job, JobState
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig, StoreConfig
from edge_agent.printing import PrintSpool
from edge_agent.store import Store
from edge_agent.store import outbox
from edge_agent.supervisor import DeviceOwner
from edge_core.backoff import Backoff

SALE_ID = "0190a5e4-7c3b-7d2e-9f10-3a4b5c6d7e8f"
URL = f"https://receipts.example.com/store-test/{SALE_ID}"


def run(coro, timeout: float = 20.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def sale(lines: int = 2, name: str = "Organic Milk 1 L") -> dict[str, Any]:
    """A sale receipt's data as the agent queues it."""
    return {
        "id": SALE_ID, "created_at": "2025-03-01T14:05:00+08:00", "store_name": "Test Store",
        "lines": [{"sku": f"SKU-{i}", "name": f"{name} #{i}", "qty": 1, "unit_price": "12.50", "amount": "12.50"}
                  for i in range(lines)],
        "total": f"{12.5 * lines:.2f}", "currency": "CNY", "payment": {"method": "card", "reference": "T-1"},
        "receipt_url": URL,
    }


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    emu: PrinterEmulator
    store: Store
    bus: EventBus
    spool: PrintSpool
    driver: EscPosPrinter
    owner: DeviceOwner
    alerts: Any  # a bus subscription to alert.*

    @property
    def state(self) -> DeviceState:
        return self.owner.snapshot.state

    @property
    def last_error(self) -> str | None:
        return self.owner.snapshot.last_error

    async def job(self, job: Job) -> Job:
        return await self.spool.job(job.id)

    async def until_job(self, job: Job, state: JobState, timeout: float = 5.0) -> Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (now := await self.spool.job(job.id)).state != state:
            if loop.time() > deadline:
                raise AssertionError(f"job stayed {now.state.value} ({now.reason}), expected {state.value}")
            await asyncio.sleep(0.01)
        return now

    def bus_alerts(self) -> list[tuple[str, dict]]:
        got = []
        while not self.alerts.queue.empty():
            event = self.alerts.queue.get_nowait()
            got.append((event.type, event.data))
        return got

    async def outbox_alerts(self) -> list[dict]:
        events = await self.store.read(outbox.pending)
        return [e.data for e in events if e.type == "retail.device.alert"]

    def printed(self) -> list:
        """Documents that came out whole (cut)."""
        return [r for r in self.emu.receipts() if r.end == "cut"]


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, *, pty: bool = False, profile: str = "epson-tm-t88",
              on_element: Callable[[Element], None] | None = None, start: bool = True,
              **keys: Any) -> AsyncIterator[Rig]:
    emu = PrinterEmulator(pty=pty, profile=profile, on_element=on_element)
    await emu.start()
    if pty:
        wire = {"connection": "serial", "port": emu.pty_path, "baudrate": 115200}
    else:
        wire = {"connection": "tcp", "address": f"127.0.0.1:{emu.port}"}
    cfg = PrinterConfig.model_validate({
        "id": "printer-1", "kind": "printer.escpos", **wire, "profile": profile, "station": "kiosk-1",
        "status_timeout": 0.3, "paper_check_interval": 0.05, **keys})
    config = AgentConfig(store=StoreConfig(id="store-test", name="Test Store", timezone="Asia/Shanghai"),
                         devices=[cfg])
    store = Store(tmp_path / "store.db")
    await store.start()
    bus = EventBus()
    alerts = bus.subscribe("alert.")
    spool = PrintSpool(store, bus, config)
    await spool.start()
    ctx = DriverContext("printer-1", bus, logging.getLogger("test.printer"), extras={SPOOL: spool})
    driver = EscPosPrinter(cfg, ctx)
    owner = DeviceOwner(driver, bus, Backoff(initial=0.02, cap=0.1, jitter=0))
    r = Rig(emu, store, bus, spool, driver, owner, alerts)
    if start:
        owner.start()
    try:
        yield r
    finally:
        await owner.stop()
        await store.stop()
        await emu.stop()


# Printing ---------------------------------------------------------------------------------------


def test_a_queued_receipt_prints_after_a_status_query(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            await until(lambda: r.state == DeviceState.ONLINE, what="online")
            queries = r.emu.status_queries
            assert queries >= 4  # open() asked DLE EOT 1-4
            job = await r.spool.submit("printer-1", "sale_receipt", sale())
            await r.emu.wait_for(lambda: len(r.printed()) == 1)
            done = await r.until_job(job, JobState.DONE)
            (receipt,) = r.printed()
            assert "Test Store" in receipt.lines
            assert any(line.startswith("Organic Milk 1 L #0") and line.endswith("12.50") for line in receipt.lines)
            assert [q.data for q in receipt.qr_codes] == [URL]
            assert [documents.sale_id_from_barcode(b.data) for b in receipt.barcodes] == [SALE_ID]
            assert "*** REPRINT ***" not in receipt.lines
            # Asked before the job and after it (the printer had all of it).
            assert r.emu.status_queries >= queries + 8
            assert (done.attempts, done.reprint, done.replaced) == (1, False, 0)
            assert done.started_at and done.finished_at
            assert r.driver.ctx.counters["printed"] == 1
            assert r.bus_alerts() == []

    run(main())


def test_jobs_print_in_order_each_once(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            jobs = [await r.spool.submit("printer-1", "test_page", {"device_id": f"page-{i}"}) for i in range(5)]
            await r.emu.wait_for(lambda: len(r.printed()) == 5)
            for job in jobs:
                await r.until_job(job, JobState.DONE)
            assert [next(ln for ln in p.lines if ln.startswith("Device")).split()[-1] for p in r.printed()] == [
                f"page-{i}" for i in range(5)]

    run(main())


def test_a_character_the_code_page_lacks_prints_as_a_visible_replacement_and_is_counted(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            job = await r.spool.submit("printer-1", "sale_receipt", sale(1, name="乌龙茶"))
            done = await r.until_job(job, JobState.DONE)
            (receipt,) = r.printed()
            assert any(line.startswith("??? #0") for line in receipt.lines)
            assert done.replaced == 3
            assert r.driver.ctx.counters["replaced_chars"] == 3

    run(main())


def test_gb18030_printer_prints_chinese(tmp_path):
    async def main():
        async with rig(tmp_path, profile="generic-80-gb18030") as r:
            job = await r.spool.submit("printer-1", "sale_receipt", sale(1, name="乌龙茶"))
            done = await r.until_job(job, JobState.DONE)
            assert any(line.startswith("乌龙茶 #0") for line in r.printed()[0].lines)
            assert done.replaced == 0

    run(main())


def test_a_2000_line_receipt_prints_whole(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            job = await r.spool.submit("printer-1", "sale_receipt", sale(2000))
            await r.until_job(job, JobState.DONE, timeout=15)
            (receipt,) = r.printed()
            items = [ln for ln in receipt.lines if ln.startswith("Organic Milk 1 L #")]
            assert len(items) == 2000 and items[-1].startswith("Organic Milk 1 L #1999")
            assert any(ln.startswith("TOTAL") and ln.endswith("25000.00") for ln in receipt.lines)

    run(main(), timeout=30)


def test_bad_document_data_fails_the_job_clearly_and_the_next_one_prints(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            bad = await r.spool.submit("printer-1", "sale_receipt", {"id": "x", "lines": "not a list"})
            good = await r.spool.submit("printer-1", "test_page", {})
            failed = await r.until_job(bad, JobState.FAILED)
            assert failed.reason.startswith("cannot render the sale_receipt: ")
            await r.until_job(good, JobState.DONE)
            assert len(r.printed()) == 1
            assert r.driver.ctx.counters["failed"] == 1

    run(main())


def test_print_test_page_command_queues_a_test_page(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            answer = await r.driver.command("print_test_page", {})
            assert answer["device"] == "printer-1" and answer["state"] == "queued"
            await r.until_job(await r.spool.job(answer["job"]), JobState.DONE)
            (page,) = r.printed()
            assert "PRINTER TEST PAGE" in page.lines and "Store          Test Store".split()[0] in page.text

    run(main())


# Paper out, cover open -----------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "reason", "code"), [
    ("paper_end", "paper out", "paper_out"),
    ("cover_open", "cover open", "cover_open"),
])
def test_the_job_waits_while_the_printer_needs_someone_then_prints_once(tmp_path, flag, reason, code):
    async def main():
        async with rig(tmp_path) as r:
            await until(lambda: r.state == DeviceState.ONLINE, what="online")
            r.emu.set_state(**{flag: True})
            job = await r.spool.submit("printer-1", "sale_receipt", sale())
            await until(lambda: r.state == DeviceState.ERROR, what="error state")
            assert r.last_error == reason
            # It keeps polling, and says nothing new while nothing changes.
            polled = r.emu.status_queries
            await r.emu.wait_for(lambda: r.emu.status_queries >= polled + 12)
            assert (await r.job(job)).state == JobState.QUEUED
            assert r.emu.received < 200 and r.printed() == [] and r.emu.held == []
            raised = r.bus_alerts()
            assert [(t, d["code"], d["state"]) for t, d in raised] == [("alert.raised", code, "raised")]
            assert raised[0][1]["device"] == "printer-1" and reason in raised[0][1]["message"]
            assert raised[0][1]["station"] == "kiosk-1"
            assert [a["code"] for a in await r.outbox_alerts()] == [code]

            r.emu.set_state(**{flag: False})  # someone fixed it: nobody tells the agent
            done = await r.until_job(job, JobState.DONE)
            assert len(r.printed()) == 1 and "*** REPRINT ***" not in r.printed()[0].lines
            assert (done.attempts, done.reprint) == (1, False)
            await until(lambda: r.state == DeviceState.ONLINE, what="online again")
            assert [(t, d["code"], d["state"]) for t, d in r.bus_alerts()] == [("alert.cleared", code, "cleared")]
            assert [(a["code"], a["state"]) for a in await r.outbox_alerts()] == [(code, "raised"), (code, "cleared")]
            assert r.owner.snapshot.counters["alerts"] == 1

    run(main())


def test_paper_out_then_cover_open_to_reload_leaves_no_alert_up_once_fixed(tmp_path):
    """Staff open the cover to load paper: paper out becomes cover open, whose alert replaces the first one;
    closing the cover clears it, and every alert raised is cleared on the bus and to the hub."""
    async def main():
        async with rig(tmp_path) as r:
            await until(lambda: r.state == DeviceState.ONLINE, what="online")
            r.emu.set_state(paper_end=True)
            job = await r.spool.submit("printer-1", "sale_receipt", sale())
            await until(lambda: r.last_error == "paper out", what="paper out")
            r.emu.set_state(cover_open=True)
            await until(lambda: r.last_error == "cover open", what="cover open")
            r.emu.set_state(paper_end=False)  # the new roll is in; the cover is still open
            polled = r.emu.status_queries
            await r.emu.wait_for(lambda: r.emu.status_queries >= polled + 3)
            assert (await r.job(job)).state == JobState.QUEUED and r.last_error == "cover open"
            r.emu.set_state(cover_open=False)
            await r.until_job(job, JobState.DONE)
            await until(lambda: r.state == DeviceState.ONLINE, what="online again")
            seen = [(t, d["code"]) for t, d in r.bus_alerts()]
            assert seen == [("alert.raised", "paper_out"), ("alert.cleared", "paper_out"),
                            ("alert.raised", "cover_open"), ("alert.cleared", "cover_open")], seen
            wire = [(a["code"], a["state"]) for a in await r.outbox_alerts()]
            assert wire == [("paper_out", "raised"), ("paper_out", "cleared"),
                            ("cover_open", "raised"), ("cover_open", "cleared")], wire

    run(main())


def test_paper_running_out_mid_receipt_finishes_it_once_when_reloaded(tmp_path):
    emu_ref: list[PrinterEmulator] = []

    def paper_runs_out(element: Element) -> None:
        if isinstance(element, Text) and element.line == "Test Store" and not emu_ref[0].paper_end:
            emu_ref[0].set_state(paper_end=True)  # the rest of the job is held in the printer's buffer

    async def main():
        async with rig(tmp_path, on_element=paper_runs_out, start=False) as r:
            emu_ref.append(r.emu)
            r.owner.start()
            # Longer than one read of the emulator (64 KiB), so the status query after the job
            # reaches it after the paper ran out: DLE EOT is answered when it is received.
            job = await r.spool.submit("printer-1", "sale_receipt", sale(2000))
            await until(lambda: r.state == DeviceState.ERROR, what="paper out")
            assert r.last_error == "paper out"
            assert (await r.job(job)).state == JobState.PRINTING  # sent, not printed yet
            await r.emu.wait_for(lambda: len(r.emu.held) > 5)
            r.emu.on_element = None
            r.emu.set_state(paper_end=False)
            done = await r.until_job(job, JobState.DONE)
            assert (done.attempts, done.reprint) == (1, False)
            (receipt,) = r.printed()
            assert "*** REPRINT ***" not in receipt.lines and receipt.qr_codes

    run(main())


def test_paper_near_end_warns_once_and_prints(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            r.emu.set_state(paper_near_end=True)
            job = await r.spool.submit("printer-1", "test_page", {})
            await r.until_job(job, JobState.DONE)
            await r.spool.submit("printer-1", "test_page", {})
            await r.emu.wait_for(lambda: len(r.printed()) == 2)
            assert [(t, d["code"], d["severity"]) for t, d in r.bus_alerts()] == [
                ("alert.raised", "paper_near_end", "warning")]
            assert r.state in (DeviceState.ONLINE, DeviceState.BUSY)
            r.emu.set_state(paper_near_end=False)  # a new roll
            last = await r.spool.submit("printer-1", "test_page", {})
            await r.until_job(last, JobState.DONE)
            assert [(t, d["code"], d["severity"]) for t, d in r.bus_alerts()] == [
                ("alert.cleared", "paper_near_end", "info")]

    run(main())


# A printer that does not make sense --------------------------------------------------------------


@pytest.mark.parametrize(("replies", "reason", "code"), [
    ("silent", "no answer to the status query (DLE EOT) within 0.3 s", "no_status"),
    ("garbage", "garbage in answer to the status query", "bad_status"),
])
def test_no_or_garbage_status_is_an_error_and_no_job_prints_until_it_answers(tmp_path, replies, reason, code):
    async def main():
        async with rig(tmp_path, start=False) as r:
            r.emu.status_replies = replies
            r.owner.start()
            job = await r.spool.submit("printer-1", "sale_receipt", sale())
            await until(lambda: r.state == DeviceState.ERROR, what="error state")
            assert r.last_error.startswith(reason)
            # Retried (reconnected, asked again) with the alert raised once.
            before = r.emu.connections
            await r.emu.wait_for(lambda: r.emu.connections >= before + 2)
            assert (await r.job(job)).state == JobState.QUEUED and r.emu.receipts() == []
            assert [(t, d["code"]) for t, d in r.bus_alerts()] == [("alert.raised", code)]

            r.emu.status_replies = "normal"
            await r.until_job(job, JobState.DONE)
            assert len(r.printed()) == 1
            assert [(t, d["code"]) for t, d in r.bus_alerts()] == [("alert.cleared", code)]

    run(main())


def test_a_job_cut_by_a_dropped_connection_is_reprinted_marked_and_complete_once(tmp_path):
    async def main():
        async with rig(tmp_path) as r:
            await until(lambda: r.state == DeviceState.ONLINE, what="online")
            r.emu.drop_after(300)  # the link goes after 300 more bytes: mid-receipt
            job = await r.spool.submit("printer-1", "sale_receipt", sale())
            done = await r.until_job(job, JobState.DONE)
            assert (done.attempts, done.reprint) == (2, True)
            first, second = r.emu.receipts()
            assert first.end == "disconnect" and not first.cuts  # the cut-off part
            assert second.end == "cut" and "*** REPRINT ***" in second.lines
            assert [q.data for q in second.qr_codes] == [URL]
            assert len(r.printed()) == 1
            assert r.driver.ctx.counters["reprints"] == 1 and r.driver.ctx.counters["interrupted"] == 1

    run(main())


def test_a_power_cut_mid_job_reprints_it_marked_when_the_printer_is_back(tmp_path):
    emu_ref: list[PrinterEmulator] = []
    stopping: list[asyncio.Task] = []

    def power_cut(element: Element) -> None:
        if isinstance(element, Text) and element.line == "Test Store" and not stopping:
            emu_ref[0].drop_after(1)  # nothing after this read gets in: the power is going
            stopping.append(asyncio.get_running_loop().create_task(emu_ref[0].stop()))

    async def main():
        async with rig(tmp_path, on_element=power_cut, start=False) as r:
            emu_ref.append(r.emu)
            r.owner.start()
            # Longer than one read of the emulator: the power goes with part of it printed.
            job = await r.spool.submit("printer-1", "sale_receipt", sale(2000))
            await until(lambda: bool(stopping) and stopping[0].done(), what="power cut")
            await until(lambda: r.state == DeviceState.OFFLINE, what="offline")
            assert (await r.job(job)).state == JobState.QUEUED
            r.emu.on_element = None
            await r.emu.start()  # power back, same port
            done = await r.until_job(job, JobState.DONE, timeout=10)
            assert (done.attempts, done.reprint) == (2, True)
            first, *rest = r.emu.receipts()
            assert first.end == "disconnect" and not first.cuts  # what came out before the power went
            assert [("*** REPRINT ***" in p.lines) for p in rest] == [True]
            assert len([ln for ln in rest[0].lines if ln.startswith("Organic Milk 1 L #")]) == 2000

    run(main())


def test_a_job_cut_short_too_often_fails_with_a_reason(tmp_path):
    async def main():
        async with rig(tmp_path, start=False) as r:
            job = await r.spool.submit("printer-1", "test_page", {})
            for _ in range(5):
                await r.spool.started(await r.job(job))
                await r.spool.interrupted("printer-1", "cut")
            r.owner.start()
            failed = await r.until_job(job, JobState.FAILED)
            assert failed.reason.startswith("cut short 5 times")
            assert r.emu.receipts() == []

    run(main())


# Serial (a pty) ----------------------------------------------------------------------------------


def test_prints_over_a_serial_port_and_waits_out_paper_out(tmp_path):
    async def main():
        async with rig(tmp_path, pty=True) as r:
            await until(lambda: r.state == DeviceState.ONLINE, what="online")
            first = await r.spool.submit("printer-1", "sale_receipt", sale())
            await r.until_job(first, JobState.DONE)
            r.emu.set_state(paper_end=True)
            second = await r.spool.submit("printer-1", "test_page", {})
            await until(lambda: r.state == DeviceState.ERROR, what="paper out")
            assert r.last_error == "paper out"
            r.emu.set_state(paper_end=False)
            await r.until_job(second, JobState.DONE)
            assert [("PRINTER TEST PAGE" in p.lines) for p in r.printed()] == [False, True]
            assert [(t, d["state"]) for t, d in r.bus_alerts()] == [("alert.raised", "raised"),
                                                                    ("alert.cleared", "cleared")]

    run(main())
