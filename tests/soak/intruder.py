"""An intruder on the store's Wi-Fi, for the fault's hold, while the kiosks go on selling.

From other loopback addresses (``ATTACKERS``, standing for phones on the
store's network), with no token:

- slowloris: ``SLOW_PER_ADDRESS`` sockets from each address, each sending a
  request head one header line every ``DRIP`` s and opening again when the
  agent closes it (api.header_timeout, the connection caps);
- oversized bodies: ``POST /v1/sales`` announcing ``BIG_BODY`` bytes, from
  ``BIG_SENDERS``, again and again, each of which must be answered 413 from
  its head alone (the sender waits for the answer before sending more).

Checks (row ``HOSTILE``): the kiosks sell during the attack (sales the
ledger took inside the hold), ``GET /v1/health`` answers within
``HEALTH_WITHIN`` s while it lasts, every oversized body got a 413, the
agent's open files stay under its connection cap (plus what it had before),
its log grows by a bounded number of lines (one per condition per interval,
edge_agent/api/limits.py), and within 60 s after the attack the files it
held are given back. At the end of the day no client's token is in any
process's log (``no_secret_in_logs``). RSS growth is judged with the rest of the day by
invariants.ResourceWatch.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from soak import checks as rows
from soak.day import Day
from soak.faults import SHOW_WITHIN, expect
from soak.rig import HUB_CONSOLE_TOKEN, TOKENS

ATTACKERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
# The oversized bodies come from addresses of their own: the slowloris fill their addresses' share.
BIG_SENDERS = ("127.0.0.6", "127.0.0.7")
SLOW_PER_ADDRESS = 100  # above api.max_connections_per_client (64): the per-address cap is exercised
DRIP = 2.0
BIG_BODY = 250 * 1024 * 1024
HEALTH_WITHIN = 5.0
# The API's default connection cap (edge_agent/config.py ApiConfig.max_connections).
MAX_CONNECTIONS = 512
# Lines the agent may add to its log over the attack: a handful of conditions, each once a minute.
LOG_LINES_FLOOR = 20
LOG_LINES_PER_MINUTE = 10


def _fds(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Intruder:
    """The attack's threads; ``start()``, ``stop()``; what it saw in its counters."""

    def __init__(self, url: str, ca_file: Path | None):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.tls = None
        if parts.scheme == "https":
            self.tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.opened = 0
        self.big_answers: dict[str, int] = {}
        self.threads = [threading.Thread(target=self._slowloris, args=(a,), name=f"soak-slowloris-{a}", daemon=True)
                        for a in ATTACKERS]
        self.threads += [threading.Thread(target=self._big_bodies, args=(a,), name=f"soak-bigbody-{a}", daemon=True)
                         for a in BIG_SENDERS]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)

    def _connect(self, source: str, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout, source_address=(source, 0))
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        return sock

    def _slowloris(self, source: str) -> None:
        socks: list[socket.socket | None] = [None] * SLOW_PER_ADDRESS
        try:
            while not self.stop_event.is_set():
                for i, s in enumerate(socks):
                    try:
                        if s is None:
                            s = self._connect(source, 5)
                            s.sendall(f"GET /v1/health HTTP/1.1\r\nHost: {self.host}\r\n".encode())
                            socks[i] = s
                            with self.lock:
                                self.opened += 1
                        else:
                            s.sendall(b"X-Drip: 1\r\n")
                    except OSError:  # closed by the agent (a cap or the header timeout): open again next round
                        if s is not None:
                            s.close()
                        socks[i] = None
                self.stop_event.wait(DRIP)
        finally:
            for s in socks:
                if s is not None:
                    s.close()

    def _big_bodies(self, source: str) -> None:
        head = (f"POST /v1/sales HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {BIG_BODY}\r\n\r\n").encode()
        while not self.stop_event.is_set():
            try:
                with self._connect(source, 10) as s:
                    s.sendall(head + b'{"lines": [')
                    # The answer must come from the head alone: an agent that waited for the body times out here.
                    s.settimeout(10)
                    reply = s.recv(256).decode("latin-1")
                    answer = reply.split("\r\n", 1)[0] if reply else "closed without an answer"
            except OSError as err:
                answer = type(err).__name__
            with self.lock:
                self.big_answers[answer] = self.big_answers.get(answer, 0) + 1
            self.stop_event.wait(0.2)


