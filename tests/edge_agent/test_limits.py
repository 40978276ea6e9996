"""Nobody on the store's Wi-Fi can exhaust the agent: limits before any work (edge_agent/api/limits.py).

A real agent process, real sockets. The agent runs under ``prlimit
--nofile=1024:1024``, systemd's default soft limit, as the unit without
``LimitNOFILE`` had it: the floods below once took every descriptor
(checkout timed out, 33 MB of "Too many open files" in 15 s) or 1.7 GB of
memory. The hostile clients connect from 127.0.0.2, the kiosk from
127.0.0.1: another address on the store's network.
"""

from __future__ import annotations

import resource
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from support.agent import TOKENS, AgentProcess, config_dict, free_port

ATTACKER = "127.0.0.2"


def rss_mb(agent: AgentProcess) -> float:
    for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def checkout(agent: AgentProcess, timeout: float = 30.0) -> float:
    """One sale from the kiosk; its seconds. It must be answered 201."""
    body = {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
            "payment": {"method": "cash"}}
    t = time.perf_counter()
    r = httpx.post(f"{agent.url}/v1/sales", json=body, timeout=timeout,
                   headers={"Authorization": f"Bearer {TOKENS['kiosk']}"})
    assert r.status_code == 201, r.text
    return time.perf_counter() - t


@pytest.fixture
def agent(tmp_path: Path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this test opens over 1,100 sockets itself
    config = config_dict(free_port(), [])
    config["api"]["listen"] = f"0.0.0.0:{config['api']['listen'].rsplit(':', 1)[1]}"
    config["api"].update(header_timeout=3, max_connections_per_client=64)
    wd = tmp_path / "agent"
    wd.mkdir()
    a = AgentProcess(wd, config, wrapper=["prlimit", "--nofile=1024:1024", "--"])
    a.import_catalog()
    a.start()
    yield a
    a.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_oversized_bodies_are_refused_before_they_are_read(agent):
    before = rss_mb(agent)
    declared = b"x" * 1024

    def big_declared() -> int:
        # 250 MB announced, no token: the answer comes before the body is sent.
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as s:
            s.sendall(b"POST /v1/sales HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 262144000\r\n\r\n" + declared)
            head = s.recv(4096)
            return int(head.split()[1])

    def big_chunked() -> int:
        # No length at all: chunks until the agent stops it.
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30) as s:
            s.sendall(b"POST /v1/sales HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"y" * 64 * 1024)
            try:
                for _ in range(4000):  # 250 MB if nothing stopped it
                    s.sendall(chunk)
            except OSError:
                pass  # the agent answered and closed: expected
            return int(s.recv(4096).split()[1])

    results: list[int] = []
    threads = [threading.Thread(target=lambda f=f: results.append(f())) for f in (big_declared, big_chunked) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [413, 413, 413, 413]
    assert rss_mb(agent) - before < 60, f"RSS grew from {before:.0f} to {rss_mb(agent):.0f} MB"
    checkout(agent)  # and checkout goes on
    log = agent.log()
    assert log.count("refused a") <= 2, log[-2000:]  # one line per client per minute, not one per body
    assert "Traceback" not in log


def test_a_body_dripped_a_byte_at_a_time_is_cut_off_and_gives_its_slot_back(agent):
    """The head is quick, the body comes a byte a second: closed after api.header_timeout (3 s) and the
    body's time at 16 KiB/s, without a token ever being looked at; the address's slots come back."""
    from edge_agent.api.limits import BODY_MIN_RATE

    def dripper() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", agent.port), timeout=30, source_address=(ATTACKER, 0))
        s.sendall(b"POST /v1/sales HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2000\r\n\r\n{")
        return s

    drips = [dripper() for _ in range(64)]  # every slot the attacker's address may hold
    t = time.monotonic()
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(1):
            for s in drips:
                try:
                    s.sendall(b" ")
                except OSError:
                    pass

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        for s in drips:
            try:
                assert s.recv(1) == b""  # closed, no answer
            except ConnectionResetError:
                pass
        took = time.monotonic() - t
        assert 3 <= took < 3 + 2000 / BODY_MIN_RATE + 25, took
    finally:
        stop.set()
        dripping.join(10)
        for s in drips:
            s.close()
    # The slots came back: the same address gets a whole request answered.
    with socket.create_connection(("127.0.0.1", agent.port), timeout=30, source_address=(ATTACKER, 0)) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    checkout(agent)
    log = agent.log()
    assert log.count("its request body did not arrive in time") == 1, log[-2000:]  # once a minute per address
    assert "Traceback" not in log


def test_a_slow_head_is_cut_off_and_a_flood_of_sockets_cannot_stop_checkout(agent):
    # One connection that never finishes its request head: closed after api.header_timeout.
    slow = socket.create_connection(("127.0.0.1", agent.port), timeout=30)
    slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    t = time.monotonic()
    assert slow.recv(1) == b""
    assert 2 <= time.monotonic() - t < 25
    slow.close()

    # 1,100 sockets from another address, each sending a header line every 2 s (a slowloris).
    flood: list[socket.socket] = []
    refused = 0
    for _ in range(1100):
        s = socket.socket()
        s.bind((ATTACKER, 0))
        try:
            s.connect(("127.0.0.1", agent.port))
            s.sendall(b"POST /v1/sales HTTP/1.1\r\nHost: x\r\n")
            flood.append(s)
        except OSError:
            refused += 1
            s.close()
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(2):
            for s in flood:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        # Checkout from the kiosk's address goes on, every sale answered, through the whole flood.
        times = [checkout(agent) for _ in range(40)]
        assert max(times) < 10, times
        with httpx.Client(base_url=agent.url, timeout=30) as c:
            assert c.get("/v1/health").json()["status"] == "ok"
        # The ones the per-address cap let in are cut off by the header timeout, dripping or not.
        deadline = time.monotonic() + 30
        for s in flood:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while s.recv(4096):
                    pass
            except (TimeoutError, OSError):
                pass
        alive = 0
        for s in flood:
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""
            except BlockingIOError:
                alive += 1  # still open, nothing to read
            except OSError:
                pass
    finally:
        stop.set()
        dripper.join(10)
        for s in flood:
            s.close()
    # The per-address cap held the flood to 64 at a time, and the header timeout closed those.
    assert alive == 0
    log = agent.log()
    assert "Too many open files" not in log
    assert log.count("api: closed a connection from 127.0.0.2") <= 3, log[-3000:]
    assert len(log.encode()) < 200_000


def test_a_huge_websocket_message_is_refused_before_it_is_read(agent):
    # uvicorn's default would read 16 MiB into memory before any handler sees it; the agent's cap is 64 KiB.
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = agent.url.replace("http://", "ws://") + "/v1/events"
    with connect(url, additional_headers={"Authorization": f"Bearer {TOKENS['associate']}"},
                 max_size=None, open_timeout=30) as ws:
        hello = ws.recv(timeout=30)
        assert '"hello"' in hello
        ws.send("x" * (1024 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    checkout(agent)  # and the kiosk is served as before
