"""Enrollment end to end: a code from the hub, a fresh PC enrolls, runs, and is a store like any other.

Real parts: Mosquitto from the shipped systemd/mosquitto/edge-hub.conf.example
with its "enrolled stores" block uncommented (support.secure_broker renders
the rest, the ACL is acl.example byte for byte), the reference hub
``edge-hub run --http --enroll-ca``, the CLIs ``edge-hub ca init``,
``edge-hub enroll-code`` and ``edge-agent enroll`` as subprocesses, and
``edge-agent run`` from the files enrollment wrote. The CSR checks and the
expiry of a code are unit tests on the same functions with an injected clock.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from support.agent import ROOT, AgentProcess, AgentTls, config_dict, free_port
from support.flows import LIPSTICK, poll, sale
from support.hubprocess import HubProcess
from support.mosquitto import mosquitto_binary
from support.secure_broker import EXAMPLE_ACL, EXAMPLE_CONF, SecureBroker, password_line, render_conf
from support.tls import CertAuthority, KeyPair
from sync.hub.db import open_db
from sync.hub.fleet import enroll
from sync.hub.fleet.enroll_api import WrongCodes
from sync.hub.fleet.enroll_ca import CSRRefused, check_names, init_ca, load_ca, parse_csr, sign_pair
from sync.localbroker import wait_listening
from edge_agent import enroll as agent_enroll

HUB_PASSWORD = "hub-secret"
CONSOLE_TOKEN = "enroll-console-token"
BEGIN, END = "# --- enrolled stores: begin ---", "# --- enrolled stores: end ---"


class EnrollBroker(SecureBroker):
    """The shipped hub broker with its listener for enrolled stores on: ``enroll_port``, cafile the enrollment CA."""

    def __init__(self, workdir: Path, enroll_ca: Path, server: KeyPair, server_ca: Path):
        super().__init__(workdir, {"hub": HUB_PASSWORD}, server_ca, server)
        self.enroll_ca = enroll_ca
        self.enroll_port = free_port()

    def render(self) -> str:
        """The example with paths and ports replaced, and the enrolled stores' block uncommented."""
        text = render_conf(EXAMPLE_CONF.read_text(), self._replacements())
        lines, inside, out = text.splitlines(), False, []
        swap = {"listener 8884": f"listener {self.enroll_port} 127.0.0.1",
                "cafile /etc/mosquitto/certs/enroll-ca.crt": f"cafile {self.enroll_ca}",
                "certfile /etc/mosquitto/certs/hub.crt": f"certfile {self.server.cert}",
                "keyfile /etc/mosquitto/certs/hub.key": f"keyfile {self.server.key}"}
        for line in lines:
            if line == BEGIN:
                inside = True
            elif line == END:
                inside = False
            elif inside and line.startswith("#") and not line.startswith("# "):
                line = swap.get(line[1:], line[1:])
            out.append(line)
        assert any(line.startswith(f"listener {self.enroll_port}") for line in out), "no enrolled stores' block"
        return "\n".join(out) + "\n"

    def start(self, timeout: float = 10.0) -> "EnrollBroker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.render())
        self.acl_path.write_bytes(EXAMPLE_ACL.read_bytes())
        self.passwd_path.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)],
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        for port in (self.port, self.tls_port, self.enroll_port):
            wait_listening(self.proc, port, timeout, self.log)
        return self


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