def intruder(day: Day, hold: float) -> None:
    """Slowloris and oversized bodies from the store's Wi-Fi for ``hold`` s; checkout goes on."""
    day.ledger.faults["intruder on the Wi-Fi"] += 1
    rig = day.rig
    assert rig.agent is not None
    pid = rig.agent_pid()
    fds_before = _fds(pid) or 0
    log_before = rig.agent.log().count("\n")
    sales_before = len(day.ledger.sales)
    attack = Intruder(rig.agent.url, rig.ca_file)
    started = time.monotonic()
    attack.start()
    slowest = 0.0
    most_fds = 0
    try:
        while time.monotonic() - started < hold and not day.stop.is_set():
            t0 = time.monotonic()
            try:
                with rig.client(None, timeout=HEALTH_WITHIN) as http:
                    ok = http.get("/v1/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            took = time.monotonic() - t0
            slowest = max(slowest, took if ok else float("inf"))
            most_fds = max(most_fds, _fds(pid) or 0)
            day.stop.wait(1.0)  # a sampling interval
    finally:
        attack.stop()
    sold = len(day.ledger.sales) - sales_before
    c = day.checks
    c.check(rows.HOSTILE, sold > 0, "intruder: the kiosks sell through the attack", "> 0 sales", sold,
            hold_s=round(hold))
    c.check(rows.HOSTILE, slowest <= HEALTH_WITHIN, "intruder: GET /v1/health answers throughout (slowest, s)",
            f"<= {HEALTH_WITHIN}", round(slowest, 2))
    answers = dict(attack.big_answers)
    refused = sum(n for a, n in answers.items() if " 413 " in f"{a} ")
    c.check(rows.HOSTILE, refused > 0 and refused == sum(answers.values()),
            "intruder: every oversized body answered 413 before it was read", "all 413", answers)
    c.check(rows.HOSTILE, attack.opened > 0 and most_fds <= fds_before + MAX_CONNECTIONS,
            "intruder: the agent's open files stay under its connection cap", f"<= {fds_before} + {MAX_CONNECTIONS}",
            most_fds, slow_sockets_opened=attack.opened)
    added = rig.agent.log().count("\n") - log_before
    allowed = LOG_LINES_FLOOR + int(LOG_LINES_PER_MINUTE * hold / 60)
    c.check(rows.HOSTILE, added <= allowed, "intruder: the agent's log grows by a bounded number of lines",
            f"<= {allowed}", added)
    expect(day, "intruder gone: the agent gives back the files it held", lambda: _fds(rig.agent_pid()),
           lambda n: n is not None and n <= fds_before + 25, SHOW_WITHIN, row=rows.HOSTILE)


def no_secret_in_logs(day: Day) -> None:
    """At the end of the day: no client token, no paired device's token or pairing code and no console token in
    any process's log of the run dir
    (the agents', the hub's, the broker's), whatever the clients sent and however (row ``HOSTILE``)."""
    secrets = dict(TOKENS) | {"hub console": HUB_CONSOLE_TOKEN} | dict(getattr(day, "paired_secrets", {}))
    found = []
    for path in sorted(day.rig.run_dir.rglob("*.log")):
        text = path.read_text(errors="replace")
        found += [f"{name} in {path.relative_to(day.rig.run_dir)}" for name, token in secrets.items() if token in text]
    day.checks.check(rows.HOSTILE, not found, "no client or console token in any log of the day", [], found)
