"""The local API on HTTPS and WSS, optionally mutual TLS (api.tls; edge_agent/tls.py, edge_agent/api/limits.py).

Real agent processes, real sockets, real certificates made with the openssl
CLI (tests/support/tls.py). Nobody on the store's Wi-Fi reads a token or a
member tag off the air, a client without the store's CA cannot be fooled by
another server, and with ``client_cert: required`` a device without a
certificate from the chain's CA is refused at the handshake.
"""

from __future__ import annotations

import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from support.agent import TOKENS, AgentProcess, AgentTls, config_dict, free_port, make_tls
from support.tls import CertAuthority
from websockets.sync.client import connect as ws_connect

from edge_agent import demo, tls
from edge_core.config_types import HostPort

ATTACKER = "127.0.0.2"


def checkout(agent: AgentProcess, timeout: float = 30.0) -> float:
    """One sale from the kiosk over HTTPS; its seconds. It must be answered 201."""
    body = {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
            "payment": {"method": "cash"}}
    t = time.perf_counter()
    with agent.client("kiosk", timeout=timeout) as c:
        r = c.post("/v1/sales", json=body)
    assert r.status_code == 201, r.text
    return time.perf_counter() - t


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> AgentTls:
    return make_tls(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def https_agent(tmp_path_factory: pytest.TempPathFactory, certs: AgentTls) -> Iterator[AgentProcess]:
    wd = tmp_path_factory.mktemp("https")
    agent = AgentProcess(wd, config_dict(free_port()), tls=certs)
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


def test_https_works_with_the_store_ca_and_fails_without_it(https_agent: AgentProcess) -> None:
    with https_agent.client("associate") as c:
        r = c.get("/v1/devices")
    assert r.status_code == 200, r.text
    assert r.json()[0]["id"] == "heartbeat-1"
    # The system's CAs do not know the store's CA: the client refuses the server before a token is sent.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{https_agent.url}/v1/health", timeout=30)
    # Another CA's trust is no good either.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        other = CertAuthority(https_agent.workdir / "other-ca").create()
        httpx.get(f"{https_agent.url}/v1/health", timeout=30, verify=ssl.create_default_context(cafile=other.cert))
    # The certificate names localhost too.
    with httpx.Client(verify=https_agent.tls.context(), timeout=30) as c:
        assert c.get(f"https://localhost:{https_agent.port}/v1/health").status_code == 200
    checkout(https_agent)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_is_refused(https_agent: AgentProcess) -> None:
    ctx = https_agent.tls.context()
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", https_agent.port), timeout=30) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass


def test_plain_http_on_the_tls_port_is_refused_without_a_log_flood(https_agent: AgentProcess) -> None:
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", https_agent.port), timeout=30) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert b"HTTP/1.1" not in answer and b'"status"' not in answer
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{https_agent.port}/v1/health", timeout=30)

    def logged() -> int:
        return https_agent.log().count("plain HTTP to the HTTPS port")

    deadline = time.monotonic() + 30
    while logged() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = https_agent.log()
    assert logged() == 1, log[-3000:]  # 31 refusals, one line in this minute
    assert "Traceback" not in log
    with https_agent.client() as c:
        assert c.get("/v1/health").status_code == 200  # the port still serves TLS


def test_the_live_feed_connects_over_wss(https_agent: AgentProcess) -> None:
    headers = {"Authorization": f"Bearer {TOKENS['associate']}"}
    with ws_connect(f"{https_agent.ws_url}/v1/events", ssl=https_agent.tls.context(), additional_headers=headers,
                    open_timeout=30) as ws:
        ws.ping().wait(30)
        assert ws.socket.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLError):
        ws_connect(f"{https_agent.ws_url}/v1/events", ssl=ssl.create_default_context(), additional_headers=headers,
                   open_timeout=30)