class Rig:
    """Broker, hub and what a test needs to issue codes and enroll PCs."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        server_ca = CertAuthority(tmp / "broker-ca", "broker CA").create()
        self.server = server_ca.issue("hub", "server")
        self.ca_dir = tmp / "enroll-ca"
        res = run_cli("-m", "sync.hub", "ca", "init", "--dir", str(self.ca_dir))
        assert res.returncode == 0, res.stderr
        shutil.copy(server_ca.cert, self.ca_dir / "broker-ca.crt")  # the broker's certificate is from another CA
        self.broker = EnrollBroker(tmp / "broker", self.ca_dir / "ca.crt", self.server, server_ca.cert).start()
        self.db_path = tmp / "hub.db"
        self.db_url = f"sqlite:///{self.db_path}"
        self.http_port = free_port()
        self.hub_url = f"http://127.0.0.1:{self.http_port}"
        self.hub = HubProcess(f"mqtt://hub:{HUB_PASSWORD}@127.0.0.1:{self.broker.port}", self.db_url,
                              tmp / "hub.log", env={"EDGE_HUB_CONSOLE_TOKEN": CONSOLE_TOKEN})
        self.hub.args += ["--http", f"127.0.0.1:{self.http_port}", "--enroll-ca", str(self.ca_dir),
                          "--enroll-broker", f"mqtts://127.0.0.1:{self.broker.enroll_port}"]
        self.hub.start()

    def devices_yaml(self, store: str) -> Path:
        """A store's first devices.yaml as the chain writes it: no hub credentials, no TLS files."""
        cfg = config_dict(free_port(), store_id=store,
                          devices=[{"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.5}])
        del cfg["hub"]
        path = self.tmp / f"{store}.devices.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def issue(self, store: str, *extra: str) -> str:
        res = run_cli("-m", "sync.hub", "enroll-code", store, "--devices", str(self.devices_yaml(store)),
                      "--db", self.db_url, "--hub", self.hub_url, "--by", "test", *extra)
        assert res.returncode == 0, res.stderr
        assert f"edge-agent enroll --hub {self.hub_url} --code " in res.stdout
        return re.search(r"^Code\s+(\S+)", res.stdout, re.M).group(1)

    def enroll(self, pc: Path, code: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli("-m", "edge_agent.cli", "enroll", "--hub", self.hub_url, "--code", code,
                       "--config", str(pc / "etc" / "devices.yaml"), "--data-dir", str(pc / "etc" / "data"), *extra)

    def console(self) -> httpx.Client:
        return httpx.Client(base_url=self.hub_url, headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}, timeout=10)

    def close(self) -> None:
        self.hub.close()
        self.broker.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory):
    r = Rig(tmp_path_factory.mktemp("enroll"))
    try:
        yield r
    finally:
        r.close()


def agent_from(pc: Path) -> AgentProcess:
    """``edge-agent run`` on the config enrollment wrote (the test harness writes it back as it read it)."""
    etc = pc / "etc"
    config = yaml.safe_load((etc / "devices.yaml").read_text())
    tls = AgentTls(types.SimpleNamespace(cert=etc / "tls" / "api-ca.crt"),  # type: ignore[arg-type]
                   KeyPair(etc / "tls" / "api.crt", etc / "tls" / "api.key"))
    return AgentProcess(etc, config, tls=tls)


def test_a_fresh_pc_enrolls_runs_and_sells(rig: Rig, tmp_path: Path) -> None:
    code = rig.issue("store-e1")
    pc = tmp_path / "pc"
    res = rig.enroll(pc, code, "--store", "store-e1")
    assert res.returncode == 0, res.stderr
    assert "Enrolled as store store-e1" in res.stdout and "systemctl enable --now edge-agent" in res.stdout
    etc = pc / "etc"
    for key in ("mqtt.key", "api.key"):
        assert stat.S_IMODE(os.stat(etc / "tls" / key).st_mode) == 0o600
    cfg = yaml.safe_load((etc / "devices.yaml").read_text())
    assert cfg["hub"]["url"] == f"mqtts://127.0.0.1:{rig.broker.enroll_port}"
    assert "password_file" not in cfg["hub"] and cfg["api"]["tls"]["key_file"] == str(etc / "tls" / "api.key")
    check = run_cli("-m", "edge_agent.cli", "check", "--config", str(etc / "devices.yaml"))
    assert check.returncode == 0, check.stderr

    agent = agent_from(pc)
    agent.import_catalog()
    agent.start()
    try:
        with rig.console() as hub:
            detail = poll(lambda: hub.get("/api/stores/store-e1"),
                          lambda r: r.status_code == 200 and r.json()["summary"]["presence"] == "online"
                          and any(d["id"] == "heartbeat-1" for d in r.json()["devices"]),
                          timeout=60, what="the hub seeing store-e1 online with its devices")
            assert [d["id"] for d in detail.json()["devices"]] == ["heartbeat-1"]
        with agent.client("kiosk") as c:
            made = c.post("/v1/sales", json=sale((LIPSTICK, 1)))
            assert made.status_code == 201, made.text

        def at_hub() -> tuple:
            with sqlite3.connect(rig.db_path) as db:
                n = db.execute("SELECT count(*) FROM events WHERE store = 'store-e1' AND type = "
                               "'retail.sale.completed'").fetchone()[0]
                row = db.execute("SELECT contiguous, high FROM stores WHERE store = 'store-e1'").fetchone()
            return n, row
        poll(at_hub, lambda r: r[0] == 1 and r[1] is not None and r[1][0] == r[1][1] > 0, timeout=30,
             what="the sale stored and acknowledged at the hub")
    finally:
        agent.stop()
        agent.close()

    again = rig.enroll(tmp_path / "pc2", code)
    assert again.returncode == 1
    assert re.search(r"refused \(410\): this code was used at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC from 127\.0\.0\.1; "
                     r"ask for a new one", again.stderr), again.stderr
    assert not (tmp_path / "pc2" / "etc" / "devices.yaml").exists()

    listed = run_cli("-m", "sync.hub", "enrollments", "store-e1", "--db", rig.db_url)
    assert "used" in listed.stdout and "127.0.0.1" in listed.stdout and code not in listed.stdout


def test_keys_never_reach_the_hub(rig: Rig, tmp_path: Path) -> None:
    code = rig.issue("store-e3")
    pc = tmp_path / "pc"
    assert rig.enroll(pc, code).returncode == 0
    secrets = [code, code.replace("-", "")]
    for key in ("mqtt.key", "api.key"):
        pem = (pc / "etc" / "tls" / key).read_text()
        secrets.append("".join(pem.splitlines()[1:-1])[:40])  # a piece of the key's base64
    dump = "\n".join(sqlite3.connect(rig.db_path).iterdump())
    for text in (dump, rig.hub.log()):
        assert "PRIVATE KEY" not in text
        for s in secrets:
            assert s not in text
    with sqlite3.connect(rig.db_path) as db:
        assert db.execute("SELECT count(*) FROM enroll_codes WHERE code_sha256 = ?",
                          (enroll.code_hash(code),)).fetchone()[0] == 1


def test_a_store_cannot_publish_as_another(rig: Rig, tmp_path: Path) -> None:
    """store-e2's certificate: its own topics yes, store-e1's no (the ACL's %u is the certificate's CN)."""
    pc = tmp_path / "pc"
    assert rig.enroll(pc, rig.issue("store-e2")).returncode == 0
    tls = pc / "etc" / "tls"
    acks: dict[int, int] = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="store-e2")
    c.tls_set(ca_certs=str(tls / "hub-ca.crt"), certfile=str(tls / "mqtt.crt"), keyfile=str(tls / "mqtt.key"))
    c.on_publish = lambda _c, _u, mid, rc, _p: acks.__setitem__(mid, rc.value)
    c.connect("127.0.0.1", rig.broker.enroll_port)
    c.loop_start()
    try:
        other = c.publish("edge/store-e1/status", b'{"state": "offline"}', qos=1).mid
        own = c.publish("edge/store-e2/probe", b"{}", qos=1).mid
        poll(lambda: dict(acks), lambda a: other in a and own in a, timeout=10, what="both PUBACKs")
        # 0x87 Not authorized; 0x10 "no matching subscribers" is a success (nobody listens to a probe).
        assert acks[other] == 0x87 and acks[own] in (0x00, 0x10)
    finally:
        c.loop_stop()
        c.disconnect()

    # Without a certificate the broker closes the connection (TLS 1.3 asks for it after the handshake, so the
    # refusal comes as a closed socket, never a CONNACK): the certificate is the login.
    seen: list[str] = []
    bare = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="nobody",
                       reconnect_on_failure=False)
    bare.tls_set(ca_certs=str(tls / "hub-ca.crt"))
    bare.on_connect = lambda _c, _u, _f, rc, _p: seen.append(f"connack {rc.value}")
    bare.on_disconnect = lambda *_a: seen.append("closed")
    try:
        bare.connect("127.0.0.1", rig.broker.enroll_port)
        bare.loop_start()
        poll(lambda: list(seen), lambda s: "closed" in s, timeout=10, what="the broker closing a bare client")
    except (OSError, ConnectionError):
        seen.append("closed")
    finally:
        bare.loop_stop()
    assert "connack 0" not in seen


