"""Receipts and test pages through a real agent process to the printer emulator over TCP.

The agent is ``edge-agent run`` (tests/support/agent.py); the printer is the
emulator on a thread of the test (tests/support/printer.py). Receipts are
read back from what the emulator printed: text, QR payload, barcode.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from drivers.printer import documents
from drivers.printer.emulator import PrinterEmulator, Text
from support.agent import AgentProcess
from support.flows import poll
from support.printer import EmulatorThread

LIPSTICK = "6901234567892"  # LIP-RED-01, promo price 159.00 (demo/catalog.json)
RECEIPT_URL = "https://receipts.example.com/{store}/{sale_id}"


def printer_device(port: int, **extra) -> dict:
    return {"id": "printer-1", "kind": "printer.escpos", "connection": "tcp", "address": f"127.0.0.1:{port}",
            "profile": "generic-80-gb18030", "station": "kiosk-1", "receipt_url": RECEIPT_URL,
            "status_timeout": 0.5, "paper_check_interval": 0.1, **extra}


def sale_body(client_sale_id: str | None = None, qty: int = 2) -> dict:
    return {"client_sale_id": client_sale_id or str(uuid.uuid4()), "lines": [{"code": LIPSTICK, "qty": qty}],
            "member_id": "M-1001", "payment": {"method": "card", "reference": "TERM-42"}}


def device(agent: AgentProcess, device_id: str = "printer-1") -> dict:
    with agent.client("associate") as c:
        return next(d for d in c.get("/v1/devices").json() if d["id"] == device_id)


def job(agent: AgentProcess, job_id: str) -> dict:
    with agent.client("associate") as c:
        return c.get(f"/v1/print/jobs/{job_id}").json()


@pytest.fixture
def printer() -> Iterator[EmulatorThread]:
    with EmulatorThread(profile="generic-80-gb18030") as emu:
        yield emu


@pytest.fixture
def store(make_agent, printer) -> AgentProcess:
    """An agent with the demo catalog, a heartbeat and a receipt printer for kiosk-1, online."""
    agent = make_agent(devices=[printer_device(printer.port),
                                {"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.5}])
    agent.import_catalog()
    agent.start()
    poll(lambda: device(agent), lambda d: d["state"] == "online", what="printer online")
    return agent


def test_a_sale_at_the_kiosk_prints_its_receipt_once(store, printer):
    body = sale_body()
    with store.client("kiosk") as c:
        r = c.post("/v1/sales", json=body)
    assert r.status_code == 201, r.text
    sale = r.json()
    job_id = r.headers["Print-Job"]
    printer.wait_for(lambda emu: any(d.end == "cut" for d in emu.receipts()))
    (receipt,) = printer.receipts()
    assert "Test Store" in receipt.lines
    assert any(ln.startswith("丝绒哑光口红 Velvet Matte Lipstick #01") and ln.endswith("318.00")
               for ln in receipt.lines)
    # The lipstick's "Double 11" promotion: its name, the regular price and what it saved.
    at = receipt.lines.index("  2 x 159.00 (was 189.00)")
    assert receipt.lines[at + 1] == "  * Double 11: you save 60.00"
    assert any(ln.startswith("You saved") and ln.endswith("CNY 60.00") for ln in receipt.lines)
    assert any(ln.startswith("TOTAL") and ln.endswith("CNY 318.00") for ln in receipt.lines)
    assert any(ln.startswith("Points earned") and ln.endswith("+318") for ln in receipt.lines)
    assert [q.data for q in receipt.qr_codes] == [f"https://receipts.example.com/store-test/{sale['id']}"]
    assert [documents.sale_id_from_barcode(b.data) for b in receipt.barcodes] == [sale["id"]]
    done = poll(lambda: job(store, job_id), lambda j: j["state"] == "done", what="job done")
    assert (done["kind"], done["ref"], done["attempts"], done["reprint"]) == ("sale_receipt", sale["id"], 1, False)

    # The kiosk retries the same sale (it never saw the 201): no second receipt, no second job.
    with store.client("kiosk") as c:
        again = c.post("/v1/sales", json=body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert "Print-Job" not in again.headers
    with store.client("admin") as c:
        c.post("/v1/print", json={"device": "printer-1"})  # something after it, to know the queue moved on
    printer.wait_for(lambda emu: len(emu.receipts()) == 2)
    assert "PRINTER TEST PAGE" in printer.receipts()[1].lines
    with store.client("associate") as c:
        jobs = c.get("/v1/print/jobs", params={"device": "printer-1"}).json()
    assert [j["kind"] for j in jobs] == ["test_page", "sale_receipt"]
    counters = poll(lambda: device(store), lambda d: d["counters"].get("printed") == 2, what="counters")["counters"]
    assert counters["waiting"] == 0 and counters.get("reprints", 0) == 0


def test_a_sale_from_a_station_without_a_printer_prints_nothing(store, printer):
    with store.client("associate") as c:  # associate-1 has no printer
        r = c.post("/v1/sales", json=sale_body())
        assert r.status_code == 201 and "Print-Job" not in r.headers
        assert c.get("/v1/print/jobs").json() == []


def test_post_print_queues_a_test_page_durably(store, printer):
    with store.client("console") as c:
        r = c.post("/v1/print", json={"device": "printer-1"})
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["state"] in ("queued", "printing", "done") and queued["kind"] == "test_page"
    assert r.headers["Location"] == f"/v1/print/jobs/{queued['id']}"
    printer.wait_for(lambda emu: any(d.end == "cut" for d in emu.receipts()))
    page = printer.receipts()[0]
    assert "PRINTER TEST PAGE" in page.lines and any(ln.endswith("printer-1") for ln in page.lines)
    assert poll(lambda: job(store, queued["id"]), lambda j: j["state"] == "done", what="done")["attempts"] == 1
    with store.client() as c:
        health = c.get("/v1/health").json()
    assert health["printing"] == {"queued": 0, "printing": 0, "failed": 0}


@pytest.mark.parametrize(("role", "body", "status", "fragment"), [
    ("admin", {"device": "printer-9"}, 404, "no device 'printer-9'"),
    ("admin", {"device": "heartbeat-1"}, 422, "is a sensor.heartbeat, not a printer"),
    ("admin", {}, 422, "device: Field required"),
    ("associate", {"device": "printer-1"}, 403, "may not do this"),
    ("kiosk", {"device": "printer-1"}, 403, "may not do this"),
])
def test_post_print_refuses_clearly(store, role, body, status, fragment):
    with store.client(role) as c:
        r = c.post("/v1/print", json=body)
    assert r.status_code == status and fragment in r.json()["detail"], r.text


def test_job_lookups(store):
    with store.client("associate") as c:
        assert c.get("/v1/print/jobs/nope").status_code == 404
        assert c.post("/v1/print/jobs/nope/retry").status_code == 404
        assert c.get("/v1/print/jobs", params={"state": "lost"}).status_code == 422
    with store.client("kiosk") as c:
        assert c.get("/v1/print/jobs").status_code == 403


def test_paper_out_shows_on_the_device_and_the_receipt_comes_out_once_reloaded(store, printer):
    printer.call(lambda emu: emu.set_state(paper_end=True))
    with store.client("kiosk") as c:
        job_id = c.post("/v1/sales", json=sale_body()).headers["Print-Job"]
    d = poll(lambda: device(store), lambda d: d["state"] == "error", what="error")
    assert d["last_error"] == "paper out"
    with store.client() as c:
        health = c.get("/v1/health").json()
    assert health["status"] == "degraded" and health["printing"]["queued"] == 1
    assert job(store, job_id)["state"] == "queued"
    printer.call(lambda emu: emu.set_state(paper_end=False))
    poll(lambda: job(store, job_id), lambda j: j["state"] == "done", what="printed")
    assert len(printer.receipts()) == 1
    poll(lambda: device(store), lambda d: d["state"] == "online", what="online")


def paper_runs_out_mid_receipt() -> Callable[[PrinterEmulator, object], None]:
    """An emulator hook: the paper runs out just after the first receipt's header (once)."""
    fired: list[bool] = []

    def hook(emu: PrinterEmulator, element: object) -> None:
        if isinstance(element, Text) and element.line == "Test Store" and not fired:
            fired.append(True)
            emu.set_state(paper_end=True)

    return hook


