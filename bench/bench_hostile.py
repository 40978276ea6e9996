"""Checkout under attack: p99 with 1,100 slow clients and four oversized bodies in flight, against p99 alone.

The agent runs as its own process (``edge-agent run``, as bench_checkout.py
starts it, its file limit raised as the unit's ``LimitNOFILE`` allows) with
the API's default limits (edge_agent/api/limits.py). Eight kiosks check out
in a closed loop on keep-alive connections (bench_checkout.py's client and
requests) from 127.0.0.1.

Baseline, same run, same agent and kiosks: checkout p99 with nobody else
on the network. Then, from 127.0.0.2 (another address on the store's
Wi-Fi), an attacker in its own process (at nice 19: it stands for another
machine, yet shares these two cores) keeps 1,100 slowloris sockets going
(each sends a request head one header line every 2 s and opens again when
the agent closes it) and four clients that post 250 MB bodies without a
token, the next 0.2 s after each refusal. The kiosks' p99 is measured through it.
Target: within 2x of the baseline (the ratio is baseline / under attack, so
at least 0.5). Checks: every sale got its 201 on both sides, and the agent's
RSS grew less than 100 MB. ``--quick``: 3 s of each instead of 10.

``--https``: the agent serves TLS (``api.tls``, a CA made for the run), the
kiosks trust its CA; every slow client does its TLS handshake first and then
drips its head, the big bodies go over TLS too. The rows say "(HTTPS)".
"""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench_checkout import Plan, Side, _new_loop, _run, _wait_ready, config, free_port, sale_request
from common import REPO, Row, agent_tls, check_row, durable_tmpdir, machine, percentile, row, script_main

BENCH = "hostile"
KIOSKS = 8
SLOW = 1100
BIG = 4
ATTACKER = "127.0.0.2"


DEFAULT = Plan(seconds=10.0, warmup=1.0)
QUICK = Plan(seconds=3.0, warmup=0.5)


# The attacker: its own process ------------------------------------------------------------

def _client_tls(ca: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca) if ca else None


def _slowloris(port: int, stop: multiprocessing.Event, opened: multiprocessing.Value, ca: str | None) -> None:
    tls = _client_tls(ca)
    socks: list[socket.socket | None] = [None] * SLOW
    while not stop.is_set():
        for i in range(SLOW):
            s = socks[i]
            try:
                if s is None:
                    s = socket.socket()
                    s.setblocking(True)
                    s.settimeout(1)
                    s.bind((ATTACKER, 0))
                    s.connect(("127.0.0.1", port))
                    if tls is not None:
                        s = tls.wrap_socket(s, server_hostname="127.0.0.1")
                    s.sendall(b"POST /v1/sales HTTP/1.1\r\nHost: agent\r\n")
                    socks[i] = s
                    with opened.get_lock():
                        opened.value += 1
                else:
                    s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                if s is not None:
                    s.close()
                socks[i] = None
        stop.wait(2)
    for s in socks:
        if s is not None:
            s.close()


def _big_bodies(port: int, stop: multiprocessing.Event, refused: multiprocessing.Value, ca: str | None) -> None:
    tls = _client_tls(ca)
    chunk = b"x" * (64 * 1024)
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    (tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw) as s:
                s.sendall(b"POST /v1/sales HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 262144000\r\n\r\n")
                sent = 0
                while sent < 262_144_000 and not stop.is_set():
                    s.sendall(chunk)
                    sent += len(chunk)
        except OSError:
            with refused.get_lock():
                refused.value += 1  # the agent answered 413 and closed
        stop.wait(0.2)  # then the next one: four bodies in flight, not a connection flood