def test_an_expired_code_is_refused(rig: Rig, tmp_path: Path) -> None:
    """A code issued two hours ago for one hour, written with the hub's own function into its database."""
    db = open_db(rig.db_url)
    try:
        with db.transaction() as tx:
            old = enroll.issue(tx, "store-e4", rig.devices_yaml("store-e4").read_text(), ttl_s=3600, by="test",
                               now=datetime.now(timezone.utc) - timedelta(hours=2))
    finally:
        db.close()
    res = rig.enroll(tmp_path / "pc", old.code)
    assert res.returncode == 1
    assert f"refused (410): this code expired at {old.expires_at[:19].replace('T', ' ')} UTC; ask for a new one" \
        in res.stderr, res.stderr


def test_a_devices_yaml_that_fails_check_writes_nothing(rig: Rig, tmp_path: Path) -> None:
    """The hub checks only store.id; the PC runs `edge-agent check`'s engine and refuses a device kind it lacks."""
    path = rig.devices_yaml("store-e9")
    cfg = yaml.safe_load(path.read_text())
    cfg["devices"] = [{"id": "laser-1", "kind": "printer.laser"}]
    path.write_text(yaml.safe_dump(cfg))
    res = run_cli("-m", "sync.hub", "enroll-code", "store-e9", "--devices", str(path), "--db", rig.db_url)
    code = re.search(r"^Code\s+(\S+)", res.stdout, re.M).group(1)
    pc = tmp_path / "pc"
    got = rig.enroll(pc, code)
    assert got.returncode == 1
    assert "does not pass `edge-agent check`; nothing was written" in got.stderr and "printer.laser" in got.stderr
    assert "used the code up" in got.stderr
    assert not (pc / "etc" / "devices.yaml").exists()
    assert sorted(p.name for p in (pc / "etc" / "tls").iterdir()) == []


