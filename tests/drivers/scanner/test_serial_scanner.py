"""A serial scanner on a pty, through a real agent process, to its WebSocket feed.

The scanner is the emulator in drivers/scanner/emulator.py: a real pty the
agent opens by path, as it would open /dev/serial/by-id/... The feed is read
with a real WebSocket client.

Every wait is for an event on the feed, bounded by ``E2E_S``: generous,
because a busy machine makes the agent slow, not wrong. How fast an unplug
is noticed is a figure for bench/bench_scan.py, not a deadline here.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from drivers.scanner.emulator import SerialScannerEmulator
from support.agent import TOKENS, AgentProcess

LIPSTICK = "6901234567892"   # LIP-RED-01 in demo/catalog.json
NUDE = "6901234567908"       # LIP-NUDE-02
E2E_S = 60.0  # bound on any one wait for the agent; a passing run takes milliseconds


@contextlib.contextmanager
def feed(agent: AgentProcess, role: str, query: str = "") -> Iterator[tuple[ClientConnection, dict]]:
    """A feed connection as ``role`` and its hello message."""
    with connect(f"ws://127.0.0.1:{agent.port}/v1/events{query}",
                 additional_headers={"Authorization": f"Bearer {TOKENS[role]}"}, open_timeout=E2E_S) as ws:
        hello = json.loads(ws.recv(timeout=E2E_S))
        assert hello["type"] == "hello"
        yield ws, hello


def next_event(ws: ClientConnection, type_: str, timeout: float = E2E_S, where=lambda e: True) -> dict:
    """The next feed event of ``type_`` that satisfies ``where``; other events are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {type_} event within {timeout} s")
        event = json.loads(ws.recv(timeout=left))
        if event["type"] == type_ and where(event):
            return event


def scanner_device(path: Path, **extra) -> dict:
    return {"id": "scanner-1", "kind": "scanner.serial", "port": str(path), "baudrate": 115200,
            "station": "kiosk-1", **extra}


@pytest.fixture
def store(make_agent, tmp_path):
    """An agent with the demo catalog and one serial scanner on a pty, its emulator plugged in."""
    emulator = SerialScannerEmulator(tmp_path / "dev" / "scanner-1").plug()
    # The longest dedupe window there is: two scans written back to back are one, even if a busy
    # machine holds the agent up between reading them (no test here scans one code twice on purpose).
    agent = make_agent(devices=[scanner_device(emulator.path, dedupe_window=10)])
    agent.import_catalog()
    agent.start()
    with feed(agent, "associate") as (ws, _), agent.client("associate") as c:
        # Scans are read once the scanner is online (the agent has opened the pty).
        deadline = time.monotonic() + E2E_S
        while c.get("/v1/devices").json()[0]["state"] != "online":
            assert time.monotonic() < deadline, "scanner did not come online"
            next_event(ws, "device.state", timeout=deadline - time.monotonic())
        yield agent, emulator, ws
    emulator.close()


def test_a_scan_reaches_the_feed_with_its_product(store):
    agent, emulator, ws = store
    emulator.scan(LIPSTICK)
    event = next_event(ws, "scan")
    data = event["data"]
    assert data["ok"] is True and data["device"] == "scanner-1" and data["station"] == "kiosk-1"
    assert data["code"] == LIPSTICK and data["symbology"] == "ean13" and data["kind"] == "product"
    assert data["product"]["sku"] == "LIP-RED-01" and data["product"]["price"] == "189.00"

    emulator.scan("4006381333931")  # a valid EAN-13 the store does not sell
    unknown = next_event(ws, "scan")["data"]
    assert unknown["product"] is None and unknown["unknown_code"] is True


def test_garbage_and_bad_check_digits_are_bad_scans_and_the_next_good_scan_gets_through(store):
    agent, emulator, ws = store
    emulator.write(b"\x00\xff\xfe line noise")
    emulator.write(b"\r")
    emulator.write(b"6901234567890\r")           # check digit should be 2
    emulator.write(b"69012345")                   # a good code split across writes
    emulator.write(b"67908\r")
    first = next_event(ws, "scan")["data"]
    second = next_event(ws, "scan")["data"]
    third = next_event(ws, "scan")["data"]
    assert first["ok"] is False and first["reason"]
    assert second["ok"] is False and "check digit" in second["reason"]
    assert third["ok"] is True and third["product"]["sku"] == "LIP-NUDE-02"
    with agent.client("associate") as c:
        counters = c.get("/v1/devices").json()[0]["counters"]
    assert counters["bad_scans"] == 2 and counters["scans"] == 1


