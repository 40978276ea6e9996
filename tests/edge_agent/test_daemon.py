"""The daemon's life cycle: readiness, SIGTERM, absent devices, watchdog."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml

from support.agent import free_port


def test_sigterm_stops_cleanly_within_10_s(make_agent):
    agent = make_agent().start()
    with agent.client() as c:
        assert c.get("/v1/health").status_code == 200
    started = time.monotonic()
    code = agent.stop(signal.SIGTERM)
    assert code == 0, agent.log()
    assert time.monotonic() - started < 10
    assert any("STOPPING=1" in n for n in agent.notices) or "SIGTERM" in agent.log()
    assert "agent stopped" in agent.log()


def test_sigint_also_exits_0(make_agent):
    agent = make_agent().start()
    assert agent.stop(signal.SIGINT) == 0, agent.log()


def test_absent_device_does_not_stop_the_agent(make_agent):
    closed = free_port()  # nothing listens here: the device is "unplugged"
    agent = make_agent(devices=[
        {"id": "hb-missing", "kind": "sensor.heartbeat", "address": f"127.0.0.1:{closed}", "interval": 0.5},
        {"id": "hb-ok", "kind": "sensor.heartbeat", "interval": 0.5},
    ]).start()
    with agent.client("associate") as c:
        deadline = time.monotonic() + 10
        while True:  # the supervisor reports state asynchronously; poll the public API
            devices = {d["id"]: d for d in c.get("/v1/devices").json()}
            if devices["hb-missing"]["state"] == "offline" and devices["hb-ok"]["state"] == "online":
                break
            assert time.monotonic() < deadline, devices
            time.sleep(0.05)
        health = c.get("/v1/health").json()
    assert "cannot connect" in devices["hb-missing"]["last_error"]
    assert health["status"] == "degraded"
    assert agent.stop() == 0


def test_watchdog_is_fed_when_systemd_asks_for_it(make_agent):
    agent = make_agent(env={"WATCHDOG_USEC": "400000"}).start()  # 0.4 s: ping every 0.2 s
    agent.wait_notice("WATCHDOG=1", timeout=30)
    assert agent.stop() == 0


def test_port_in_use_fails_fast_with_a_clear_message(make_agent):
    first = make_agent().start()
    second = make_agent(config=first.config)
    second.config_path.write_text(yaml.safe_dump(first.config))
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(second.config_path),
         "--data-dir", str(second.workdir / "data")],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 1
    assert f"cannot listen on {first.config['api']['listen']}" in out.stderr
    assert "address already in use" in out.stderr.lower()
    assert not (second.workdir / "data").exists()  # nothing was started
    assert first.stop() == 0


def test_a_token_in_the_feeds_url_never_reaches_the_log(make_agent):
    """The feed refuses ?token= (edge_agent/api/routers/events.py); uvicorn logs the WebSocket it accepted
    to say so, and daemon.py's RedactTokens still keeps the token out of that line."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from support.agent import TOKENS
    from support.flows import poll

    agent = make_agent().start()
    token = TOKENS["associate"]
    with connect(f"ws://127.0.0.1:{agent.port}/v1/events?token={token}&since=0", open_timeout=30) as ws:
        assert "a token in a URL is refused" in ws.recv(timeout=30)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    line = poll(agent.log, lambda log: "WebSocket /v1/events?token=" in log, what="the accepted WebSocket logged")
    assert "token=***&since=0" in line
    assert token not in agent.log()


def test_a_token_in_a_second_subprotocol_header_is_refused_and_never_logged(make_agent):
    """"bearer" and the token in two Sec-WebSocket-Protocol headers: websockets logs each header on a line of
    its own at debug; the feed refuses the split (4401) and neither line shows the token."""
    import base64
    import os
    import socket

    from support.agent import TOKENS
    from support.flows import poll

    agent = make_agent(env={"EDGE_LOG_LEVEL": "debug"}).start()
    token = TOKENS["associate"]
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{agent.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: bearer\r\nSec-WebSocket-Protocol: {token}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"one Sec-WebSocket-Protocol header" not in answer:  # the 101, then the error frame
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 101") and b'"type": "error"' in answer
    assert b'"type": "hello"' not in answer
    poll(agent.log, lambda log: "refused a connection" in log and "sec-websocket-protocol: ***" in log.lower(),
         what="the handshake and the refusal logged")
    assert token not in agent.log()


def test_access_point_polls_do_not_fill_the_log_at_info(make_agent):
    """httpx logs every request at INFO; an agent polling an access point keeps those lines out of its log."""
    from drivers.shelf_label.ap_emulator import ApEmulator
    from support.flows import poll

    with ApEmulator() as ap:
        agent = make_agent(devices=[{"id": "labels-1", "kind": "shelf_label.oepl", "url": ap.url,
                                     "poll_interval": 0.1}]).start()

        def polls() -> int:
            with ap.lock:
                return sum(r.startswith("GET /get_db") for r in ap.requests)

        poll(polls, lambda n: n >= 5, timeout=60, what="the agent polling the access point")
        assert agent.stop() == 0
    log = agent.log()
    assert "agent stopped" in log
    assert "HTTP Request" not in log and " httpx:" not in log and " httpcore" not in log, log[-2000:]


@pytest.mark.parametrize("line", [
    '127.0.0.1:5 - "GET /v1/mirror/m/stream?token=SECRET HTTP/1.1" 401',
    '127.0.0.1:5 - "GET /v1/events?since=3&%74oken=SECRET HTTP/1.1" 403',
    '127.0.0.1:5 - "GET /v1/events?TOKEN=SECRET&x=1 HTTP/1.1" 403',
    '127.0.0.1:5 - "GET /v1/events?ticket=SECRET HTTP/1.1" 101',
    "< authorization: Bearer SECRET",
    "< sec-websocket-protocol: bearer, SECRET",
    "< sec-websocket-protocol: SECRET",  # the token alone, in a second header
    "< Sec-WebSocket-Protocol: bearer,SECRET, chat",
    "[(b'sec-websocket-protocol', b'bearer, SECRET')]",
    "{'sec-websocket-protocol': 'SECRET'}",
    "{'Authorization': 'Bearer SECRET'}",
])
def test_redact_blanks_every_credential_a_log_line_could_carry(line):
    from edge_agent.daemon import redact

    clean = redact(line)
    assert "SECRET" not in clean and "***" in clean


def test_redact_leaves_other_parameters_alone():
    from edge_agent.daemon import redact

    line = '"GET /v1/events?since=3&epoch=abc HTTP/1.1" 101'
    assert redact(line) == line