def test_http_refused_off_this_pc(tmp_path: Path) -> None:
    res = run_cli("-m", "edge_agent.cli", "enroll", "--hub", "http://192.0.2.10:8090", "--code", "X",
                  "--config", str(tmp_path / "devices.yaml"), "--data-dir", str(tmp_path / "data"))
    assert res.returncode == 1 and "cross the network in clear" in res.stderr


def test_an_existing_config_is_kept(rig: Rig, tmp_path: Path) -> None:
    pc = tmp_path / "pc"
    (pc / "etc").mkdir(parents=True)
    (pc / "etc" / "devices.yaml").write_text("store: {id: mine, name: Mine}\n")
    code = rig.issue("store-e5")
    res = rig.enroll(pc, code)
    assert res.returncode == 1 and "--force" in res.stderr and "the code is not used" in res.stderr
    assert (pc / "etc" / "devices.yaml").read_text() == "store: {id: mine, name: Mine}\n"
    assert rig.enroll(pc, code, "--force").returncode == 0  # the code was not spent by the refusal


def test_limits_before_work(rig: Rig) -> None:
    with httpx.Client(base_url=rig.hub_url, timeout=10) as c:
        big = c.post("/enroll", content=b"{" + b" " * 20_000 + b"}", headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        bad = c.post("/enroll", json={"code": "x", "mqtt_csr": "y" * 5000, "api_csr": "z", "hostname": "h"})
        assert bad.status_code == 422 and "mqtt_csr" in bad.json()["detail"]
        with rig.console() as hub:
            assert c.get("/api/enrollments").status_code == 401
            made = hub.post("/api/enrollments", json={"store": "store-e6",
                                                      "devices_yaml": rig.devices_yaml("store-e6").read_text()})
            assert made.status_code == 201, made.text
            listed = hub.get("/api/enrollments", params={"store": "store-e6"}).json()
            assert [r["state"] for r in listed] == ["unused"] and "code" not in listed[0]
            wrong_store = hub.post("/api/enrollments", json={"store": "store-e7",
                                                             "devices_yaml": "store: {id: store-e6}\n"})
            assert wrong_store.status_code == 422 and "store.id" in wrong_store.json()["detail"]


def test_wrong_codes_are_limited(rig: Rig, tmp_path: Path) -> None:
    """Runs last in this module: it leaves 127.0.0.1 limited for the window."""
    good = rig.issue("store-e8")
    body = {"code": "AAAA-BBBB-CCCC-DDDD", "mqtt_csr": "-", "api_csr": "-", "hostname": "pc"}
    with httpx.Client(base_url=rig.hub_url, timeout=10) as c:
        for _ in range(5):
            r = c.post("/enroll", json=body)
            assert r.status_code == 403 and "not known here" in r.json()["detail"]
        r = c.post("/enroll", json=body)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    res = rig.enroll(tmp_path / "pc", good)  # even a good code waits: the address is limited before any look-up
    assert res.returncode == 1 and "(429)" in res.stderr and "too many wrong codes" in res.stderr


# Unit tests: the CSR checks and the code's rules, on the hub's own functions ---------------------------

def _csr(cn: str | None, san: list[str] | None = None, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def ca(tmp_path: Path):
    init_ca(tmp_path / "ca")
    return load_ca(tmp_path / "ca")


def test_csr_for_another_store_is_refused(ca) -> None:
    now = datetime.now(timezone.utc)
    names = check_names("pc-1", ["127.0.0.1"])
    with pytest.raises(CSRRefused, match="CN is 'store-2', not the store this code is for"):
        sign_pair(ca, "store-1", parse_csr(_csr("store-2"), "mqtt_csr"), parse_csr(_csr(None), "api_csr"), names, now)
    signed = sign_pair(ca, "store-1", parse_csr(_csr(None), "mqtt_csr"), parse_csr(_csr(None), "api_csr"), names, now)
    cert = x509.load_pem_x509_certificate(signed.mqtt_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "store-1"
    assert timedelta(days=396) < cert.not_valid_after_utc - now < timedelta(days=398)
    api = x509.load_pem_x509_certificate(signed.api_pem.encode())
    assert api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["pc-1"]
    assert signed.mqtt_serial != signed.api_serial


def test_wildcards_and_too_many_names_are_refused() -> None:
    with pytest.raises(CSRRefused, match="wildcard"):
        check_names("*.store.example", [])
    with pytest.raises(CSRRefused, match="wildcard"):
        parse_csr(_csr(None, ["*.store.example"]), "api_csr")
    with pytest.raises(CSRRefused, match="at most 8"):
        check_names("pc-1", [f"10.0.0.{i}" for i in range(1, 9)])
    with pytest.raises(CSRRefused, match="not an IP address"):
        check_names("pc-1", ["pc.example"])


def test_oversized_or_foreign_csr_is_refused() -> None:
    with pytest.raises(CSRRefused, match="more than 4096 bytes"):
        parse_csr("-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 5000, "mqtt_csr")
    with pytest.raises(CSRRefused, match="not a PEM"):
        parse_csr("hello", "mqtt_csr")
    p384 = _csr(None, key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(CSRRefused, match="P-256"):
        parse_csr(p384, "mqtt_csr")


def test_code_rules_with_an_injected_clock(ca, db_url: str) -> None:
    db = open_db(db_url)
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    text = "store: {id: store-9, name: Nine}\n"
    req = lambda code: enroll.EnrollRequest(code, _csr(None), _csr(None), "pc-9", ["127.0.0.1"])  # noqa: E731
    try:
        with db.transaction() as tx:
            a = enroll.issue(tx, "store-9", text, ttl_s=600, by="t", now=t0)
            b = enroll.issue(tx, "store-9", text, ttl_s=600, by="t", now=t0)
        with pytest.raises(enroll.CodeExpired, match="expired at 2026-03-01 09:10:00 UTC"), db.transaction() as tx:
            enroll.redeem(tx, ca, "mqtts://h:8884", req(a.code), source="10.0.0.5", now=t0 + timedelta(minutes=11))
        with db.transaction() as tx:  # typed in lower case, with 0 for O: the same code
            got = enroll.redeem(tx, ca, "mqtts://h:8884", req(b.code.lower().replace("o", "0")), source="10.0.0.5",
                                now=t0 + timedelta(minutes=9))
        assert got["store"] == "store-9" and got["devices_yaml"] == text
        with pytest.raises(enroll.CodeUsed, match="used at 2026-03-01 09:09:00 UTC from 10.0.0.5"), \
                db.transaction() as tx:
            enroll.redeem(tx, ca, "mqtts://h:8884", req(b.code), source="10.0.0.6", now=t0 + timedelta(minutes=9))
        states = {r["state"] for r in enroll.listing(db, "store-9", now=t0 + timedelta(minutes=12))}
        assert states == {"used", "expired"}
    finally:
        db.close()


def test_wrong_code_window_with_an_injected_clock() -> None:
    now = [100.0]
    w = WrongCodes(limit=2, window_s=60, clock=lambda: now[0])
    w.wrong("10.0.0.1")
    w.wrong("10.0.0.1")
    with pytest.raises(enroll.EnrollTooMany):
        w.check("10.0.0.1")
    w.check("10.0.0.2")  # another address is not held back
    now[0] += 61
    w.check("10.0.0.1")



# Unit tests: what the PC checks of the hub's answer --------------------------------------------------

def _answer(ca, store: str, mqtt_key, api_key, *, cn: str | None = None) -> dict:
    signed = sign_pair(ca, store, parse_csr(agent_enroll._csr(mqtt_key, cn), "mqtt_csr"),
                       parse_csr(agent_enroll._csr(api_key, None), "api_csr"), check_names("pc", ["127.0.0.1"]),
                       datetime.now(timezone.utc))
    return {"store": store, "broker": "mqtts://127.0.0.1:8884", "ca_pem": ca.cert_pem, "mqtt_cert_pem": signed.mqtt_pem,
            "api_cert_pem": signed.api_pem, "api_ca_pem": ca.cert_pem, "devices_yaml": "store: {id: s}\n"}


def test_the_pc_checks_the_answer(ca, tmp_path: Path) -> None:
    mqtt_key, api_key = agent_enroll._new_key(), agent_enroll._new_key()
    good = _answer(ca, "store-1", mqtt_key, api_key)
    agent_enroll.check_answer(good, mqtt_key, api_key, "store-1")
    with pytest.raises(agent_enroll.EnrollFailed, match="for store 'store-1', not 'store-2'"):
        agent_enroll.check_answer(good, mqtt_key, api_key, "store-2")
    with pytest.raises(agent_enroll.EnrollFailed, match="MQTT certificate is not for this PC's key"):
        agent_enroll.check_answer(good, agent_enroll._new_key(), api_key, None)
    with pytest.raises(agent_enroll.EnrollFailed, match="API certificate is not for this PC's key"):
        agent_enroll.check_answer(good, mqtt_key, agent_enroll._new_key(), None)
    init_ca(tmp_path / "other")
    with pytest.raises(agent_enroll.EnrollFailed, match="not issued by the api_ca_pem"):
        agent_enroll.check_answer({**good, "api_ca_pem": load_ca(tmp_path / "other").cert_pem}, mqtt_key, api_key,
                                  None)
    with pytest.raises(agent_enroll.EnrollFailed, match="CN is \\['store-1'\\], not the store id 'store-9'"):
        agent_enroll.check_answer({**good, "store": "store-9"}, mqtt_key, api_key, None)


def test_hub_urls() -> None:
    assert agent_enroll.check_hub_url("https://hub.example.net/") == "https://hub.example.net"
    assert agent_enroll.check_hub_url("http://127.0.0.1:8090") == "http://127.0.0.1:8090"
    assert agent_enroll.check_hub_url("http://localhost:8090") == "http://localhost:8090"
    for bad in ("http://hub.example.net", "ftp://hub", "https://u:p@hub", "https://hub/#code"):
        with pytest.raises(agent_enroll.EnrollFailed):
            agent_enroll.check_hub_url(bad)
