"""A real agent process drives the pole display: a scan on kiosk-1's scanner, a sale by kiosk-1.

The scanner and the display are the pty emulators of their folders; the sale
goes through ``POST /v1/sales``. What is asserted is what the display's
glass shows, parsed back from the bytes the agent wrote.
"""

from __future__ import annotations

import asyncio
import time

from drivers.display.emulator import PoleDisplayEmulator
from drivers.display.protocol import Protocol
from drivers.scanner.emulator import SerialScannerEmulator
from support.flows import GLASSES, LIPSTICK, sale

WAIT_S = 60.0  # bound on any one wait for the agent; a passing run takes well under a second


def test_scans_and_the_sale_reach_the_display_through_a_real_agent(make_agent, tmp_path):
    scanner = SerialScannerEmulator(tmp_path / "dev" / "scanner-1").plug()
    agent = make_agent(devices=[
        {"id": "scanner-1", "kind": "scanner.serial", "port": str(scanner.path), "baudrate": 115200,
         "station": "kiosk-1", "dedupe_window": 10},
        {"id": "pole-1", "kind": "display.pole", "port": str(tmp_path / "dev" / "pole-1"), "protocol": "epson",
         "station": "kiosk-1", "thank_you_s": 1},
    ])
    agent.import_catalog()

    async def go():
        emu = PoleDisplayEmulator(tmp_path / "dev" / "pole-1", Protocol.EPSON)
        await emu.start()
        try:
            await asyncio.to_thread(agent.start)
            await asyncio.to_thread(wait_online, agent)
            await emu.wait_for(lambda s: s.inits >= 1, WAIT_S)
            scanner.scan(LIPSTICK)  # LIP-RED-01: 189.00, promo 159.00 (demo/catalog.json)
            await emu.wait_for(lambda s: s.lines[0].endswith(" 159.00"), WAIT_S)
            assert emu.screen.lines[1] == "TOTAL     CNY 159.00"
            scanner.scan(GLASSES)  # GLS-ROUND-BLK: 399.00
            await emu.wait_for(lambda s: s.lines[1] == "TOTAL     CNY 558.00", WAIT_S)
            assert emu.screen.lines[0].endswith(" 399.00")

            def sell():
                with agent.client("kiosk") as c:
                    r = c.post("/v1/sales", json=sale((LIPSTICK, 1), (GLASSES, 1)))
                    assert r.status_code == 201, r.text
                    return r.json()
            sold = await asyncio.to_thread(sell)
            await emu.wait_for(lambda s: s.lines[0].strip() == "Thank you", WAIT_S)
            assert emu.screen.lines[1] == f"TOTAL {'CNY ' + sold['total']:>14}"
            await emu.wait_for(lambda s: s.text == "\n", WAIT_S)  # thank_you_s later
            assert emu.screen.unknown == 0

            def device():
                with agent.client("associate") as c:
                    return next(d for d in c.get("/v1/devices").json() if d["id"] == "pole-1")
            pole = await asyncio.to_thread(device)
            assert pole["actions"] == ["reopen", "clear_display"]
            assert pole["counters"]["items"] == 2 and pole["counters"]["sales"] == 1
        finally:
            await emu.stop()

    try:
        asyncio.run(asyncio.wait_for(go(), 5 * WAIT_S))
    finally:
        scanner.close()


def wait_online(agent) -> None:
    """Until both devices are online (the agent has opened both ptys)."""
    deadline = time.monotonic() + WAIT_S
    with agent.client("associate") as c:
        while {d["id"]: d["state"] for d in c.get("/v1/devices").json()} != {"scanner-1": "online",
                                                                              "pole-1": "online"}:
            assert time.monotonic() < deadline, f"devices not online: {c.get('/v1/devices').json()}"
            time.sleep(0.1)  # polling the API for a condition, bounded by the deadline
