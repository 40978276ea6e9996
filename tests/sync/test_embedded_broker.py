"""The embedded broker (sync/embedded_broker/): its codec byte for byte, then
real paho clients (MQTT 5 and 3.1.1) against it, then our own agent and hub.

Every wait is on a message, a CONNACK, a SUBACK or a disconnect, with a
deadline; to show that something did NOT arrive, a marker is published after
it and awaited: the broker keeps one publisher's messages in order (4.6).
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProps
from paho.mqtt.subscribeoptions import SubscribeOptions

from sync.embedded_broker import BrokerThread, EmbeddedBrokerProcess, Settings, codec
from sync.embedded_broker.matching import matches, parse_shared, valid_filter
from sync.embedded_broker.properties import Properties, PropId, ProtocolError
from sync.hub.db import open_db

from support.agent import config_dict, free_port
from support.hubprocess import HubProcess

V5, V311 = mqtt.MQTTv5, mqtt.MQTTv311
P = codec.PacketType


# The codec ----------------------------------------------------------------------------------------

def test_known_packets_are_encoded_byte_for_byte():
    assert codec.encode(codec.PingReq()) == b"\xc0\x00"
    assert codec.encode(codec.Ack(P.PUBACK, 1)) == b"\x40\x02\x00\x01"  # 3.4.2.1: reason 0 left out
    assert codec.encode(codec.Ack(P.PUBREL, 7, 0x92)) == b"\x62\x03\x00\x07\x92"
    assert codec.encode(codec.Connack(0, True), 4) == b"\x20\x02\x01\x00"
    assert codec.encode(codec.Connect("abc", 4, keepalive=60)) == b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03abc"
    assert codec.encode(codec.Publish("a/b", b"hi", 1, packet_id=10), 5) == b"\x32\x0a\x00\x03a/b\x00\x0a\x00hi"
    assert codec.encode(codec.Disconnect(0x8E)) == b"\xe0\x02\x8e\x00"


def _every_property() -> dict[str, Properties]:
    publish = Properties({PropId.PAYLOAD_FORMAT_INDICATOR: 1, PropId.MESSAGE_EXPIRY_INTERVAL: 3600,
                          PropId.CONTENT_TYPE: "application/json", PropId.RESPONSE_TOPIC: "r/t",
                          PropId.CORRELATION_DATA: b"\x00\x01"}, [("k", "v"), ("k", "w")], [1, 268_435_455])
    connect = Properties({PropId.SESSION_EXPIRY_INTERVAL: 0xFFFFFFFF, PropId.RECEIVE_MAXIMUM: 10,
                          PropId.MAXIMUM_PACKET_SIZE: 1 << 20, PropId.TOPIC_ALIAS_MAXIMUM: 0,
                          PropId.REQUEST_RESPONSE_INFORMATION: 1, PropId.REQUEST_PROBLEM_INFORMATION: 0,
                          PropId.AUTHENTICATION_METHOD: "x", PropId.AUTHENTICATION_DATA: b"y"})
    connack = Properties({PropId.ASSIGNED_CLIENT_IDENTIFIER: "auto", PropId.SERVER_KEEP_ALIVE: 30,
                          PropId.RESPONSE_INFORMATION: "ri", PropId.SERVER_REFERENCE: "other",
                          PropId.REASON_STRING: "why", PropId.MAXIMUM_QOS: 1, PropId.RETAIN_AVAILABLE: 1,
                          PropId.WILDCARD_SUBSCRIPTION_AVAILABLE: 1, PropId.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 1,
                          PropId.SHARED_SUBSCRIPTION_AVAILABLE: 1})
    return {"publish": publish, "connect": connect, "connack": connack}


@pytest.mark.parametrize("version", [4, 5])
def test_every_packet_round_trips(version):
    props = _every_property() if version == 5 else {k: Properties() for k in ("publish", "connect", "connack")}
    will_props = Properties({PropId.WILL_DELAY_INTERVAL: 5, PropId.CONTENT_TYPE: "t"}) if version == 5 else Properties()
    opts = codec.SubOptions(1, True, True, 2) if version == 5 else codec.SubOptions(1)
    packets = [
        codec.Connect("c1", version, False, 30, "u", b"p", codec.Will("w/t", b"bye", 1, True, will_props),
                      props["connect"]),
        codec.Connack(0x00, True, props["connack"]),
        codec.Publish("a/b", b"\x00payload", 1, True, True, 42, props["publish"]),
        codec.Publish("a/b", b"", 0),
        *(codec.Ack(kind, 9, 0x10 if version == 5 else 0) for kind in (P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP)),
        codec.Subscribe(3, [("a/+", opts), ("$share/g/b/#", codec.SubOptions(0))],
                        Properties({PropId.SUBSCRIPTION_IDENTIFIER: 5}) if version == 5 else Properties()),
        codec.Suback(3, [1, 0x80]),
        codec.Unsubscribe(4, ["a/+", "b"]),
        codec.Unsuback(4, [0, 0x11] if version == 5 else []),
        codec.PingReq(), codec.PingResp(),
        codec.Disconnect(0x04 if version == 5 else 0),
    ]
    for packet in packets:
        data = codec.encode(packet, version)
        first, length, size = codec.split_header(data)
        assert size + length == len(data)
        assert codec.decode(first, data[size:], version) == packet, packet


MALFORMED = [
    (0x00, b"", 0x81, "reserved"),  # packet type 0
    (0xC1, b"", 0x81, "reserved flags"),  # PINGREQ with a flag
    (0x80, b"\x00\x01\x00\x01a\x00", 0x81, "reserved flags"),  # SUBSCRIBE without its 0b0010
    (0x36, b"\x00\x01a\x00\x01\x00", 0x81, "QoS 3"),
    (0x38, b"\x00\x01a\x00", 0x82, "DUP"),  # DUP at QoS 0
    (0x32, b"\x00\x01a\x00\x00\x00", 0x82, "Packet Identifier 0"),
    (0x30, b"\x00\x02\xc3\x28\x00", 0x81, "UTF-8"),
    (0x30, b"\x00\x02a\x00\x00", 0x81, "U+0000"),
    (0x30, b"\x00\x05ab", 0x81, "shorter"),
    (0x30, b"\x00\x01a\x02\x11\x00", 0x81, "not allowed in PUBLISH"),  # Session Expiry in a PUBLISH
    (0x30, b"\x00\x01a\x04\x03\x00\x00\x03", 0x81, "shorter"),
    (0x30, b"\x00\x01a\x04\x01\x01\x01\x01", 0x82, "twice"),
    (0x30, b"\x00\x01a\x02\x01\x02", 0x82, "0 or 1"),
    (0x30, b"\x00\x01a\x02\x7f\x00", 0x81, "unknown property"),
    (0x82, b"\x00\x01\x00", 0x82, "without a topic filter"),
    (0x82, b"\x00\x01\x00\x00\x01a\xc0", 0x81, "subscription options"),
    (0xE0, b"\x00\x00\x00", 0x81, "more than its contents"),
    (0x10, b"\x00\x04MQTT\x05\x01\x00\x00\x00\x00\x00", 0x81, "reserved flag"),
    (0x10, b"\x00\x04MQTT\x05\x18\x00\x00\x00\x00\x00", 0x81, "Will QoS"),
    (0x10, b"\x00\x06MQIsdp\x03\x02\x00\x00\x00\x00", 0x84, "unsupported protocol"),
]


@pytest.mark.parametrize("first,body,reason,text", MALFORMED)
def test_malformed_packets_raise_a_clear_protocol_error(first, body, reason, text):
    with pytest.raises(ProtocolError, match=re.escape(text)) as err:
        codec.decode(first, body, 5)
    assert err.value.reason == reason
    with pytest.raises(ProtocolError, match="longer than four bytes"):
        codec.split_header(b"\x30\xff\xff\xff\xff\x01")


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=64), st.sampled_from([4, 5]))
def test_random_bytes_decode_or_raise_protocol_error_only(first, body, version):
    try:
        codec.decode(first, body, version)
    except ProtocolError:
        pass


def test_topic_matching_follows_section_4_7():
    assert matches("a/+/c", "a/b/c") and not matches("a/+/c", "a/b/d") and not matches("a/+", "a/b/c")
    assert matches("a/#", "a") and matches("a/#", "a/b/c") and matches("#", "a/b") and matches("+/+", "/x")
    assert not matches("#", "$SYS/x") and not matches("+/x", "$SYS/x") and matches("$SYS/#", "$SYS/x")
    assert all(valid_filter(f) for f in ("#", "+", "a/+/b", "a/#", "/"))
    assert not any(valid_filter(f) for f in ("", "a#", "a/#/b", "a+/b", "a/b+"))
    assert parse_shared("$share/hub/edge/+/events") == ("hub", "edge/+/events") and parse_shared("a/b") is None
    for bad in ("$share/g", "$share//a", "$share/g+/a", "$share/g/a/#/b"):
        with pytest.raises(ValueError):
            parse_shared(bad)


# Real paho clients --------------------------------------------------------------------------------

@pytest.fixture
def broker():
    b = BrokerThread().start()
    yield b
    b.stop()


class Client:
    """A paho 2.x client whose callbacks land in queues; every wait has a deadline."""

    def __init__(self, port: int, client_id: str | None = None, protocol=V5, *, clean: bool = True,
                 expiry: int | None = None, will: tuple | None = None, manual_ack: bool = False, keepalive=60,
                 receive_maximum: int | None = None):
        self.port, self.protocol = port, protocol
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.events: queue.Queue[tuple] = queue.Queue()
        kw = {"clean_session": clean} if protocol == V311 else {}
        # No reconnecting: a lost connection ends paho's thread at once, and the test says what comes next.
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id or f"t-{uuid.uuid4().hex[:8]}",
                             protocol=protocol, manual_ack=manual_ack, reconnect_on_failure=False, **kw)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, flags, rc, props: self.events.put(("connect", flags.session_present, rc))
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.events.put(("suback", [r.value for r in rcs]))
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.events.put(("disconnect", rc.value))
        if will:
            self.c.will_set(*will)
        props = PahoProps(PacketTypes.CONNECT) if protocol == V5 else None
        if props is not None and expiry is not None:
            props.SessionExpiryInterval = expiry
        if props is not None and receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
        self.c.connect("127.0.0.1", port, keepalive, **({"clean_start": clean, "properties": props}
                                                        if protocol == V5 else {}))
        self.c.loop_start()
        _, self.session_present, rc = self.event("connect")
        assert not rc.is_failure, rc

    def event(self, kind: str, timeout: float = 5.0) -> tuple:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                break
            if ev[0] == kind:
                return ev
        raise AssertionError(f"no {kind} within {timeout} s")

    def subscribe(self, topic: str, qos: int = 1, **options) -> list[int]:
        if self.protocol == V5:
            sub_id = options.pop("sub_id", None)
            props = None
            if sub_id:
                props = PahoProps(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = sub_id
            opts = SubscribeOptions(qos=qos, noLocal=options.get("no_local", False),
                                    retainHandling=options.get("retain_handling", 0))
            self.c.subscribe(topic, options=opts, properties=props)
        else:
            self.c.subscribe(topic, qos)
        return self.event("suback")[1]

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 1, retain: bool = False, props=None):
        self.c.publish(topic, payload, qos, retain, properties=props).wait_for_publish(5)

    def get(self, n: int = 1, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        out = []
        for _ in range(n):
            try:
                out.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {n} messages: {[m.topic for m in out]}") from None
        return out

    def until(self, topic: str, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        """Every message up to and including the next one on ``topic`` (a marker)."""
        out = self.get()
        while out[-1].topic != topic:
            out += self.get(timeout=timeout)
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self) -> None:
        """Abnormal end: the socket closes without DISCONNECT."""
        self.c.socket().shutdown(socket.SHUT_RDWR)
        self.event("disconnect")
        self.c.loop_stop()


@pytest.mark.parametrize("protocol", [V5, V311])
def test_publish_subscribe_qos_0_and_1_with_wildcards(broker, protocol):
    sub = Client(broker.port, protocol=protocol)
    assert sub.subscribe("shop/+/scan", 1) == [1] and sub.subscribe("shop/2/#", 0) == [0]
    assert sub.subscribe("#", 1) == [1]
    pub = Client(broker.port, protocol=protocol)
    pub.publish("shop/1/scan", b"a", qos=1)
    pub.publish("shop/2/scan", b"b", qos=0)  # matches all three: one copy, at the highest QoS
    pub.publish("shop/2/deep/x", b"c", qos=1)
    pub.publish("$SYS/uptime", b"d", qos=1)  # not matched by '#' (4.7.2)
    pub.publish("end", b"", qos=1)
    got = [(m.topic, m.payload, m.qos) for m in sub.until("end")]
    assert got == [("shop/1/scan", b"a", 1), ("shop/2/scan", b"b", 0), ("shop/2/deep/x", b"c", 1), ("end", b"", 1)]
    pub.close()
    sub.close()


def test_retained_messages_reach_late_subscribers_and_are_cleared(broker):
    pub = Client(broker.port)
    pub.publish("edge/s1/status", b'{"state":"online"}', qos=1, retain=True)
    pub.publish("edge/s2/status", b'{"state":"online"}', qos=0, retain=True)
    late = Client(broker.port, protocol=V311)
    late.subscribe("edge/+/status", 1)
    got = sorted((m.topic, m.qos, m.retain) for m in late.get(2))
    assert got == [("edge/s1/status", 1, True), ("edge/s2/status", 0, True)]
    pub.publish("edge/s1/status", b"", retain=True)  # clears it; forwarded live with RETAIN 0 (3.3.1.3)
    assert [(m.payload, m.retain) for m in late.get()] == [(b"", False)]
    fresh, rh2 = Client(broker.port), Client(broker.port)
    fresh.subscribe("edge/+/status")
    rh2.subscribe("edge/#", retain_handling=2)  # 3.8.3.1: no retained messages at subscribe time
    pub.publish("edge/zz/status", b"marker")
    assert [(m.topic, m.retain) for m in fresh.until("edge/zz/status")] == [("edge/s2/status", True),
                                                                           ("edge/zz/status", False)]
    assert [m.topic for m in rh2.until("edge/zz/status")] == ["edge/zz/status"]
    for c in (pub, late, fresh, rh2):
        c.close()


def test_will_goes_out_on_abnormal_disconnect_only(broker):
    watcher = Client(broker.port)
    watcher.subscribe("edge/+/status")
    clean = Client(broker.port, will=("edge/a/status", b'{"state":"offline"}', 1, True))
    clean.close()
    crashed = Client(broker.port, protocol=V311, will=("edge/b/status", b'{"state":"offline"}', 1, True))
    crashed.drop()
    msg = watcher.get()[0]
    assert (msg.topic, msg.payload) == ("edge/b/status", b'{"state":"offline"}')
    watcher.close()
    late = Client(broker.port)
    late.subscribe("edge/+/status")
    assert [(m.topic, m.retain) for m in late.get()] == [("edge/b/status", True)]  # the Will was retained
    late.close()


def test_will_delay_interval_is_cancelled_by_a_reconnect(broker):
    watcher = Client(broker.port)
    watcher.subscribe("will/#")
    delayed = PahoProps(PacketTypes.WILLMESSAGE)
    delayed.WillDelayInterval = 1
    a = Client(broker.port, "wa", will=("will/a", b"a", 1, False, delayed), expiry=60)
    a.drop()
    back = Client(broker.port, "wa", clean=False, expiry=60)  # within the delay: no Will (3.1.3.2.2)
    b = Client(broker.port, "wb", will=("will/b", b"b", 1, False, delayed), expiry=60)
    started = time.monotonic()
    b.drop()
    # Had a's Will survived, its earlier timer would have fired first.
    assert [m.topic for m in watcher.get()] == ["will/b"] and time.monotonic() - started >= 0.9
    back.close()
    watcher.close()


def test_shared_subscription_round_robin_and_queueing_for_an_offline_group(broker):
    workers = [Client(broker.port, f"hub-{i}", expiry=300) for i in range(2)]
    for w in workers:
        assert w.subscribe("$share/hub/edge/+/events", 1) == [1]
    plain = Client(broker.port)
    plain.subscribe("edge/+/events")
    store = Client(broker.port)
    for i in range(6):
        store.publish(f"edge/s{i % 2}/events", str(i))
    assert [m.payload for m in plain.get(6)] == [str(i).encode() for i in range(6)]
    shares = [sorted(int(m.payload) for m in w.get(3)) for w in workers]
    assert sorted(shares) == [[0, 2, 4], [1, 3, 5]]  # alternating
    for w in workers:
        w.close()
    for i in range(4):  # every member is away: queued in their sessions, each message once
        store.publish("edge/s0/events", f"away-{i}")
    back = [Client(broker.port, f"hub-{i}", clean=False, expiry=300) for i in range(2)]
    got = sorted(m.payload.decode() for b in back for m in b.get(2))
    assert got == [f"away-{i}" for i in range(4)] and all(b.session_present for b in back)
    for c in (*back, plain, store):
        c.close()


@pytest.mark.parametrize("protocol", [V5, V311])
def test_persistent_session_queues_while_away_and_resends_unacknowledged(broker, protocol):
    sub = Client(broker.port, "agent-1", protocol, clean=False, expiry=300, manual_ack=True)
    sub.subscribe("hub/s1/#", 1)
    pub = Client(broker.port)
    pub.publish("hub/s1/ack", b"1")
    first = sub.get()[0]
    assert not first.dup
    sub.drop()  # never acknowledged it
    for i in (2, 3):
        pub.publish("hub/s1/ack", str(i))
    pub.publish("hub/s1/other", b"qos0", qos=0)  # QoS 0 is not kept for an absent client
    back = Client(broker.port, "agent-1", protocol, clean=False, expiry=300)
    assert back.session_present
    got = [(m.payload, m.dup) for m in back.get(3)]
    assert got == [(b"1", True), (b"2", False), (b"3", False)]  # 4.4: the unacknowledged one first, DUP
    pub.publish("hub/s1/end", b"")
    assert [m.topic for m in back.until("hub/s1/end")] == ["hub/s1/end"]
    back.close()
    fresh = Client(broker.port, "agent-1", protocol, clean=True)  # clean start: the session is gone
    assert not fresh.session_present
    fresh.close()
    pub.close()


def test_receive_maximum_bounds_the_messages_in_flight(broker):
    c = Client(broker.port, "slow-reader", manual_ack=True, receive_maximum=2)
    c.subscribe("rm")
    pub = Client(broker.port)
    for i in range(5):
        pub.publish("rm", str(i))  # routed before its PUBACK came back
    first = c.get(2)
    session = broker.broker.router.sessions["slow-reader"]
    assert (len(session.inflight), len(session.pending)) == (2, 3)  # 3.3.4: no more than 2 unacknowledged
    c.c.ack(first[0].mid, 1)
    assert c.get()[0].payload == b"2" and (len(session.inflight), len(session.pending)) == (2, 2)
    c.close()
    pub.close()


def test_session_queue_is_bounded_dropping_the_oldest(caplog):
    b = BrokerThread(settings=Settings(max_queued=5)).start()
    try:
        away = Client(b.port, "slow", clean=False, expiry=60)
        away.subscribe("q")
        away.drop()
        pub = Client(b.port)
        for i in range(8):
            pub.publish("q", str(i))
        back = Client(b.port, "slow", clean=False, expiry=60)
        assert [m.payload for m in back.get(5)] == [b"3", b"4", b"5", b"6", b"7"]
        assert "dropped the oldest" in caplog.text
        back.close()
        pub.close()
    finally:
        b.stop()


def test_properties_no_local_subscription_ids_and_qos_2(broker):
    c = Client(broker.port)
    c.subscribe("p/mine", no_local=True)
    assert c.subscribe("p/#", 2, sub_id=7) == [1]  # QoS 2 asked, QoS 1 granted (3.8.4)
    other = Client(broker.port)
    props = PahoProps(PacketTypes.PUBLISH)
    props.ContentType, props.ResponseTopic, props.CorrelationData = "application/json", "p/reply", b"\x01\x02"
    props.PayloadFormatIndicator, props.MessageExpiryInterval = 1, 60
    props.UserProperty = [("a", "1"), ("b", "2")]
    other.publish("p/x", b"{}", qos=2, props=props)
    c.publish("p/mine", b"not to me")  # matches p/# too: delivered once, by that subscription
    got = c.get(2)
    m = got[0].properties
    assert (got[0].topic, got[0].qos, m.ContentType, m.ResponseTopic, m.CorrelationData) == \
        ("p/x", 1, "application/json", "p/reply", b"\x01\x02")
    assert (m.PayloadFormatIndicator, m.UserProperty, m.SubscriptionIdentifier) == (1, [("a", "1"), ("b", "2")], [7])
    assert 59 <= m.MessageExpiryInterval <= 60
    assert got[1].topic == "p/mine" and got[1].properties.SubscriptionIdentifier == [7]
    c.close()
    other.close()


def test_client_id_takeover_closes_the_old_connection_with_0x8e(broker):
    old = Client(broker.port, "edge-hub-1", expiry=60)
    old.subscribe("x")
    new = Client(broker.port, "edge-hub-1", clean=False, expiry=60)
    assert old.event("disconnect")[1] == 0x8E and new.session_present
    old.close()
    Client(broker.port).publish("x", b"still subscribed")
    assert new.get()[0].payload == b"still subscribed"
    new.close()


def _raw(port: int, *packets: bytes, version: int = 5) -> list[codec.Packet]:
    """Send bytes on a plain socket; every packet the broker answered with until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(packets))
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    out = []
    while data:
        first, length, size = codec.split_header(data)
        out.append(codec.decode(first, data[size:size + length], version))
        data = data[size + length:]
    return out