def _attack(port: int, stop: multiprocessing.Event, opened: multiprocessing.Value,
            refused: multiprocessing.Value, ca: str | None) -> None:
    import threading

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The attacker is another machine on the store's Wi-Fi; here it shares the agent's two cores, so it
    # runs at the lowest priority to take as little of theirs as it can.
    os.nice(19)
    threads = [threading.Thread(target=_slowloris, args=(port, stop, opened, ca))]
    threads += [threading.Thread(target=_big_bodies, args=(port, stop, refused, ca)) for _ in range(BIG)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# The run ------------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Measured:
    alone: Side
    attacked: Side
    opened: int
    refused: int
    rss: tuple[float, float]
    note: str


def measure(plan: Plan) -> list[Row]:
    rng = random.Random(7)
    per_kiosk = int(3000 * (plan.seconds + plan.warmup) / KIOSKS) + 100
    sales = [[sale_request(rng, i) for _ in range(per_kiosk)] for i in range(KIOSKS)]
    with durable_tmpdir("bench-hostile-") as work:
        port = free_port()
        cfg = config(port)
        cfg["api"]["listen"] = f"0.0.0.0:{port}"  # the attacker's address must reach it
        tls, ca = None, None
        if plan.https:
            cfg["api"]["tls"], tls = agent_tls(work / "tls")
            ca = str(work / "tls" / "ca.crt")
        (work / "devices.yaml").write_text(yaml.safe_dump(cfg))
        subprocess.run([sys.executable, "-m", "edge_agent.cli", "catalog-import", str(REPO / "demo" / "catalog.json"),
                        "--data-dir", str(work / "data")], check=True, capture_output=True)
        log = open(work / "agent.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(work / "devices.yaml"),
                                 "--data-dir", str(work / "data"), "--log-level", "warning"],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={k: v for k, v in os.environ.items() if not k.startswith("EDGE_")})
        ctx = multiprocessing.get_context("spawn")
        stop, opened, refused = ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
        attacker = ctx.Process(target=_attack, args=(port, stop, opened, refused, ca), daemon=True)
        try:
            _wait_ready(port, proc)
            loop = _new_loop()
            alone = loop.run_until_complete(_run(port, proc.pid, sales[:KIOSKS], 201, plan, tls))
            rss0 = rss_mb(proc.pid)
            attacker.start()
            while opened.value < 64 and attacker.is_alive():
                time.sleep(0.05)  # waiting for the attack to be under way, not synchronising
            attacked = loop.run_until_complete(_run(port, proc.pid, sales[:KIOSKS], 201, plan, tls))
            rss1 = rss_mb(proc.pid)
            loop.close()
        finally:
            stop.set()
            attacker.join(30)
            if attacker.is_alive():
                attacker.kill()
            proc.terminate()
            proc.wait(30)
            log.close()
        return rows_for(plan, Measured(alone, attacked, opened.value, refused.value, (rss0, rss1), machine()))


def rows_for(plan: Plan, m: Measured) -> list[Row]:
    ms = 1000
    a99, h99 = percentile(m.alone.latencies, 99) * ms, percentile(m.attacked.latencies, 99) * ms
    note = (f"{KIOSKS} kiosks, keep-alive, closed loop, {plan.seconds:g} s each after {plan.warmup:g} s warm-up; "
            f"alone {m.alone.rate:,.0f} sales/s p50 {percentile(m.alone.latencies, 50) * ms:.1f} ms, under attack "
            f"{m.attacked.rate:,.0f} sales/s p50 {percentile(m.attacked.latencies, 50) * ms:.1f} ms; attacker "
            f"opened {m.opened:,} slow sockets, {m.refused:,} big bodies refused; agent RSS {m.rss[0]:.0f} -> "
            f"{m.rss[1]:.0f} MB; {m.note}")
    rows = [row(BENCH, f"checkout p99, {SLOW:,} slow clients + {BIG} x 250 MB bodies", h99, "ms",
                "checkout p99 alone", a99, min_ratio=0.5, higher_is_better=False, note=note)]
    bad = sum(m.alone.bad.values()) + sum(m.attacked.bad.values())
    rows.append(check_row(BENCH, "every checkout answered 201", bad, 0, "errors",
                          f"alone {m.alone.bad}, under attack {m.attacked.bad}"))
    grew = m.rss[1] - m.rss[0]
    rows.append(check_row(BENCH, "agent RSS grew < 100 MB under attack", int(grew >= 100), 0, "",
                          f"{m.rss[0]:.0f} -> {m.rss[1]:.0f} MB"))
    return rows


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT, https=True))
