"""Connection security against a real Mosquitto run from systemd/mosquitto/.

The broker's config is the shipped edge-hub.conf.example with only its paths
and ports rewritten, and its ACL is acl.example byte for byte
(support.secure_broker), so these tests hold for what an operator installs.

Mosquitto 2.0 as observed here: a bad password, an unknown user and an
anonymous client all get CONNACK 0x87 "Not authorized" (never 0x86); every
SUBSCRIBE is granted and the ACL's `read` filters each delivery; a denied
PUBLISH is dropped, with PUBACK 0x87 in MQTT 5 and a plain PUBACK in 3.1.1.
So "store A never gets X" is shown with a sentinel: X is published first,
then a message A may read, on an order that the broker keeps; once A has the
sentinel, X would have arrived before it.
"""

from __future__ import annotations

import json
import queue
import re
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from support.agent import AgentProcess, config_dict, free_port
from support.secure_broker import EXAMPLE_ACL, SecureBroker
from support.tls import CertAuthority, KeyPair

PASSWORDS = {"hub": "hub-secret", "store-a": "a-secret", "store-b": "b-secret"}
NOT_AUTHORIZED = 0x87
TIMEOUT = 5.0

V5 = pytest.param(mqtt.MQTTv5, id="mqtt5")
V311 = pytest.param(mqtt.MQTTv311, id="mqtt311")