def test_garbage_is_disconnected_and_other_clients_keep_working(broker):
    sub = Client(broker.port)
    sub.subscribe("ok")
    assert _raw(broker.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []  # not CONNECT: closed (3.1.0-1)
    assert _raw(broker.port, b"\x10\xff\xff\xff\x7f") == []  # a 256 MiB CONNECT: refused before it is read
    connack, disconnect = _raw(broker.port, codec.encode(codec.Connect("raw", keepalive=0)), b"\x00\x03zzz")
    assert connack.reason == 0 and connack.props.get(PropId.SHARED_SUBSCRIPTION_AVAILABLE) == 1
    assert disconnect.reason == 0x81 and "reserved" in disconnect.props.get(PropId.REASON_STRING)
    mqtt31 = b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x00\x00\x00"
    assert _raw(broker.port, mqtt31, version=4) == [codec.Connack(0x01)]  # unacceptable protocol version
    no_id = codec.encode(codec.Connect("", 4, clean_start=False))
    assert _raw(broker.port, no_id, version=4) == [codec.Connack(0x02)]  # 3.1.1: identifier rejected
    Client(broker.port).publish("ok", b"fine")
    assert sub.get()[0].payload == b"fine"
    sub.close()


def test_keepalive_timeout_closes_and_sends_the_will(broker):
    watcher = Client(broker.port)
    watcher.subscribe("gone")
    started = time.monotonic()
    answers = _raw(broker.port, codec.encode(codec.Connect("silent", keepalive=1, will=codec.Will("gone", b"x"))))
    assert 1.4 < time.monotonic() - started < 4  # 1.5 x keep alive (3.1.2.10)
    assert answers[1] == codec.Disconnect(0x8D)  # Keep Alive timeout
    assert watcher.get()[0].payload == b"x"
    watcher.close()


def test_oversized_publish_is_refused_with_packet_too_large():
    b = BrokerThread(settings=Settings(max_packet_size=1024)).start()
    try:
        big = codec.encode(codec.Publish("big", b"x" * 2000))
        connack, disconnect = _raw(b.port, codec.encode(codec.Connect("big", keepalive=0)), big)
        assert connack.props.get(PropId.MAXIMUM_PACKET_SIZE) == 1024 and disconnect.reason == 0x95
    finally:
        b.stop()


def test_the_child_process_prints_one_line_and_exits_0_on_sigterm(tmp_path):
    proc = EmbeddedBrokerProcess(tmp_path / "broker").start()
    c = Client(proc.port)
    c.subscribe("t")
    c.publish("t", b"1")
    assert c.get()[0].payload == b"1"
    child = proc.proc
    proc.stop(signal.SIGTERM)
    assert child.returncode == 0 and c.event("disconnect")[1] == 0x8B  # Server shutting down
    c.close()
    assert proc.log() == ""


def test_the_child_process_says_why_it_cannot_listen(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="exited with 1"):
            EmbeddedBrokerProcess(tmp_path, port=taken.getsockname()[1]).start()
    assert "cannot listen on 127.0.0.1:" in (tmp_path / "embedded-broker.log").read_text()


# Our stack on it --------------------------------------------------------------------------------

def test_agent_and_hub_sync_sales_through_the_embedded_broker(make_agent, tmp_path: Path):
    broker = EmbeddedBrokerProcess(tmp_path / "broker").start()
    db_url = f"sqlite:///{tmp_path}/hub.db"
    hub = HubProcess(broker.url, db_url, tmp_path / "hub.log").start()
    agent = make_agent(config=config_dict(free_port(), hub_url=broker.url))
    agent.import_catalog()
    agent.start()
    try:
        sale = {"lines": [{"code": "TOTE01", "qty": 1}], "payment": {"method": "cash"}}
        with agent.client("kiosk") as c:
            seqs = [c.post("/v1/sales", json={**sale, "client_sale_id": str(uuid.uuid4())}).json()["seq"]
                    for _ in range(3)]
        _wait_outbox_empty(agent)
        hub.kill()  # the hub's persistent session keeps its share of what comes meanwhile
        with agent.client("kiosk") as c:
            seqs += [c.post("/v1/sales", json={**sale, "client_sale_id": str(uuid.uuid4())}).json()["seq"]
                     for _ in range(2)]
        hub.start()
        _wait_outbox_empty(agent)
        db = open_db(db_url)
        # One run of the store's database: one stream, seq 1..5 in it.
        assert sorted(db.event_ids("store-test", db.store("store-test").stream)) == seqs == [1, 2, 3, 4, 5]
        assert db.status_health("store-test")["status"] == "online"
        db.close()
    finally:
        hub.close()
        broker.stop()


def _wait_outbox_empty(agent, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    with agent.client() as c:
        while (h := c.get("/v1/health").json())["outbox_depth"] or h["hub"] != "online":
            assert time.monotonic() < deadline, h
            time.sleep(0.05)  # polling the agent's API for a condition, not a synchronisation sleep
