"""A USB HID scanner through a real agent process: evdev under umockdev, to the live feed.

The agent runs under ``umockdev-run``, which makes /dev/input/event7 exist
for it alone: its ioctls are answered from tests/fixtures/scanner/ and its
reads replay key events typed by drivers/scanner/hid_emulator.py. The
driver, python-evdev, the grab and the German layout table all run for real.

Nothing here is timed: the test waits for the agent's READY=1 and then for
the scans on the live feed, each with a bound generous enough for a loaded
machine (the agent's start-up under umockdev's preload library took 3 s on
an idle 2-core machine and 16 s on a busy one). The replay is key events
only, under the 4 KiB a pty holds (conftest.py says why).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from drivers.scanner.hid_emulator import evemu_events
from drivers.scanner.keymap import Keymap
from support.agent import TOKENS, AgentProcess, config_dict, free_port

FIXTURES = Path(__file__).parents[2] / "fixtures" / "scanner"
NODE = "/dev/input/event7"
STARTUP_S = 120  # to READY=1
SCANS_S = 60     # from READY=1 to the last scan on the feed; about 0.3 s when idle
# A product, a member card (Y and Z trade places on a German keyboard), another product.
CODES = ["6901234567892", "RM1:M-YZ42", "6901234567908"]

pytestmark = pytest.mark.skipif(shutil.which("umockdev-run") is None,
                                reason="umockdev-run not installed (Debian: apt-get install umockdev)")


def test_a_german_hid_scanner_scans_into_the_feed(tmp_path, pty_safe):
    events = tmp_path / "scans.evemu"
    events.write_text(pty_safe(evemu_events(Keymap.load("de"), CODES)))
    device = {"id": "scanner-hid", "kind": "scanner.hid", "path": NODE, "layout": "de", "station": "kiosk-1"}
    agent = AgentProcess(tmp_path, config_dict(free_port(), [device]), wrapper=[
        "umockdev-run", "-d", str(FIXTURES / "hid-scanner.umockdev"),
        "-i", f"{NODE}={FIXTURES / 'hid-scanner.ioctl'}", "-e", f"{NODE}={events}", "--"])
    agent.import_catalog()
    try:
        agent.start(timeout=STARTUP_S)
        url = f"ws://127.0.0.1:{agent.port}/v1/events"
        headers = {"Authorization": f"Bearer {TOKENS['associate']}"}
        with connect(url, additional_headers=headers, open_timeout=SCANS_S) as ws:
            epoch = json.loads(ws.recv(timeout=SCANS_S))["epoch"]
        # The replay starts when the driver opens the node, maybe before we are connected:
        # resume from the start of this run, then wait for each scan as it is published.
        deadline = time.monotonic() + SCANS_S
        with connect(f"{url}?since=0&epoch={epoch}", additional_headers=headers, open_timeout=SCANS_S) as ws:
            assert json.loads(ws.recv(timeout=SCANS_S))["resumed"] is True
            scans = []
            while len(scans) < len(CODES):
                left = deadline - time.monotonic()
                assert left > 0, f"{len(scans)} of {len(CODES)} scans within {SCANS_S} s: {scans}\n{agent.log()}"
                try:
                    event = json.loads(ws.recv(timeout=left))
                except TimeoutError:
                    continue  # the assertion above reports it
                if event["type"] == "scan":
                    scans.append(event["data"])
        with agent.client("associate") as c:
            dev = c.get("/v1/devices").json()[0]
        assert dev["state"] == "online" and dev["counters"]["scans"] == len(CODES), dev
    finally:
        agent.close()
    assert [s["code"] for s in scans] == ["6901234567892", "M-YZ42", "6901234567908"]
    assert scans[0]["product"]["sku"] == "LIP-RED-01" and scans[2]["product"]["sku"] == "LIP-NUDE-02"
    assert scans[1]["kind"] == "member" and all(s["device"] == "scanner-hid" for s in scans)
