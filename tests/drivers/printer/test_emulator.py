"""The printer emulator over real TCP (python-escpos's Network printer as the client) and a pty."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from escpos.constants import RT_STATUS_ONLINE, RT_STATUS_PAPER
from escpos.printer import Network

from drivers.printer import documents
from drivers.printer import status as st
from drivers.printer.emulator import PrinterEmulator, Text
from drivers.printer.layout import qr_matrix
from drivers.printer.profiles import escpos_profile, get_profile
from drivers.transport.serial import SerialTransport
from edge_core.errors import DeviceProtocolError

REPO = Path(__file__).resolve().parents[3]
SALE_ID = "550e8400-e29b-41d4-a716-446655440000"
URL = f"https://receipts.example.com/r/{SALE_ID}"
SALE = {
    "id": SALE_ID, "created_at": "2025-03-01T14:05:00+08:00", "store_name": "Demo Store",
    "lines": [{"sku": "MILK-1L", "name": "Organic Milk 1 L", "qty": 2, "unit_price": "12.50", "amount": "25.00"},
              {"sku": "TEA", "name": "乌龙茶", "qty": 1, "unit_price": "30.00", "amount": "30.00"}],
    "total": "55.00", "currency": "CNY", "payment": {"method": "cash"}, "receipt_url": URL,
}


def run(coro, timeout: float = 5.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def network(emu: PrinterEmulator, profile: str = "epson-tm-t88") -> Network:
    p = Network("127.0.0.1", emu.port, timeout=2, profile=escpos_profile(get_profile(profile)))
    p.open()
    return p


def status_over(sock: socket.socket) -> st.PrinterStatus:
    """Send the four DLE EOT queries and parse the four replies (blocking)."""
    sock.sendall(st.all_queries())
    got = b""
    while len(got) < 4:
        chunk = sock.recv(4 - len(got))
        if not chunk:
            break
        got += chunk
    return st.parse_status(got)


@pytest.mark.parametrize("profile", ["epson-tm-t88", "generic-80-gb18030", "generic-58"])
def test_receipt_printed_over_tcp_reads_back(profile):
    async def main():
        async with PrinterEmulator(profile=profile) as emu:
            def job():
                p = network(emu, profile)
                p._raw(documents.sale_receipt(SALE, profile))
                p.close()

            await asyncio.to_thread(job)
            await emu.wait_for(lambda: bool(emu.receipts()) and emu.receipts()[-1].end != "open")
            (r,) = emu.receipts()
            assert r.end == ("disconnect" if get_profile(profile).cutter == "none" else "cut")
            assert "Demo Store" in r.lines
            assert any(line.startswith("Organic Milk 1 L") and line.endswith("25.00") for line in r.lines)
            tea = "乌龙茶" if get_profile(profile).gb18030 else "???"
            assert any(line.startswith(tea) and line.endswith("30.00") for line in r.lines)
            if get_profile(profile).qr == "native":
                assert [q.data for q in r.qr_codes] == [URL]
                assert [documents.sale_id_from_barcode(b.data) for b in r.barcodes] == [SALE_ID]
            else:
                assert r.images[0].qr_modules() == qr_matrix(URL)

    run(main())


def test_python_escpos_own_commands_read_back():
    async def main():
        async with PrinterEmulator() as emu:
            def job():
                p = network(emu)
                p.set(bold=True, align="center")
                p.textln("Hello")
                p.set(bold=False, align="left")
                p.textln("Grüße")  # python-escpos's own encoder picks the code table here
                p.qr("payload-1", native=True)
                p.cut()
                p.close()

            await asyncio.to_thread(job)
            await emu.wait_for(lambda: any(r.end == "cut" for r in emu.receipts()))
            r = emu.receipts()[0]
            assert Text("Hello", bold=True, align="center") in r.elements
            assert "Grüße" in r.lines
            assert [q.data for q in r.qr_codes] == ["payload-1"]
            assert len(r.cuts) == 1

    run(main())


def test_status_queries_over_tcp_follow_the_flags():
    async def main():
        async with PrinterEmulator() as emu:
            def query() -> tuple[bytes, bool, int]:
                p = network(emu)
                try:
                    return p.query_status(RT_STATUS_ONLINE), p.is_online(), p.paper_status()
                finally:
                    p.close()

            assert await asyncio.to_thread(query) == (b"\x12", True, 2)
            emu.set_state(paper_near_end=True)
            assert (await asyncio.to_thread(query))[2] == 1
            emu.set_state(paper_end=True)
            raw, online, paper = await asyncio.to_thread(query)
            assert raw == b"\x1a" and not online and paper == 0  # offline bit set; no paper

            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                status = await asyncio.to_thread(status_over, sock)
                assert st.problem(status) == "paper out"
                emu.set_state(paper_end=False, paper_near_end=False, cover_open=True)
                status = await asyncio.to_thread(status_over, sock)
                assert status.cover_open and not status.online and st.problem(status) == "cover open"
                emu.set_state(cover_open=False)
                status = await asyncio.to_thread(status_over, sock)
                assert status == st.PrinterStatus()
            assert emu.status_queries == 3 * 3 + 12

    run(main())


def test_silent_printer_does_not_answer():
    async def main():
        async with PrinterEmulator() as emu:
            emu.status_replies = "silent"
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                sock.sendall(RT_STATUS_PAPER)
                await emu.wait_for(lambda: emu.status_queries == 1)
                # The emulator has handled the query: a reply would be in the socket by now.
                assert select.select([sock], [], [], 0)[0] == []
                emu.status_replies = "normal"
                sock.sendall(RT_STATUS_PAPER)
                await emu.wait_for(lambda: emu.status_queries == 2)
                assert await asyncio.to_thread(sock.recv, 16) == b"\x12"

    run(main())


def test_garbage_status_reply_is_a_protocol_error():
    async def main():
        async with PrinterEmulator() as emu:
            emu.status_replies = "garbage"
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                with pytest.raises(DeviceProtocolError):
                    await asyncio.to_thread(status_over, sock)

    run(main())


def test_drop_after_n_bytes_closes_the_connection_once():
    async def main():
        async with PrinterEmulator() as emu:
            emu.drop_after(20)
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                sock.sendall(b"\x1b@Partial line\nnever printed\n")
                try:
                    assert await asyncio.to_thread(sock.recv, 16) == b""
                except ConnectionResetError:
                    pass  # the emulator aborts the link: a reset is what the client may see
            await emu.wait_for(lambda: emu.receipts() and emu.receipts()[0].end == "disconnect")
            assert emu.received == 20
            # The line finished before the drop printed; "never" had no line feed yet.
            assert emu.receipts()[0].lines == ["Partial line"]
            # One time only: the next connection prints in full.
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                sock.sendall(b"\x1b@Whole\n\x1dV\x00")
                await emu.wait_for(lambda: len(emu.receipts()) == 2)
            assert emu.receipts()[1].lines == ["Whole"] and emu.receipts()[1].end == "cut"

    run(main())


def test_power_cut_mid_command_then_a_clean_reprint():
    async def main():
        emu = PrinterEmulator()
        await emu.start()
        try:
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                # A QR store command declaring 16 bytes, cut off after 2 of them.
                sock.sendall(b"\x1b@First try\n\x1d(k\x10\x001P")
                await emu.wait_for(lambda: emu.received == 19)
            await emu.stop()  # the power goes
            await emu.start()  # and comes back, on the same port
            reprint = documents.render("test_page", {"time": "2025-01-01T00:00:00"}, "epson-tm-t88", reprint=True)
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                sock.sendall(reprint.data)
                await emu.wait_for(lambda: len(emu.receipts()) == 2 and emu.receipts()[1].end == "cut")
            first, second = emu.receipts()
            assert (first.lines, first.end) == (["First try"], "disconnect")
            assert second.lines[0] == "*** REPRINT ***"  # nothing of the half command leaked in
        finally:
            await emu.stop()

    run(main())


def test_one_job_at_a_time():
    async def main():
        async with PrinterEmulator() as emu:
            first = socket.create_connection(("127.0.0.1", emu.port), timeout=2)
            first.sendall(b"\x1b@A1\n")
            await emu.wait_for(lambda: emu.receipts() and emu.receipts()[0].lines == ["A1"])
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as second:
                second.sendall(b"\x1b@B\n")  # waits in its socket while the first job runs
            first.sendall(b"A2\n")
            first.close()
            await emu.wait_for(lambda: len(emu.receipts()) == 2 and emu.receipts()[1].end == "disconnect")
            assert [r.lines for r in emu.receipts()] == [["A1", "A2"], ["B"]]
            assert emu.connections == 2

    run(main())


def test_paper_out_holds_the_job_until_paper_is_back():
    async def main():
        async with PrinterEmulator() as emu:
            emu.set_state(paper_end=True)
            with socket.create_connection(("127.0.0.1", emu.port), timeout=2) as sock:
                sock.sendall(b"\x1b@Waiting\n\x1dV\x01")
                await emu.wait_for(lambda: len(emu.held) == 2)
                assert emu.receipts() == []
                emu.set_state(paper_end=False)
                assert [r.lines for r in emu.receipts()] == [["Waiting"]]

    run(main())


def test_pty_endpoint_prints_and_answers():
    if sys.platform == "win32":
        pytest.skip("needs a POSIX pty")

    async def main():
        async with PrinterEmulator(pty=True) as emu:
            assert emu.pty_path
            t = SerialTransport(emu.pty_path, baudrate=115200)
            await t.open()
            try:
                await t.write(st.query(1))
                assert await t.read(16, timeout=2) == b"\x12"
                await t.write(documents.test_page({"time": "2025-01-01T00:00:00"}, "epson-tm-t88"))
                await emu.wait_for(lambda: any(r.end == "cut" for r in emu.receipts()))
                assert "PRINTER TEST PAGE" in emu.receipts()[0].lines
            finally:
                await t.close()

    run(main())


def read_until(stream, text: bytes, timeout: float = 10.0) -> bytes:
    """What a child writes to its pipe up to and including ``text``; fails instead of hanging."""
    got = b""
    while text not in got:
        ready, _, _ = select.select([stream], [], [], timeout)
        assert ready, f"the emulator wrote {got!r}, not {text!r}"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"the emulator exited after writing {got!r}"
        got += chunk
    return got


def test_standalone_command_prints_what_it_receives():
    proc = subprocess.Popen(
        [sys.executable, "-m", "drivers.printer.emulator", "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        banner = read_until(proc.stderr, b"Ctrl-C").decode()
        port = int(banner.split("tcp://127.0.0.1:")[1].split(";")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x1b@Hello from a test\n\x1dV\x00")
            out = read_until(proc.stdout, b"full cut").decode()
        assert out.startswith("Hello from a test\n")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0 and b"Traceback" not in err, err
