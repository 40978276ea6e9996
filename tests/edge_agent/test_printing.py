"""The durable print queue on a real Store: on disk before "accepted", across restarts, with its sale."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from drivers.printer import documents
from drivers.printer.config import PrinterConfig
from drivers.printer.parser import EscPosParser, split_documents
from drivers.printer.profiles import get_profile
from drivers.printer.spool import JobState
from edge_agent import catalog, sales
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig, StoreConfig
from edge_agent.printing import NotRetryable, PrintSpool, UnknownJob
from edge_agent.store import Store, outbox
from edge_core.bus import utcnow

DEMO = Path(__file__).resolve().parents[2] / "demo" / "catalog.json"


def run(coro, timeout: float = 10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def config(**printer) -> AgentConfig:
    cfg = PrinterConfig.model_validate({
        "id": "printer-1", "kind": "printer.escpos", "connection": "tcp", "address": "127.0.0.1:9100",
        "station": "kiosk-1", **printer})
    return AgentConfig(store=StoreConfig(id="store-test", name="Test Store", timezone="Asia/Shanghai"),
                       devices=[cfg])


async def opened(path: Path, cfg: AgentConfig | None = None) -> tuple[Store, PrintSpool]:
    store = Store(path / "store.db")
    await store.start()
    spool = PrintSpool(store, EventBus(), cfg or config())
    await spool.start()
    return store, spool


def rows(path: Path) -> list[tuple]:
    """The queue as another process would read it from the file."""
    with sqlite3.connect(path / "store.db") as conn:
        return conn.execute("SELECT id, device, kind, state, reprint, attempts FROM print_jobs ORDER BY seq").fetchall()


def test_a_job_is_on_disk_when_submit_returns(tmp_path):
    async def main():
        store, spool = await opened(tmp_path)
        job = await spool.submit("printer-1", "test_page", {"device_id": "printer-1"})
        assert rows(tmp_path) == [(job.id, "printer-1", "test_page", "queued", 0, 0)]
        assert job.data["store_name"] == "Test Store" and job.data["time"].endswith("+08:00")
        await store.stop()

    run(main())


def test_a_job_cut_short_by_a_restart_is_queued_again_as_a_reprint(tmp_path, caplog):
    async def main():
        store, spool = await opened(tmp_path)
        cut = await spool.submit("printer-1", "test_page", {})
        untouched = await spool.submit("printer-1", "test_page", {})
        await spool.started(cut)
        await store.stop()  # the agent goes (a kill -9 leaves the file in the same state)

        store, spool = await opened(tmp_path)
        again = await spool.job(cut.id)
        assert (again.state, again.reprint, again.attempts) == (JobState.QUEUED, True, 1)
        assert again.reason == "interrupted by an agent restart"
        assert (await spool.job(untouched.id)).reprint is False
        job, depth = await spool.next_job("printer-1", timeout=0)
        assert (job.id, depth) == (cut.id, 2)  # still first in line
        await store.stop()

    run(main())
    assert "1 job was cut short by the last stop; it prints again marked REPRINT" in caplog.text


def test_state_changes_and_retry(tmp_path):
    async def main():
        store, spool = await opened(tmp_path)
        job = await spool.submit("printer-1", "test_page", {})
        started = await spool.started(job)
        assert (started.state, started.attempts) == (JobState.PRINTING, 1) and started.started_at
        with pytest.raises(UnknownJob):
            await spool.started(job)  # not queued any more
        await spool.failed(started, "printer on fire")
        failed = await spool.job(job.id)
        assert (failed.state, failed.reason) == (JobState.FAILED, "printer on fire") and failed.finished_at
        assert await spool.counts() == {"queued": 0, "printing": 0, "failed": 1}

        retried = await spool.retry(job.id)
        assert (retried.state, retried.reprint, retried.attempts, retried.reason) == (JobState.QUEUED, True, 0, None)
        await spool.done(await spool.started(retried), replaced=2)
        done = await spool.job(job.id)
        assert (done.state, done.replaced) == (JobState.DONE, 2)
        with pytest.raises(NotRetryable, match="only a failed job"):
            await spool.retry(job.id)
        with pytest.raises(UnknownJob):
            await spool.retry("nope")
        assert [j.id for j in await spool.jobs(state=JobState.DONE)] == [job.id]
        assert await spool.jobs(device="printer-2") == []
        await store.stop()

    run(main())


def test_interrupted_puts_printing_jobs_of_one_device_back(tmp_path):
    async def main():
        store, spool = await opened(tmp_path)
        mine = await spool.started(await spool.submit("printer-1", "test_page", {}))
        other = await spool.started(await spool.submit("printer-2", "test_page", {}))
        assert await spool.interrupted("printer-1", "link dropped") == 1
        assert (await spool.job(mine.id)).state == JobState.QUEUED and (await spool.job(mine.id)).reprint
        assert (await spool.job(other.id)).state == JobState.PRINTING
        await store.stop()

    run(main())


def test_next_job_waits_until_a_job_is_committed(tmp_path):
    async def main():
        store, spool = await opened(tmp_path)
        waiter = asyncio.create_task(spool.next_job("printer-1", timeout=5))
        await asyncio.sleep(0)  # let it start waiting
        job = await spool.submit("printer-1", "test_page", {})
        found, depth = await asyncio.wait_for(waiter, 2)
        assert (found.id, depth) == (job.id, 1)
        assert await spool.next_job("printer-2", timeout=0.01) == (None, 0)
        await store.stop()

    run(main())


def test_old_finished_jobs_are_forgotten_at_start(tmp_path):
    async def main():
        store, spool = await opened(tmp_path)
        old = await spool.submit("printer-1", "test_page", {})
        await spool.done(await spool.started(old), 0)
        kept = await spool.submit("printer-1", "test_page", {})
        long_ago = (utcnow() - timedelta(days=8)).isoformat()
        await store.write(lambda tx: tx.execute("UPDATE print_jobs SET finished_at = ? WHERE id = ?",
                                                (long_ago, old.id)))
        await store.stop()
        store, spool = await opened(tmp_path)
        assert [j.id for j in await spool.jobs()] == [kept.id]
        await store.stop()

    run(main())


def test_a_sale_and_its_receipt_job_commit_together(tmp_path):
    async def main():
        store, spool = await opened(tmp_path, config(receipt_url="https://r.example.com/{store}/{sale_id}"))
        items = [catalog.CatalogItem.model_validate(i) for i in json.loads(DEMO.read_text())]
        await store.write(lambda tx: catalog.upsert(tx.conn, items))
        card = {"member_id": "M-1001", "tier": "gold", "points": 500}
        await store.write(lambda tx: tx.execute(
            "INSERT INTO members (member_id, card, received_at) VALUES (?, ?, ?)",
            ("M-1001", json.dumps(card), utcnow().isoformat())))
        body = sales.SaleIn.model_validate({
            "client_sale_id": str(uuid.uuid4()), "lines": [{"code": "6901234567892", "qty": 2}],
            "member_id": "M-1001", "payment": {"method": "cash"}})

        def checkout(tx):
            sale, _ = sales.record(tx, body, "kiosk-1", "store-test")
            return sale, spool.queue_receipt(tx, "kiosk-1", sale)

        sale, job = await store.write(checkout)
        assert (job.device, job.kind, job.ref) == ("printer-1", "sale_receipt", sale["id"])
        data = (await spool.job(job.id)).data
        assert data["store_name"] == "Test Store"
        assert data["receipt_url"] == f"https://r.example.com/store-test/{sale['id']}"
        assert data["created_at"].endswith("+08:00")
        assert data["points_balance"] == 500 + 318 and data["points_earned"] == 318
        assert [ln["name"] for ln in data["lines"]] == ["丝绒哑光口红 Velvet Matte Lipstick #01 Ruby"]
        # The lipstick sold at its "Double 11" price: the receipt gets the regular price and the label.
        (line,) = data["lines"]
        assert (line["unit_price"], line["regular_price"], line["promo"]) == ("159.00", "189.00", "Double 11")

        # A station without a printer queues nothing; a sale that fails leaves no job behind.
        assert await store.write(lambda tx: spool.queue_receipt(tx, "kiosk-2", sale)) is None
        bad = body.model_copy(update={"client_sale_id": uuid.uuid4(),
                                      "lines": [sales.SaleLineIn(code="0000000000000", qty=1)]})

        def failing(tx):
            s, _ = sales.record(tx, bad, "kiosk-1", "store-test")
            return spool.queue_receipt(tx, "kiosk-1", s)

        with pytest.raises(sales.SaleRejected):
            await store.write(failing)
        assert len(rows(tmp_path)) == 1
        assert [e.type for e in await store.read(outbox.pending)] == ["retail.sale.completed"]
        await store.stop()

    run(main())


def test_a_receipt_shows_each_promotion_the_points_paid_and_what_was_saved(tmp_path):
    """The receipt as the queue stores it, rendered and read back as the printer would print it."""

    async def main():
        store, spool = await opened(tmp_path)
        items = [catalog.CatalogItem.model_validate(i) for i in json.loads(DEMO.read_text())]
        await store.write(lambda tx: catalog.upsert(tx.conn, items))
        card = {"member_id": "M-1001", "tier": "gold", "points": 5000}
        await store.write(lambda tx: tx.execute(
            "INSERT INTO members (member_id, card, received_at) VALUES (?, ?, ?)",
            ("M-1001", json.dumps(card), utcnow().isoformat())))
        # Two lipsticks at the "Double 11" price (189.00 -> 159.00) and a tote at its own price.
        body = sales.SaleIn.model_validate({
            "client_sale_id": str(uuid.uuid4()), "member_id": "M-1001", "points_redeemed": 1000,
            "lines": [{"code": "6901234567892", "qty": 2}, {"code": "TOTE01", "qty": 1}],
            "payment": {"method": "card", "reference": "TERM-7"}})

        def checkout(tx):
            sale, _ = sales.record(tx, body, "kiosk-1", "store-test")
            return sale, spool.queue_receipt(tx, "kiosk-1", sale)

        sale, job = await store.write(checkout)
        await store.stop()
        return sale, job

    sale, job = run(main())
    profile = get_profile("generic-80-gb18030")
    rendered = documents.render(job.kind, job.data, profile)
    parser = EscPosParser()
    parser.feed(rendered.data)
    (receipt,) = split_documents(parser.elements)
    lines = receipt.lines
    assert any(ln.startswith("丝绒哑光口红 Velvet Matte Lipstick #01") and ln.endswith(" 318.00") for ln in lines)
    at = lines.index("  2 x 159.00 (was 189.00)")
    assert lines[at + 1] == "  * Double 11: you save 60.00"
    tote = next(i for i, ln in enumerate(lines) if ln.startswith("帆布托特包 Canvas Tote"))
    assert lines[tote].endswith(" 49.90") and "was" not in lines[tote + 1] and "save" not in lines[tote + 1]
    assert sale["total"] == "357.90" and sale["points_value"] == "10.00"
    expected = [r"Subtotal +367\.90", r"Paid with 1000 points +-10\.00", r"TOTAL +CNY 357\.90",
                r"You saved +CNY 60\.00", r"Points redeemed +-1000", r"Points earned +\+357",
                r"Points balance +4357"]
    for pattern in expected:
        assert sum(1 for ln in lines if re.fullmatch(pattern, ln)) == 1, (pattern, receipt.text)
    assert "Points redeemed (" not in receipt.text  # the value shows once, as points paid


def test_return_slips_print_at_the_client_else_at_the_return_slips_printer():
    own = PrinterConfig.model_validate({"id": "kiosk-printer", "kind": "printer.escpos", "connection": "tcp",
                                        "address": "127.0.0.1:9100", "station": "kiosk-1"})
    desk = PrinterConfig.model_validate({"id": "desk", "kind": "printer.escpos", "connection": "tcp",
                                         "address": "127.0.0.1:9101", "return_slips": True})
    cfg = AgentConfig(store=StoreConfig(id="store-test", name="Test Store", timezone="Asia/Shanghai"),
                      devices=[own, desk])
    spool = PrintSpool(None, EventBus(), cfg)  # type: ignore[arg-type]  # choosing a printer reads no store
    assert spool.return_slip_printer("kiosk-1").id == "kiosk-printer"
    assert spool.return_slip_printer("pad-1").id == "desk"
    without = AgentConfig(store=cfg.store, devices=[own])
    assert PrintSpool(None, EventBus(), without).return_slip_printer("pad-1") is None  # type: ignore[arg-type]


def test_alerts_go_to_the_outbox_as_telemetry_and_to_the_bus(tmp_path):
    async def main():
        store = Store(tmp_path / "store.db")
        await store.start()
        bus = EventBus()
        sub = bus.subscribe("alert.")
        spool = PrintSpool(store, bus, config())
        await spool.alert("printer-1", "paper_out", "printer-1: paper out")
        await spool.alert("printer-1", "paper_out", "printer-1: fixed", cleared=True)
        (raised, cleared) = [e for e in await store.read(outbox.pending)]
        assert (raised.type, raised.priority, raised.data["state"]) == ("retail.device.alert", 1, "raised")
        assert raised.data == {"device": "printer-1", "severity": "error", "code": "paper_out", "state": "raised",
                               "message": "printer-1: paper out", "station": "kiosk-1"}
        assert cleared.data["state"] == "cleared" and cleared.data["severity"] == "info"
        assert [sub.queue.get_nowait().type for _ in range(2)] == ["alert.raised", "alert.cleared"]
        await store.stop()

    run(main())