def test_agent_killed_mid_job_reprints_it_marked_after_restart(make_agent):
    with EmulatorThread(profile="generic-80-gb18030", on_element=paper_runs_out_mid_receipt()) as printer:
        agent = make_agent(devices=[printer_device(printer.port)])
        agent.import_catalog()
        agent.start()
        # 1,500 lines: a receipt longer than one read of the emulator (64 KiB), so the
        # printer reads the status query after the job only once the paper has run out.
        body = {**sale_body(), "lines": [{"code": LIPSTICK, "qty": 1}] * 1500}
        with agent.client("kiosk") as c:
            r = c.post("/v1/sales", json=body)
        sale, job_id = r.json(), r.headers["Print-Job"]
        # The printer stopped for paper halfway: the job is printing, the rest held in its buffer.
        poll(lambda: job(agent, job_id), lambda j: j["state"] == "printing", what="printing")
        poll(lambda: device(agent), lambda d: d["last_error"] == "paper out", what="paper out")
        agent.kill()

        printer.power_off()  # ... and the store's power went: the printer's buffer is gone too
        printer.call(lambda emu: emu.set_state(paper_end=False))
        printer.start()
        agent.start()
        done = poll(lambda: job(agent, job_id), lambda j: j["state"] == "done", what="reprinted")
        assert (done["attempts"], done["reprint"]) == (2, True)
        printed = [d for d in printer.receipts() if d.end == "cut"]
        assert len(printed) == 1
        assert "*** REPRINT ***" in printed[0].lines
        assert len([ln for ln in printed[0].lines if ln.startswith("丝绒哑光口红")]) == 1500
        assert [documents.sale_id_from_barcode(b.data) for b in printed[0].barcodes] == [sale["id"]]
        assert device(agent)["counters"]["reprints"] == 1
