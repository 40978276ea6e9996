"""Hardware-in-the-loop: real barcode scanners through the same drivers the agent runs.

Each test runs only when its scanner is named in the environment, and asks
a person to scan a code printed on the test sheet (any EAN-13 works):

    EDGE_HIL_SCANNER_SERIAL=/dev/serial/by-id/usb-...   a serial scanner (suffix CR, 9600 baud
                                                        unless EDGE_HIL_SCANNER_BAUD says otherwise)
    EDGE_HIL_SCANNER_HID=/dev/input/by-id/usb-...-event-kbd   a USB HID scanner
    EDGE_HIL_SCANNER_LAYOUT=de                          the HID scanner's keyboard layout (us by default)

    .venv/bin/pytest tests/hil -m hil -s
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from drivers.base import DriverContext
from drivers.scanner.driver import BAD_SCAN, SCAN
from drivers.scanner.hid_driver import HidScanner, HidScannerConfig
from drivers.scanner.serial import SerialScanner, SerialScannerConfig
from edge_agent.bus import EventBus

SERIAL = os.environ.get("EDGE_HIL_SCANNER_SERIAL")
HID = os.environ.get("EDGE_HIL_SCANNER_HID")
WAIT_S = 30

pytestmark = pytest.mark.hil


async def _one_scan(driver, bus: EventBus) -> dict:
    sub = bus.subscribe(SCAN, BAD_SCAN)
    await driver.open()
    print(f"\nscan any EAN-13 with {driver.config.id} within {WAIT_S} s ...", flush=True)
    runner = asyncio.create_task(driver.run())
    try:
        async with asyncio.timeout(WAIT_S):
            event = await sub.get()
    finally:
        runner.cancel()
        await asyncio.wait({runner})
        await driver.close()
    return {"type": event.type, **event.data}


@pytest.mark.skipif(not SERIAL, reason="no serial scanner named: set EDGE_HIL_SCANNER_SERIAL=/dev/serial/by-id/...")
def test_real_serial_scanner_scans():
    bus = EventBus()
    cfg = SerialScannerConfig(id="hil-scanner", kind="scanner.serial", port=SERIAL,
                              baudrate=int(os.environ.get("EDGE_HIL_SCANNER_BAUD", "9600")))
    event = asyncio.run(_one_scan(SerialScanner(cfg, DriverContext(cfg.id, bus, logging.getLogger("hil"))), bus))
    assert event["type"] == SCAN, f"the scan was refused: {event}"
    assert event["symbology"] in ("ean13", "upca") and event["code"].isdigit()


@pytest.mark.skipif(not HID, reason="no HID scanner named: set EDGE_HIL_SCANNER_HID=/dev/input/by-id/...")
def test_real_hid_scanner_scans_with_the_grab():
    bus = EventBus()
    cfg = HidScannerConfig(id="hil-hid", kind="scanner.hid", path=HID,
                           layout=os.environ.get("EDGE_HIL_SCANNER_LAYOUT", "us"))
    event = asyncio.run(_one_scan(HidScanner(cfg, DriverContext(cfg.id, bus, logging.getLogger("hil"))), bus))
    assert event["type"] == SCAN, f"the scan was refused (wrong layout?): {event}"
    assert event["symbology"] in ("ean13", "upca") and event["code"].isdigit()