def test_edge_agent_devices_takes_a_cafile(https_agent: AgentProcess) -> None:
    base = [sys.executable, "-m", "edge_agent.cli", "devices", "--url", https_agent.url,
            "--token", TOKENS["console"]]
    ok = subprocess.run([*base, "--cafile", str(https_agent.tls.ca.cert)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "heartbeat-1" in ok.stdout
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr


# Mutual TLS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mtls_agent(tmp_path_factory: pytest.TempPathFactory, certs: AgentTls) -> Iterator[AgentProcess]:
    wd = tmp_path_factory.mktemp("mtls")
    config = config_dict(free_port())
    config["api"]["tls"] = certs.api_tls(client_cert="required")
    agent = AgentProcess(wd, config, tls=certs)
    agent.start()
    yield agent
    agent.close()


def _refused(agent: AgentProcess, ctx: ssl.SSLContext) -> None:
    """A request over ``ctx`` gets no answer: the handshake (or, in TLS 1.3, the first read) fails."""
    with pytest.raises(httpx.TransportError):
        with httpx.Client(verify=ctx, timeout=30) as c:
            c.get(f"{agent.url}/v1/health")


def test_mtls_refuses_a_client_without_a_certificate(mtls_agent: AgentProcess) -> None:
    _refused(mtls_agent, mtls_agent.tls.context())


def test_mtls_refuses_a_certificate_from_another_ca(mtls_agent: AgentProcess, tmp_path: Path) -> None:
    stranger = CertAuthority(tmp_path / "stranger", name="a stranger's CA").create().issue("kiosk-9", "client")
    ctx = mtls_agent.tls.context()
    ctx.load_cert_chain(stranger.cert, stranger.key)
    _refused(mtls_agent, ctx)
    deadline = time.monotonic() + 30
    while "no valid client certificate" not in mtls_agent.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "no valid client certificate" in mtls_agent.log()


def test_mtls_a_good_certificate_still_needs_its_token(mtls_agent: AgentProcess) -> None:
    kiosk = mtls_agent.tls.ca.issue("kiosk-1", "client")
    with mtls_agent.client("associate", cert=kiosk) as c:
        r = c.get("/v1/devices")
        assert r.status_code == 200, r.text
    with mtls_agent.client(cert=kiosk) as c:
        assert c.get("/v1/health").status_code == 200
        assert c.get("/v1/devices").status_code == 401  # roles come from tokens, not certificates


# edge-agent check ---------------------------------------------------------------------------------

def _check(tmp_path: Path, section: dict,
           listen: str = "127.0.0.1:8443") -> tuple[subprocess.CompletedProcess, dict[str, int]]:
    """``edge-agent check`` on a config with ``section`` as api.tls; (the result, the line of each tls key)."""
    config = config_dict(8443)
    config["api"]["listen"] = listen
    config["api"]["tls"] = section
    path = tmp_path / "devices.yaml"
    text = yaml.safe_dump(config, sort_keys=False)
    path.write_text(text)
    rows = text.splitlines()
    start = next(i for i, ln in enumerate(rows) if ln.strip() == "tls:")
    lines = {}
    for i in range(start + 1, len(rows)):
        if not rows[i].startswith("    "):
            break
        lines[rows[i].strip().split(":")[0]] = i + 1
    res = subprocess.run([sys.executable, "-m", "edge_agent.cli", "check", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    return res, lines


def test_check_passes_good_files(tmp_path: Path, certs: AgentTls) -> None:
    res, _ = _check(tmp_path, certs.api_tls(client_cert="optional"))
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_check_catches_a_key_that_is_not_the_certificates(tmp_path: Path, certs: AgentTls) -> None:
    other = certs.ca.issue("other-server", "server")
    res, lines = _check(tmp_path, {"cert_file": str(certs.server.cert), "key_file": str(other.key)})
    assert res.returncode == 2
    assert f"devices.yaml:{lines['key_file']}: api.tls.key_file: {other.key} is not the key of {certs.server.cert}" \
        in res.stderr, res.stderr


def test_check_catches_an_expired_certificate(tmp_path: Path, certs: AgentTls) -> None:
    old = certs.ca.issue("expired", "server", dates=("20200101000000Z", "20210101000000Z"))
    res, lines = _check(tmp_path, {"cert_file": str(old.cert), "key_file": str(old.key)})
    assert res.returncode == 2
    assert f"devices.yaml:{lines['cert_file']}: api.tls.cert_file: {old.cert} expired on 2021-01-01 00:00 UTC" in res.stderr, \
        res.stderr


def test_check_catches_a_certificate_not_yet_valid(tmp_path: Path, certs: AgentTls) -> None:
    later = certs.ca.issue("later", "server", dates=("20990101000000Z", "21000101000000Z"))
    res, lines = _check(tmp_path, {"cert_file": str(later.cert), "key_file": str(later.key)})
    assert res.returncode == 2
    assert f"devices.yaml:{lines['cert_file']}: api.tls.cert_file: {later.cert} is not valid before 2099-01-01" in res.stderr


def test_check_catches_a_missing_file(tmp_path: Path, certs: AgentTls) -> None:
    missing = tmp_path / "nowhere" / "ca.crt"
    res, lines = _check(tmp_path, certs.api_tls(client_cert="required", client_ca=missing))
    assert res.returncode == 2
    assert f"devices.yaml:{lines['client_ca_file']}: api.tls.client_ca_file: cannot read {missing}: No such file or directory" \
        in res.stderr, res.stderr


def test_check_catches_a_certificate_for_another_address(tmp_path: Path, certs: AgentTls) -> None:
    res, lines = _check(tmp_path, certs.api_tls(), listen="192.0.2.10:8443")
    assert res.returncode == 2
    assert f"devices.yaml:{lines['cert_file']}: api.tls.cert_file: {certs.server.cert} is for 127.0.0.1, localhost, " \
        "not 192.0.2.10 (api.listen)" in res.stderr, res.stderr
    res, lines = _check(tmp_path, certs.api_tls(), listen="0.0.0.0:8443")
    assert res.returncode == 0, res.stderr
    assert f"devices.yaml:{lines['cert_file']}: warning: api.tls.cert_file: api.listen 0.0.0.0:8443 is every address" \
        in res.stderr


def test_client_certificates_need_a_ca_in_the_config(tmp_path: Path, certs: AgentTls) -> None:
    res, lines = _check(tmp_path, {**certs.api_tls(), "client_cert": "required"})
    assert res.returncode == 2
    assert f"devices.yaml:{lines['client_cert']}: " in res.stderr and "client_ca_file is not set" in res.stderr, res.stderr


def test_the_agent_does_not_fall_back_to_plain_http(tmp_path: Path, certs: AgentTls) -> None:
    config = config_dict(free_port())
    config["api"]["tls"] = {"cert_file": str(certs.server.cert), "key_file": str(tmp_path / "gone.key")}
    agent = AgentProcess(tmp_path, config)
    try:
        with pytest.raises(AssertionError, match="api.tls.key_file: cannot read"):
            agent.start(timeout=60)
        assert agent.proc.wait(30) != 0
    finally:
        agent.close()


def test_sigterm_with_a_handshake_in_flight_exits_0(tmp_path: Path, certs: AgentTls) -> None:
    agent = AgentProcess(tmp_path, config_dict(free_port()), tls=certs)
    try:
        agent.start()
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30):  # never says hello
            t = time.monotonic()
            assert agent.stop() == 0
            assert time.monotonic() - t < 10
        assert "Traceback" not in agent.log()
    finally:
        agent.close()


# Slow handshakes ----------------------------------------------------------------------------------

def test_sockets_that_never_say_hello_do_not_stop_checkout(tmp_path: Path, certs: AgentTls) -> None:
    """1,100 sockets that never send a ClientHello, under systemd's default 1,024 files: asyncio alone
    would hold each for 60 s before the HTTP protocol (and its caps) saw it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = config_dict(free_port(), [])
    config["api"]["listen"] = f"0.0.0.0:{config['api']['listen'].rsplit(':', 1)[1]}"
    config["api"].update(header_timeout=3, max_connections_per_client=64)
    agent = AgentProcess(tmp_path, config, wrapper=["prlimit", "--nofile=1024:1024", "--"], tls=certs)
    flood: list[socket.socket] = []
    try:
        agent.import_catalog()
        agent.start()
        for _ in range(1100):
            s = socket.socket()
            s.bind((ATTACKER, 0))
            try:
                s.connect(("127.0.0.1", agent.port))
                flood.append(s)
            except OSError:
                s.close()
        opened = time.monotonic()
        times = [checkout(agent) for _ in range(20)]
        assert max(times) < 10, times
        # Every silent socket is closed by the handshake timeout (3 s), not asyncio's 60 s.
        for s in flood:
            s.settimeout(max(0.1, opened + 40 - time.monotonic()))
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - opened < 40
        # The slots came back: the attacker's address may connect again, the kiosk still sells.
        for s in flood:
            s.close()
        flood.clear()
        ctx = certs.context()
        with socket.create_connection(("127.0.0.1", agent.port), timeout=30, source_address=(ATTACKER, 0)) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
        checkout(agent)
        log = agent.log()
        assert "Too many open files" not in log
        assert "Traceback" not in log
        assert log.count("api: closed a connection from 127.0.0.2") <= 3, log[-3000:]
    finally:
        for s in flood:
            s.close()
        agent.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sockets_in_their_handshake_count_against_the_connection_cap(tmp_path: Path, certs: AgentTls) -> None:
    config = config_dict(free_port(), [])
    config["api"]["listen"] = f"0.0.0.0:{config['api']['listen'].rsplit(':', 1)[1]}"
    config["api"].update(header_timeout=2, max_connections=8)
    agent = AgentProcess(tmp_path, config, tls=certs)
    silent: list[socket.socket] = []
    try:
        agent.start()
        for _ in range(8):  # eight sockets that never say hello fill the cap
            silent.append(socket.create_connection(("127.0.0.1", agent.port), timeout=30,
                                                   source_address=(ATTACKER, 0)))
        deadline = time.monotonic() + 30
        refused = False
        while not refused and time.monotonic() < deadline:  # until the agent has accepted all eight
            try:
                with agent.client(timeout=30) as c:
                    c.get("/v1/health")
            except httpx.TransportError:
                refused = True
        assert refused, "a ninth connection was served while eight handshakes held the cap"
        # Their handshake time runs out (api.header_timeout): the slots come back.
        for s in silent:
            s.settimeout(30)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        with agent.client(timeout=30) as c:
            assert c.get("/v1/health").status_code == 200
        deadline = time.monotonic() + 30
        while "(api.max_connections)" not in agent.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "(api.max_connections)" in agent.log()
    finally:
        for s in silent:
            s.close()
        agent.close()


# The demo's certificates --------------------------------------------------------------------------

def _serve_once(pair_cert: Path, pair_key: Path) -> tuple[int, threading.Thread]:
    """A one-connection TLS server on loopback with the given certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pair_cert, pair_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            listener.settimeout(30)
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_the_demo_ca_and_certificate_are_valid_for_its_address(tmp_path: Path, name: str) -> None:
    made = demo.ensure_tls(tmp_path / "tls", HostPort(host="127.0.0.1", port=8080))
    assert tls.findings(made.api_tls(), HostPort(host="127.0.0.1", port=8080)) == []
    port, thread = _serve_once(made.cert, made.key)
    client = ssl.create_default_context(cafile=str(made.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with client.wrap_socket(raw, server_hostname=name) as s:
            assert s.recv(2) == b"ok"
            assert s.version() in ("TLSv1.2", "TLSv1.3")
    thread.join(30)
    # Run again, it keeps what is still valid (a browser that trusts the CA keeps trusting it).
    ca_before = made.ca.read_bytes()
    again = demo.ensure_tls(tmp_path / "tls", HostPort(host="127.0.0.1", port=8080))
    assert again.ca.read_bytes() == ca_before
    # A listen address the certificate does not name gets a new certificate from the same CA.
    moved = demo.ensure_tls(tmp_path / "tls", HostPort(host="127.0.0.2", port=8080))
    assert tls.findings(moved.api_tls(), HostPort(host="127.0.0.2", port=8080)) == []
    assert moved.ca.read_bytes() == ca_before


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:"))) / 1024


def test_a_full_house_of_tls_connections_costs_little_memory(tmp_path: Path, certs: AgentTls) -> None:
    """512 TLS connections (the default cap), each through its handshake and then silent, from eight
    addresses: the agent's memory grows by a bounded amount. asyncio's own 256 KiB read buffer per
    connection made it 128 MiB (limits.TLS_READ_BUFFER)."""
    config = config_dict(free_port(), [])
    config["api"]["listen"] = f"0.0.0.0:{config['api']['listen'].rsplit(':', 1)[1]}"
    config["api"].update(header_timeout=60)
    agent = AgentProcess(tmp_path, config, tls=certs)
    held: list[ssl.SSLSocket] = []
    ctx = certs.context()
    try:
        agent.start()
        assert agent.proc is not None
        with agent.client() as c:  # the first TLS connection allocates what every later one shares
            assert c.get("/v1/health").status_code == 200
        before = _rss_mb(agent.proc.pid)
        for n in range(512):
            raw = socket.create_connection(("127.0.0.1", agent.port), timeout=30,
                                           source_address=(f"127.0.0.{10 + n // 64}", 0))
            held.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
        grown = _rss_mb(agent.proc.pid) - before
        assert grown < 48, f"RSS grew {grown:.0f} MB for 512 idle TLS connections"
    finally:
        for s in held:
            s.close()
        agent.close()


def test_check_warns_that_optional_client_certificates_let_anyone_in(tmp_path: Path, certs: AgentTls) -> None:
    res, lines = _check(tmp_path, certs.api_tls(client_cert="optional"))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert f"devices.yaml:{lines['client_cert']}: " in out and "optional lets a client without a certificate in" in out
    res, _ = _check(tmp_path, certs.api_tls(client_cert="required"))
    assert "optional lets" not in res.stdout + res.stderr