def test_the_same_code_twice_within_the_window_counts_once(store):
    agent, emulator, ws = store
    emulator.scan(LIPSTICK)
    emulator.scan(LIPSTICK)
    emulator.scan(NUDE)
    assert next_event(ws, "scan")["data"]["code"] == LIPSTICK
    assert next_event(ws, "scan")["data"]["code"] == NUDE  # not the repeat
    with agent.client("associate") as c:
        counters = c.get("/v1/devices").json()[0]["counters"]
    assert counters["scans"] == 2 and counters["duplicates"] == 1


def test_a_member_qr_attaches_the_member_to_the_kiosk_session(store):
    agent, emulator, ws = store
    with feed(agent, "kiosk") as (kiosk, _):
        emulator.scan("RM1:M-0042")
        attached = next_event(kiosk, "member.attached")["data"]
        assert attached == {"station": "kiosk-1", "member_id": "M-0042", "via": "scan:scanner-1"}
        scan = next_event(ws, "scan")["data"]
        assert scan["kind"] == "member" and scan["fields"] == {"member_id": "M-0042"} and scan["product"] is None
    with agent.client("kiosk") as c:
        assert c.get("/v1/sessions/kiosk-1").json()["member_id"] == "M-0042"
        assert c.get("/v1/sessions/kiosk-2").status_code == 403  # not its own


def test_unplug_is_noticed_and_replug_brings_it_back(store):
    agent, emulator, ws = store
    emulator.unplug()
    # The read fails at once (the pty's EIO) and the 1 s path check backs it up; the time it takes is
    # measured in bench/bench_scan.py, where a busy machine shows as a figure instead of a failure.
    offline = next_event(ws, "device.state", where=lambda e: e["data"]["state"] == "offline")
    assert offline["data"]["id"] == "scanner-1"

    emulator.plug()
    next_event(ws, "device.state", where=lambda e: e["data"]["state"] == "online")
    emulator.scan(NUDE)
    assert next_event(ws, "scan")["data"]["product"]["sku"] == "LIP-NUDE-02"


def test_a_reconnecting_client_gets_what_it_missed(store):
    agent, emulator, _ = store
    with feed(agent, "console") as (watcher, hello):
        with feed(agent, "associate") as (ws, _):
            emulator.scan(LIPSTICK)
            seen = next_event(ws, "scan")
        emulator.scan(NUDE)
        emulator.scan("4006381333931")
        # Both handled by the agent once a client still connected has seen them.
        next_event(watcher, "scan", where=lambda e: e["data"]["code"] == "4006381333931")

    with feed(agent, "associate", f"?since={seen['id']}&epoch=an-earlier-run") as (_, other_run):
        assert other_run["missed"] is True and other_run["resumed"] is False
    with feed(agent, "associate", f"?since={seen['id']}&epoch={hello['epoch']}") as (resumed, again):
        assert again["resumed"] is True and again["missed"] is False
        codes = [next_event(resumed, "scan")["data"]["code"] for _ in range(2)]
    assert codes == [NUDE, "4006381333931"]


def test_the_feed_refuses_missing_tokens_and_roles_without_a_feed(store):
    agent, _, _ = store
    for headers, code in (({}, 4401), ({"Authorization": f"Bearer {TOKENS['mirror']}"}, 4403)):
        with connect(f"ws://127.0.0.1:{agent.port}/v1/events", additional_headers=headers,
                     open_timeout=E2E_S) as ws:
            error = json.loads(ws.recv(timeout=E2E_S))
            assert error["type"] == "error" and error["detail"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=E2E_S)
            assert closed.value.rcvd.code == code
    # A browser passes a one-use ticket in the query string (its token never goes in a URL).
    with agent.client("console") as http:
        ticket = http.post("/v1/tickets", json={"for": "events"}).json()["ticket"]
    with connect(f"ws://127.0.0.1:{agent.port}/v1/events?ticket={ticket}", open_timeout=E2E_S) as ws:
        assert json.loads(ws.recv(timeout=E2E_S))["type"] == "hello"
