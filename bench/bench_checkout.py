"""Checkouts per second and latency: 32 kiosks checking out at once against a real agent, each sale durable before its 201.

The agent runs as its own process (``edge-agent run``) with the demo catalog
(imported by ``edge-agent catalog-import``), 32 kiosk clients in its
devices.yaml, no devices and no reachable hub (a store offline: nothing
drains the outbox, as in a broker outage). 32 kiosks, each one keep-alive
HTTP/1.1 connection, check out in a closed loop: ``POST /v1/sales`` with 1 to
3 lines of the demo catalog by barcode, 40 % with a member id, a fresh
``client_sale_id``; the next request is sent when the 201 is in, which the
agent sends only after the sale, its stock decrements and its outbox event
are committed with ``synchronous=FULL`` (group commit). The kiosks are one
asyncio process with a minimal HTTP client (so the load generator costs
little of the machine's 2 cores) on uvloop; requests are built before the
clock starts. After a warm-up, for ``seconds``, throughput is 201s per
second and latency is send-to-response per request.

Baseline, same run, same server and kiosks: ``GET /v1/sessions/{kiosk}``, a
trivial authenticated endpoint (bearer token check, one dict, no disk).
Targets: at least 1,000 sales/s and p99 under 50 ms. Checks: every sale got
its 201; after SIGTERM the store holds exactly those sales, with outbox seq
1..N and no gap. The note gives the CPU each process spent per sale.
``--quick``: 2 s of each instead of 10.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import yaml

from common import (REPO, Row, agent_tls, check_row, cpu_seconds, durable_tmpdir, machine, percentile, row,
                    script_main)

BENCH = "checkout"
KIOSKS = 32
CODES = ["6901234567892", "6901234567908", "6901234567915", "6901234567922", "6901234567939", "6901234567946"]
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class Plan:
    """How long to measure each side, after how long a warm-up."""

    seconds: float
    warmup: float
    https: bool = False  # --https: the agent serves TLS, the kiosks trust its CA


DEFAULT = Plan(seconds=10.0, warmup=1.0)
QUICK = Plan(seconds=2.0, warmup=0.5)


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(i: int) -> str:
    return f"bench-kiosk-{i}"


def config(port: int) -> dict:
    return {
        "store": {"id": "store-bench", "name": "Bench", "timezone": "UTC", "currency": "CNY"},
        "hub": {"url": f"mqtt://127.0.0.1:{free_port()}"},  # nothing listens: a store offline
        "api": {"listen": f"127.0.0.1:{port}", "clients": [
            {"name": f"kiosk-{i}", "role": "kiosk", "token_sha256": hashlib.sha256(token(i).encode()).hexdigest()}
            for i in range(KIOSKS)]},
        "devices": [],
    }


class Conn:
    """One kiosk's keep-alive HTTP/1.1 connection: just enough client for JSON requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, tls: ssl.SSLContext | None = None) -> "Conn":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                       server_hostname="127.0.0.1" if tls else None)
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Write one request, read its response; (status, body)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def sale_request(rng: random.Random, i: int) -> bytes:
    """A kiosk's checkout as raw HTTP."""
    lines = [{"code": c, "qty": rng.choice((1, 1, 1, 2, 3))} for c in rng.sample(CODES, rng.randint(1, 3))]
    body = {"client_sale_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "lines": lines,
            "payment": {"method": rng.choice(("card", "qr", "cash")), "reference": None}}
    if rng.random() < 0.4:
        body["member_id"] = f"M-{rng.randrange(10**8):08d}"
    data = json.dumps(body).encode()
    return (f"POST /v1/sales HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {token(i)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


def session_request(i: int) -> bytes:
    """The baseline: a kiosk reading its own session."""
    return f"GET /v1/sessions/kiosk-{i} HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {token(i)}\r\n\r\n".encode()


@dataclass
class Side:
    """What one measured run saw."""

    ok: int = 0
    bad: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    agent_cpu: float = 0.0
    bench_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


async def _kiosk(conn: Conn, requests: list[bytes], expect: int, side: Side, state: dict) -> None:
    n = 0
    while not state["stop"]:
        request = requests[n % len(requests)]
        n += 1
        start = time.perf_counter()
        status, _ = await conn.send(request)
        if state["measuring"]:
            side.latencies.append(time.perf_counter() - start)
            if status == expect:
                side.ok += 1
            else:
                side.bad[status] = side.bad.get(status, 0) + 1
        elif status != expect:
            side.bad[status] = side.bad.get(status, 0) + 1


async def _run(port: int, pid: int, requests: list[list[bytes]], expect: int, plan: Plan,
               tls: ssl.SSLContext | None = None) -> Side:
    side = Side()
    state = {"stop": False, "measuring": False}
    conns = [await Conn.open(port, tls) for _ in range(KIOSKS)]
    tasks = [asyncio.create_task(_kiosk(c, r, expect, side, state)) for c, r in zip(conns, requests)]
    await asyncio.sleep(plan.warmup)  # the load runs; this only times the warm-up
    agent0, bench0 = cpu_seconds(pid), time.process_time()
    state["measuring"] = True
    start = time.perf_counter()
    await asyncio.sleep(plan.seconds)
    state["measuring"] = False
    side.seconds = time.perf_counter() - start
    side.agent_cpu, side.bench_cpu = cpu_seconds(pid) - agent0, time.process_time() - bench0
    state["stop"] = True
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return side


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the agent exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a starting process, not synchronising a test
    raise RuntimeError("the agent did not listen")


@dataclass
class Measured:
    baseline: Side
    checkout: Side
    stored: int
    seq: tuple[int, int, int]
    note: str


def measure(plan: Plan) -> list[Row]:
    """Start the agent, run both sides, stop it, count what it stored."""
    where = machine()
    rng = random.Random(42)
    rate_guess = 4000  # requests built per kiosk: more than it can send in the run (cycled if not)
    per_kiosk = int(rate_guess * (plan.seconds + plan.warmup) / KIOSKS) + 100
    sales = [[sale_request(rng, i) for _ in range(per_kiosk)] for i in range(KIOSKS)]
    sessions = [[session_request(i)] for i in range(KIOSKS)]
    with durable_tmpdir("bench-checkout-") as work:
        port = free_port()
        cfg, tls = config(port), None
        if plan.https:
            cfg["api"]["tls"], tls = agent_tls(work / "tls")
        (work / "devices.yaml").write_text(yaml.safe_dump(cfg))
        subprocess.run([sys.executable, "-m", "edge_agent.cli", "catalog-import", str(REPO / "demo" / "catalog.json"),
                        "--data-dir", str(work / "data")], check=True, capture_output=True)
        log = open(work / "agent.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(work / "devices.yaml"),
                                 "--data-dir", str(work / "data"), "--log-level", "warning"],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={k: v for k, v in os.environ.items() if not k.startswith("EDGE_")})
        try:
            _wait_ready(port, proc)
            loop = _new_loop()
            baseline = loop.run_until_complete(_run(port, proc.pid, sessions, 200, plan, tls))
            checkout = loop.run_until_complete(_run(port, proc.pid, sales, 201, plan, tls))
            loop.close()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
        conn = sqlite3.connect(work / "data" / "store.db")
        try:
            stored = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
            seq = conn.execute("SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM outbox").fetchone()
        finally:
            conn.close()
    return rows_for(plan, Measured(baseline, checkout, stored, seq, where))


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def rows_for(plan: Plan, m: Measured) -> list[Row]:
    """Rate and latency against the trivial endpoint's, the two targets, the checks."""
    ms = 1000
    b, c = m.baseline, m.checkout
    c50, c99 = percentile(c.latencies, 50) * ms, percentile(c.latencies, 99) * ms
    b50, b99 = percentile(b.latencies, 50) * ms, percentile(b.latencies, 99) * ms
    how = (f"{KIOSKS} kiosks, keep-alive, closed loop, {plan.seconds:g} s after {plan.warmup:g} s warm-up; "
           f"CPU per sale: agent {c.agent_cpu / max(c.ok, 1) * 1e6:.0f} µs, kiosks "
           f"{c.bench_cpu / max(c.ok, 1) * 1e6:.0f} µs (per session read: agent "
           f"{b.agent_cpu / max(b.ok, 1) * 1e6:.0f} µs); {m.note}")
    total_sales = m.seq[0]
    return [
        row(BENCH, "checkouts/s, each durable before its 201", c.rate, "sales/s",
            "GET /v1/sessions/{kiosk} on the same server", b.rate, note=how),
        row(BENCH, "checkout p50", c50, "ms", "trivial endpoint p50", b50, higher_is_better=False),
        row(BENCH, "checkout p99", c99, "ms", "trivial endpoint p99", b99, higher_is_better=False,
            note=f"max {max(c.latencies) * ms:.1f} ms"),
        row(BENCH, "checkouts/s against the target", c.rate, "sales/s", "target", TARGET_RATE, min_ratio=1),
        row(BENCH, "checkout p99 against the target", c99, "ms", "target", TARGET_P99_MS,
            higher_is_better=False, min_ratio=1),
        check_row(BENCH, "every checkout got its 201", sum(c.bad.values()) + sum(b.bad.values()), 0, "errors",
                  f"other answers: {c.bad or b.bad or 'none'}"),
        check_row(BENCH, "the store holds every sale answered, outbox seq 1..N", m.stored, total_sales, "sales",
                  f"sales rows {m.stored}, outbox {m.seq[0]} events, seq {m.seq[1]}..{m.seq[2]}"),
        check_row(BENCH, "outbox seq has no gap", m.seq[2] - m.seq[1] + 1 if m.seq[0] else 0, m.seq[0], "events",
                  "max - min + 1 == count"),
    ]


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT, https=True))