class Peer:
    """A plain paho client that records every CONNACK, SUBACK, PUBACK and message."""

    def __init__(self, port: int, user: str | None, password: str | None = None, *,
                 protocol: int = mqtt.MQTTv5, ca: Path | None = None, cert: KeyPair | None = None,
                 tls: bool = False, client_id: str | None = None, will: str | None = None):
        self.port = port
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        # No reconnecting: a refused peer's thread ends at once instead of waiting to retry.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol, reconnect_on_failure=False,
                                  client_id=client_id or f"test-{user}-{uuid.uuid4().hex[:8]}")
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls or ca or cert:
            # ca None: the system's CAs, as a client that was not given the hub's CA.
            self.client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert.cert) if cert else None,
                                keyfile=str(cert.key) if cert else None)
        if will is not None:
            self.client.will_set(will, f"will of {client_id}".encode(), qos=1)
        c = self.client
        c.on_connect = lambda _c, _u, _f, rc, _p: self.events.put(("connack", rc))
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self.events.put(("disconnect", rc))
        c.on_subscribe = lambda _c, _u, mid, rcs, _p: self.events.put(("suback", (mid, rcs)))
        c.on_publish = lambda _c, _u, mid, rc, _p: self.events.put(("puback", (mid, rc)))
        c.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def _next(self, kind: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, value = self.events.get(timeout=left)
            except queue.Empty:
                break
            if got == kind:
                return value
            if got == "disconnect" and kind != "disconnect":
                raise AssertionError(f"disconnected ({value}) while waiting for {kind}")
        raise AssertionError(f"no {kind} within {TIMEOUT} s")

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK's reason code (the TLS handshake may raise)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self._next("connack")

    def connected(self) -> "Peer":
        """Connect and insist on success."""
        rc = self.connect()
        assert not rc.is_failure, rc
        return self

    def subscribe(self, *filters: str, retained: bool = True) -> list[ReasonCode]:
        """Subscribe at QoS 1 in one SUBSCRIBE; the SUBACK's reason codes.

        ``retained=False`` (MQTT 5) asks for no retained messages: what other tests left.
        """
        if retained:
            _, mid = self.client.subscribe([(f, 1) for f in filters])
        else:
            no_retained = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            _, mid = self.client.subscribe([(f, no_retained) for f in filters])
        got_mid, codes = self._next("suback")
        assert got_mid == mid
        return codes

    def publish(self, topic: str, payload: str, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1; the PUBACK's reason code (3.1.1: always success)."""
        info = self.client.publish(topic, payload.encode(), qos=1, retain=retain)
        got_mid, rc = self._next("puback")
        assert got_mid == info.mid
        return rc

    def until(self, payload: str) -> list[tuple[str, str]]:
        """Every (topic, payload) received up to and including the first ``payload``."""
        got: list[tuple[str, str]] = []
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                break
            got.append((msg.topic, msg.payload.decode()))
            if got[-1][1] == payload:
                return got
        raise AssertionError(f"{payload!r} never arrived; got {got}")

    def expect(self, topic: str, match: Callable[[Any], bool], agent: AgentProcess,
               timeout: float = 15.0) -> Any:
        """The JSON of the first message on ``topic`` that ``match`` accepts, from a real agent."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if msg.topic == topic and match(body := json.loads(msg.payload)):
                return body
        raise AssertionError(f"nothing matching on {topic} within {timeout} s; agent log:\n{agent.log()}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The hub's CA and server certificate, client certificates, and a CA nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    ca = CertAuthority(d / "ca").create()
    rogue = CertAuthority(d / "rogue", "rogue CA").create()
    return {
        "ca": ca,
        "server": ca.issue("hub.server", "server"),
        "store-a": ca.issue("store-a", "client"),
        "rogue": rogue,
        "rogue-store-a": rogue.issue("store-a", "client"),
    }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]) -> Iterator[SecureBroker]:
    """The example broker with passwords; TLS without client certificates."""
    b = SecureBroker(tmp_path_factory.mktemp("broker"), PASSWORDS, pki["ca"].cert, pki["server"]).start()
    yield b
    b.stop()


@pytest.fixture
def peers(broker: SecureBroker) -> Iterator[Callable[..., Peer]]:
    """Factory of Peers, by default on the module broker's loopback listener with their own password."""
    made: list[Peer] = []

    def factory(user: str | None, password: str | None = None, **kwargs: Any) -> Peer:
        peer = Peer(kwargs.pop("port", broker.port), user,
                    PASSWORDS.get(user or "") if password is None else password, **kwargs)
        made.append(peer)
        return peer

    yield factory
    for peer in made:
        peer.close()


def test_the_tested_acl_is_the_shipped_one(broker):
    assert broker.acl_path.read_bytes() == EXAMPLE_ACL.read_bytes()
    conf = broker.conf_path.read_text()
    assert "allow_anonymous false" in conf and "per_listener_settings false" in conf


# Who may connect ---------------------------------------------------------------

@pytest.mark.parametrize("protocol", [V5, V311])
@pytest.mark.parametrize("user, password", [
    ("store-a", "wrong"),
    ("store-a", PASSWORDS["store-b"]),  # another store's password
    ("store-z", "anything"),            # not in the password file
    (None, None),                       # anonymous
], ids=["wrong-password", "other-stores-password", "unknown-user", "anonymous"])
def test_bad_credentials_are_refused_at_connect(peers, user, password, protocol):
    rc = peers(user, password, protocol=protocol).connect()
    # Mosquitto 2.0.11 answers 0x87 Not authorized (3.1.1: return code 5), never
    # 0x86 Bad user name or password; paho maps both protocols to the same code.
    assert rc.value == NOT_AUTHORIZED and str(rc) == "Not authorized"


def test_every_account_connects_with_its_password(peers):
    for user in PASSWORDS:
        assert peers(user).connect().value == 0


# What a store may read -----------------------------------------------------------

@pytest.mark.parametrize("protocol", [V5, V311])
def test_store_a_never_receives_store_b_downlink(peers, protocol):
    a = peers("store-a", protocol=protocol).connected()
    b = peers("store-b", protocol=protocol).connected()
    hub = peers("hub").connected()
    # Every way of asking for store B's commands, and A's own as the sentinel.
    stolen = ["hub/store-b/cmd", "hub/+/cmd", "hub/#", "#", "$share/thieves/hub/store-b/cmd"]
    codes = a.subscribe(*stolen, "hub/store-a/cmd")
    # Mosquitto grants them all (granted QoS 1) and filters each delivery instead.
    assert [c.value for c in codes] == [1] * (len(stolen) + 1)
    assert [c.value for c in b.subscribe("hub/store-b/cmd")] == [1]

    assert not hub.publish("hub/store-b/cmd", "for store-b only").is_failure
    assert not hub.publish("hub/store-a/cmd", "sentinel").is_failure

    assert b.until("for store-b only") == [("hub/store-b/cmd", "for store-b only")]
    got = a.until("sentinel")
    assert {t for t, _ in got} == {"hub/store-a/cmd"}  # one copy per matching filter, all A's own


def test_store_a_reads_its_own_downlink_and_the_chain_wide_catalog(peers):
    a = peers("store-a").connected()
    hub = peers("hub").connected()
    a.subscribe("hub/store-a/#", "hub/all/#")
    for topic in ("hub/store-a/orders", "hub/store-a/ack", "hub/all/catalog"):
        assert not hub.publish(topic, f"to {topic}").is_failure
    assert a.until("to hub/all/catalog") == [
        ("hub/store-a/orders", "to hub/store-a/orders"),
        ("hub/store-a/ack", "to hub/store-a/ack"),
        ("hub/all/catalog", "to hub/all/catalog"),
    ]


def test_store_a_cannot_read_store_b_uplink_not_even_its_retained_status(peers):
    b = peers("store-b").connected()
    assert not b.publish("edge/store-b/status", '{"state": "online"}', retain=True).is_failure
    a = peers("store-a").connected()
    hub = peers("hub").connected()
    # The retained status is queued to A (or not) while A's SUBSCRIBE is handled,
    # and B's event before B gets its PUBACK: both before the hub's sentinel.
    a.subscribe("edge/+/status", "edge/#", "hub/store-a/cmd")
    assert not b.publish("edge/store-b/events", "[]").is_failure
    hub.publish("hub/store-a/cmd", "sentinel")
    assert a.until("sentinel") == [("hub/store-a/cmd", "sentinel")]
    # The hub does read it.
    hub.subscribe("edge/store-b/status")
    assert hub.until('{"state": "online"}') == [("edge/store-b/status", '{"state": "online"}')]
    b.publish("edge/store-b/status", "", retain=True)  # clear it


# What a store may publish --------------------------------------------------------

FORGED = [
    "edge/store-b/events",   # events as store B
    "edge/store-b/status",   # store B's presence
    "hub/store-b/cmd",       # commands to store B
    "hub/store-a/ack",       # an ack to itself: would make it forget unsent sales
    "hub/all/catalog",       # prices for the whole chain
    "edge/store-b",          # not even the bare prefix
]


@pytest.mark.parametrize("protocol", [V5, V311])
def test_store_a_cannot_publish_as_store_b_or_as_the_hub(peers, protocol):
    # The hub as edge-hub subscribes: events through the shared subscription.
    hub_events = peers("hub").connected()
    hub_all = peers("hub").connected()
    assert [c.value for c in hub_events.subscribe("$share/hub/edge/+/events")] == [1]
    hub_all.subscribe("edge/#", retained=False)
    b = peers("store-b").connected()
    b.subscribe("hub/store-b/cmd", "hub/all/catalog")
    a = peers("store-a", protocol=protocol).connected()
    a.subscribe("hub/store-a/ack", "hub/all/catalog")

    refused = {topic: a.publish(topic, f"forged {topic}").value for topic in FORGED}
    # MQTT 5 says so in the PUBACK; 3.1.1 has no way to, the message is dropped all the same.
    expected = NOT_AUTHORIZED if protocol == mqtt.MQTTv5 else 0
    assert refused == {topic: expected for topic in FORGED}
    assert not a.publish("edge/store-a/events", "sentinel-a").is_failure

    assert hub_events.until("sentinel-a") == [("edge/store-a/events", "sentinel-a")]
    assert hub_all.until("sentinel-a") == [("edge/store-a/events", "sentinel-a")]
    # The forged downlink reached neither store: the hub's own catalog comes first.
    hub = peers("hub").connected()
    assert not hub.publish("hub/all/catalog", "sentinel-hub").is_failure
    assert b.until("sentinel-hub") == [("hub/all/catalog", "sentinel-hub")]
    assert a.until("sentinel-hub") == [("hub/all/catalog", "sentinel-hub")]


def test_store_a_will_cannot_speak_for_store_b(peers):
    """The Will is checked when it would be sent: connecting with a forged one works, sending it does not."""
    hub = peers("hub").connected()
    hub.subscribe("edge/#", retained=False)
    for will, delivered in (("edge/store-b/status", False), ("edge/store-a/status", True)):
        cid = f"store-a-will-{uuid.uuid4().hex[:6]}"
        peers("store-a", client_id=cid, will=will).connected()
        # A second connection with the same client id takes the session over:
        # the broker ends the first, sends (or drops) its Will, then answers the CONNACK.
        taker = peers("store-a", client_id=cid).connected()
        taker.publish("edge/store-a/events", f"sentinel {will}")
        got = hub.until(f"sentinel {will}")
        assert ((will, f"will of {cid}") in got) is delivered, got


# TLS --------------------------------------------------------------------------------

def _agent_over_tls(make_agent, tmp_path: Path, broker: SecureBroker, ca: Path, *,
                    password: str | None, cert: KeyPair | None = None, username: str | None = "store-a"):
    """A real agent for store-a dialling the broker's TLS listener with these credentials."""
    config = config_dict(free_port(), store_id="store-a", hub_url=f"mqtts://127.0.0.1:{broker.tls_port}")
    config["hub"]["ca_file"] = str(ca)
    if username is not None:
        config["hub"]["username"] = username
    if password is not None:
        pw = tmp_path / f"hub-{uuid.uuid4().hex[:6]}.pass"
        pw.write_text(password + "\n")
        config["hub"]["password_file"] = str(pw)
    if cert is not None:
        config["hub"]["cert_file"], config["hub"]["key_file"] = str(cert.cert), str(cert.key)
    return make_agent(config=config).start()


def _online_and_answering(agent, hub: Peer) -> None:
    """The agent's retained status says online, and a command over TLS gets its answer."""
    hub.subscribe("edge/store-a/status", "edge/store-a/cmd/res")
    hub.expect("edge/store-a/status", lambda s: s["state"] == "online", agent)
    # The agent subscribed before it published its status: the command reaches it.
    cmd_id = uuid.uuid4().hex
    hub.publish("hub/store-a/cmd", json.dumps({"id": cmd_id, "device": "agent", "action": "status"}))
    assert hub.expect("edge/store-a/cmd/res", lambda r: r["id"] == cmd_id, agent)["ok"] is True


def test_agent_connects_over_tls_with_its_password(make_agent, tmp_path, broker, pki, peers):
    hub = peers("hub").connected()
    agent = _agent_over_tls(make_agent, tmp_path, broker, pki["ca"].cert, password=PASSWORDS["store-a"])
    try:
        _online_and_answering(agent, hub)
    finally:
        agent.stop()
    # Mosquitto logs each login: MQTT 5 (p5), persistent session (c0), as user store-a, whose login is its id.
    assert re.search(r"as store-a \(p5, c0, k\d+, u'store-a'\)", broker.log())


@pytest.mark.parametrize("ca", ["system", "rogue"])
def test_tls_client_without_the_hubs_ca_refuses_the_broker(broker, pki, ca):
    peer = Peer(broker.tls_port, "store-a", PASSWORDS["store-a"], tls=True,
                ca=None if ca == "system" else pki["rogue"].cert)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        peer.connect()


def test_tls_listener_checks_passwords_and_speaks_only_tls(broker, pki, peers):
    assert peers("store-a", port=broker.tls_port, ca=pki["ca"].cert).connect().value == 0
    assert peers("store-a", "wrong", port=broker.tls_port, ca=pki["ca"].cert).connect().value == NOT_AUTHORIZED
    plain = peers("store-a", port=broker.tls_port)  # MQTT without TLS on the TLS port
    plain.client.connect("127.0.0.1", broker.tls_port)
    plain.client.loop_start()
    assert plain._next("disconnect").is_failure


@pytest.fixture
def mutual_broker(tmp_path: Path, pki: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[SecureBroker]:
    """The example with `require_certificate true` uncommented (and `use_identity_as_username` if asked)."""
    b = SecureBroker(tmp_path / "mutual", PASSWORDS, pki["ca"].cert, pki["server"], require_certificate=True,
                     identity_as_username=getattr(request, "param", False)).start()
    yield b
    b.stop()


def _refused_in_handshake(peer: Peer) -> None:
    """The broker ends the TLS session before any CONNACK (TLS 1.3: after the client's Finished)."""
    try:
        peer.client.connect("127.0.0.1", peer.port)
    except (ssl.SSLError, ConnectionError):
        return
    peer.client.loop_start()
    kind, rc = peer.events.get(timeout=TIMEOUT)
    assert kind == "disconnect" and rc.is_failure, (kind, rc)


def test_mutual_tls_agent_with_its_certificate_connects(make_agent, tmp_path, mutual_broker, pki, peers):
    hub = peers("hub", port=mutual_broker.port).connected()
    agent = _agent_over_tls(make_agent, tmp_path, mutual_broker, pki["ca"].cert,
                            password=PASSWORDS["store-a"], cert=pki["store-a"])
    try:
        _online_and_answering(agent, hub)
    finally:
        agent.stop()


def test_mutual_tls_refuses_a_client_without_a_certificate_or_with_a_rogue_one(mutual_broker, pki, peers):
    ca = pki["ca"].cert
    port = mutual_broker.tls_port
    _refused_in_handshake(peers("store-a", port=port, ca=ca))
    _refused_in_handshake(peers("store-a", port=port, ca=ca, cert=pki["rogue-store-a"]))
    # The certificate does not replace the password unless use_identity_as_username is on.
    assert peers("store-a", "wrong", port=port, ca=ca, cert=pki["store-a"]).connect().value == NOT_AUTHORIZED
    assert peers("store-a", port=port, ca=ca, cert=pki["store-a"]).connect().value == 0
    assert "peer did not return a certificate" in mutual_broker.log()


@pytest.mark.parametrize("mutual_broker", [True], indirect=True, ids=["identity-as-username"])
def test_certificate_cn_is_the_store_with_use_identity_as_username(make_agent, tmp_path, mutual_broker,
                                                                    pki, peers):
    hub = peers("hub", port=mutual_broker.port).connected()
    hub.subscribe("edge/#", retained=False)
    # store-a's certificate, claiming to be store-b with store-b's own password: the CN wins.
    liar = peers("store-b", port=mutual_broker.tls_port, ca=pki["ca"].cert, cert=pki["store-a"]).connected()
    assert liar.publish("edge/store-b/events", "forged").value == NOT_AUTHORIZED
    assert not liar.publish("edge/store-a/events", "sentinel").is_failure
    assert hub.until("sentinel") == [("edge/store-a/events", "sentinel")]
    # The agent needs no user name or password there: its key is its credential.
    agent = _agent_over_tls(make_agent, tmp_path, mutual_broker, pki["ca"].cert,
                            password=None, username=None, cert=pki["store-a"])
    try:
        _online_and_answering(agent, hub)
    finally:
        agent.stop()
    # The broker took the certificate's CN as the user name, and that as the client id.
    assert re.search(r"as store-a \(p5, c0, k\d+, u'store-a'\)", mutual_broker.log())


# The client id is the login (use_username_as_clientid on the stores' listener) -------------------------------

@pytest.fixture
def unbound_broker(tmp_path: Path, pki: dict[str, Any]) -> Iterator[SecureBroker]:
    """The example as it was before: the TLS listener takes any client id from any login."""
    b = SecureBroker(tmp_path / "unbound", PASSWORDS, pki["ca"].cert, pki["server"],
                     username_as_clientid=False).start()
    yield b
    b.stop()


@pytest.mark.parametrize("bound", [True, False], ids=["shipped", "without-the-line"])
def test_another_stores_login_cannot_knock_a_store_off(make_agent, tmp_path, broker, unbound_broker, pki, peers,
                                                       bound):
    """store-b's password with store-a's client id (the agent's own, and the one it used to have) over TLS:
    on the shipped broker store-a's agent stays connected and the hub sees no offline Will; without
    use_username_as_clientid the same connect takes store-a's session, which is what the line is for."""
    b = broker if bound else unbound_broker
    ca = pki["ca"].cert
    since = len(b.log())  # the module's broker has served other tests
    hub = peers("hub", port=b.port).connected()
    agent = _agent_over_tls(make_agent, tmp_path, b, ca, password=PASSWORDS["store-a"])
    try:
        _online_and_answering(agent, hub)
        hub.subscribe("edge/store-b/sentinel", retained=False)
        for client_id in ("store-a", "edge-agent-store-a"):
            intruder = peers("store-b", port=b.tls_port, ca=ca, client_id=client_id).connected()
            # Mosquitto handles one packet at a time: a Will the connect set off reaches the hub before this.
            assert not intruder.publish("edge/store-b/sentinel", client_id).is_failure
            got = hub.until(client_id)
            offline = [p for t, p in got if t == "edge/store-a/status" and json.loads(p)["state"] == "offline"]
            if not bound:
                assert offline, got  # the attack of finding 4 works against the old example
                return
            assert offline == [], got
            intruder.close()
        # Still the same connection: nothing logged a disconnect, a command is answered, health says online.
        _online_and_answering(agent, hub)
        with agent.client() as http:
            assert http.get("/v1/health").json()["hub"] == "online"
        assert "taken over" not in agent.log() and "disconnected" not in agent.log().lower()
    finally:
        agent.stop()
    # On the broker, the intruder was store-b under its own login, whatever id it asked for.
    log = b.log()[since:]
    assert re.search(r"as store-b \(p5, c1, k\d+, u'store-b'\)", log)
    assert not re.search(r"as store-a \(p5, c1", log) and "already connected" not in log


def test_the_hub_user_keeps_its_own_client_ids(broker, peers):
    """edge-hub's workers share the user "hub" on the loopback listener, each with its own id: both stay."""
    one = peers("hub", client_id="hub-worker-1").connected()
    two = peers("hub", client_id="hub-worker-2").connected()
    one.subscribe("edge/store-a/sentinel", retained=False)
    store = peers("store-a").connected()
    assert not store.publish("edge/store-a/sentinel", "both").is_failure
    assert one.until("both") == [("edge/store-a/sentinel", "both")]
    assert not two.publish("hub/store-a/cmd", "still connected").is_failure
    assert re.search(r"as hub-worker-1 \(p5, c1, k\d+, u'hub'\)", broker.log())
    assert re.search(r"as hub-worker-2 \(p5, c1, k\d+, u'hub'\)", broker.log())


def test_a_dead_pcs_disk_drains_beside_its_live_agent_on_the_shipped_broker(make_agent, tmp_path, broker, pki,
                                                                            peers):
    """The drain and the live agent share the store's one session by turns: every event reaches the hub,
    the live agent is back online after its takeover backoff, and every downlink message the hub sent while
    the drain held the session still reaches the live agent (the drain takes only its own acks)."""
    from support.hubprocess import HubProcess
    from support.storepcs import sell
    from sync.hub.db import open_db

    def pc(name: str) -> AgentProcess:
        config = config_dict(free_port(), [], store_id="store-a", hub_url=f"mqtts://127.0.0.1:{broker.tls_port}")
        pw = tmp_path / f"{name}.pass"
        pw.write_text(PASSWORDS["store-a"] + "\n")
        config["hub"].update(username="store-a", password_file=str(pw), ca_file=str(pki["ca"].cert),
                             takeover_backoff=2)
        agent = make_agent(workdir=tmp_path / name, config=config)
        agent.import_catalog()
        return agent.start()

    old = pc("old-pc")
    stranded = sell(old, 5)  # no hub yet: nothing acknowledges them
    old.kill()
    hub = HubProcess(f"mqtt://hub:{PASSWORDS['hub']}@127.0.0.1:{broker.port}", f"sqlite:///{tmp_path}/hub.db",
                     tmp_path / "hub.log").start()
    watcher = peers("hub", client_id="status-watcher").connected()
    try:
        new = pc("new-pc")
        live = sell(new, 3)
        watcher.subscribe("edge/store-a/status", retained=False)
        commander = peers("hub", client_id="commander").connected()
        commander.subscribe("edge/store-a/cmd/res", retained=False)
        drain = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "drain", "--config",
                                  str(new.config_path), "--data-dir", str(old.data_dir), "--timeout", "120"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Commands from the hub all through the drain, whoever holds the session when each arrives.
        sent: list[str] = []
        while drain.poll() is None or len(sent) < 5:
            cmd_id = f"during-drain-{len(sent)}"
            assert not commander.publish("hub/store-a/cmd", json.dumps(
                {"id": cmd_id, "device": "agent", "action": "status"})).is_failure
            sent.append(cmd_id)
            if drain.poll() is None:
                try:
                    drain.wait(0.3)  # a command every 0.3 s while the drain runs
                except subprocess.TimeoutExpired:
                    pass
            assert len(sent) < 1000, "the drain did not end"
        out, err = drain.communicate(timeout=60)
        assert drain.returncode == 0, err
        assert "5 event(s) to send" in out and "every event is at the hub" in out
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while set(sent) - answered:
            left = deadline - time.monotonic()
            assert left > 0, f"never answered: {sorted(set(sent) - answered)} of {len(sent)}"
            try:
                msg = commander.messages.get(timeout=left)
            except queue.Empty:
                continue
            answered.add(json.loads(msg.payload)["id"])
        # The live agent took its session back and says so; its own sales reach the hub too.
        watcher.expect("edge/store-a/status", lambda s: s["state"] == "online", new, timeout=60)
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{new.url}/v1/health", timeout=10).json())["outbox_depth"] or \
                health["hub"] != "online":
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
        db = open_db(f"sqlite:///{tmp_path}/hub.db")
        try:
            sales = [json.loads(db.query("SELECT event FROM events WHERE store = ? AND stream = ? AND seq = ?",
                                         ("store-a", stream, seq))[0][0])["data"]["client_sale_id"]
                     for stream, seq, _, type_ in db.store_events("store-a") if type_ == "retail.sale.completed"]
        finally:
            db.close()
        assert sorted(sales) == sorted(stranded + live)
    finally:
        hub.stop()
