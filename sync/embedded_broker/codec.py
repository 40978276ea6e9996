"""MQTT 5.0 and 3.1.1 control packets: bytes to dataclasses and back; pure, no I/O.

``decode(header, body, version)`` parses one packet whose fixed header byte
and body (the Remaining Length bytes) the transport has read;
``encode(packet, version)`` builds one with its fixed header. ``version`` is
4 (3.1.1) or 5; CONNECT carries its own. Anything malformed raises
ProtocolError with the MQTT 5 reason code to answer with (section 2.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sync.embedded_broker.properties import (
    WILL,
    PacketType,
    Properties,
    ProtocolError,
    Reader,
    encode_binary,
    encode_properties,
    encode_utf8,
    encode_varint,
    decode_properties,
)

__all__ = ["ProtocolError", "PacketType", "Properties", "UnsupportedProtocol", "decode", "encode", "split_header"]

MQTT311, MQTT5 = 4, 5
MAX_REMAINING_LENGTH = 268_435_455  # four varint bytes, 1.5.5


class UnsupportedProtocol(ProtocolError):
    """A CONNECT for a protocol other than MQTT 3.1.1 or 5.0 (3.1.2.1, 3.1.2.2); ``level`` is what it asked."""

    def __init__(self, message: str, level: int):
        super().__init__(message, 0x84)
        self.level = level


@dataclass
class Will:
    """The Will Message of a CONNECT (3.1.2.5, 3.1.3.2-3.1.3.4)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    props: Properties = field(default_factory=Properties)


@dataclass
class Connect:
    """CONNECT, section 3.1."""

    client_id: str
    version: int = MQTT5
    clean_start: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    props: Properties = field(default_factory=Properties)


@dataclass
class Connack:
    """CONNACK, section 3.2 (``reason`` is the 3.1.1 return code for version 4)."""

    reason: int = 0
    session_present: bool = False
    props: Properties = field(default_factory=Properties)


@dataclass
class Publish:
    """PUBLISH, section 3.3."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    props: Properties = field(default_factory=Properties)


@dataclass
class Ack:
    """PUBACK, PUBREC, PUBREL or PUBCOMP (sections 3.4-3.7): one shape, ``kind`` tells which."""

    kind: PacketType
    packet_id: int
    reason: int = 0
    props: Properties = field(default_factory=Properties)


@dataclass(frozen=True)
class SubOptions:
    """Subscription Options, section 3.8.3.1."""

    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass
class Subscribe:
    """SUBSCRIBE, section 3.8."""

    packet_id: int
    topics: list[tuple[str, SubOptions]]
    props: Properties = field(default_factory=Properties)


@dataclass
class Suback:
    """SUBACK, section 3.9: one reason code (granted QoS or failure) per filter."""

    packet_id: int
    reasons: list[int]
    props: Properties = field(default_factory=Properties)


@dataclass
class Unsubscribe:
    """UNSUBSCRIBE, section 3.10."""

    packet_id: int
    topics: list[str]
    props: Properties = field(default_factory=Properties)


@dataclass
class Unsuback:
    """UNSUBACK, section 3.11 (3.1.1 has no reason codes)."""

    packet_id: int
    reasons: list[int] = field(default_factory=list)
    props: Properties = field(default_factory=Properties)


@dataclass
class PingReq:
    """PINGREQ, section 3.12."""


@dataclass
class PingResp:
    """PINGRESP, section 3.13."""


@dataclass
class Disconnect:
    """DISCONNECT, section 3.14 (3.1.1 has no reason code)."""

    reason: int = 0
    props: Properties = field(default_factory=Properties)


@dataclass
class Auth:
    """AUTH, section 3.15 (decoded so that it can be refused; no enhanced authentication)."""

    reason: int = 0
    props: Properties = field(default_factory=Properties)


Packet = Connect | Connack | Publish | Ack | Subscribe | Suback | Unsubscribe | Unsuback | PingReq | PingResp \
    | Disconnect | Auth

# Fixed header flags that are not PUBLISH's: reserved values, section 2.1.3.
_FLAGS = {PacketType.PUBREL: 2, PacketType.SUBSCRIBE: 2, PacketType.UNSUBSCRIBE: 2}


def split_header(data: bytes | bytearray) -> tuple[int, int, int] | None:
    """(first byte, remaining length, header length) of a buffer's first packet; None if incomplete (2.1.1)."""
    if not data:
        return None
    length = 0
    for i in range(1, 5):
        if i >= len(data):
            return None
        length += (data[i] & 0x7F) << (7 * (i - 1))
        if not data[i] & 0x80:
            return data[0], length, i + 1
    raise ProtocolError("Remaining Length longer than four bytes")


def _packet_type(first: int) -> PacketType:
    try:
        kind = PacketType(first >> 4)
    except ValueError:
        raise ProtocolError("packet type 0 is reserved") from None
    if kind is not PacketType.PUBLISH and first & 0x0F != _FLAGS.get(kind, 0):
        raise ProtocolError(f"{kind.name} with reserved flags 0x{first & 0x0F:x}")
    return kind


def decode(first: int, body: bytes, version: int = MQTT5) -> Packet:
    """The packet with fixed header byte ``first`` and Remaining Length bytes ``body``."""
    kind = _packet_type(first)
    r = Reader(body)
    if kind is PacketType.CONNECT:
        packet: Packet = _decode_connect(r)
    elif kind is PacketType.PUBLISH:
        packet = _decode_publish(first, r, version)
    elif kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        packet = Ack(kind, _packet_id(r))
        if version == MQTT5 and r.left():  # 3.4.2.1: no reason code means 0x00
            packet.reason = r.u8()
            packet.props = decode_properties(r, kind) if r.left() else Properties()
    elif kind is PacketType.SUBSCRIBE:
        packet = _decode_subscribe(r, version)
    elif kind is PacketType.UNSUBSCRIBE:
        packet = Unsubscribe(_packet_id(r), [])
        packet.props = decode_properties(r, kind) if version == MQTT5 else Properties()
        while r.left():
            packet.topics.append(r.utf8())
        if not packet.topics:
            raise ProtocolError("UNSUBSCRIBE without a topic filter", 0x82)  # 3.10.3-2
    elif kind is PacketType.PINGREQ:
        packet = PingReq()
    elif kind is PacketType.PINGRESP:
        packet = PingResp()
    elif kind in (PacketType.DISCONNECT, PacketType.AUTH):
        cls = Disconnect if kind is PacketType.DISCONNECT else Auth
        packet = cls()
        if version == MQTT5 and r.left():  # 3.14.2.1: no reason code means 0x00
            packet.reason = r.u8()
            packet.props = decode_properties(r, kind) if r.left() else Properties()
    elif kind is PacketType.CONNACK:
        packet = _decode_connack(r, version)
    elif kind is PacketType.SUBACK:
        packet = Suback(_packet_id(r), [])
        packet.props = decode_properties(r, kind) if version == MQTT5 else Properties()
        packet.reasons = list(r.take(r.left()))
    else:  # UNSUBACK
        packet = Unsuback(_packet_id(r))
        if version == MQTT5:
            packet.props = decode_properties(r, kind)
            packet.reasons = list(r.take(r.left()))
    if r.left():
        raise ProtocolError(f"{kind.name} has {r.left()} bytes more than its contents")
    return packet


def _packet_id(r: Reader) -> int:
    pid = r.u16()
    if pid == 0:
        raise ProtocolError("Packet Identifier 0", 0x82)  # 2.2.1: non-zero
    return pid


def _decode_connect(r: Reader) -> Connect:
    name = r.utf8()
    level = r.u8()
    if (name, level) not in (("MQTT", MQTT311), ("MQTT", MQTT5)):
        # Answered with CONNACK 0x84 (3.1.1: return code 0x01), then closed.
        raise UnsupportedProtocol(f"unsupported protocol {name!r} level {level}", level)
    flags = r.u8()
    if flags & 0x01:
        raise ProtocolError("CONNECT reserved flag set")  # 3.1.2-3
    will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
    has_password, has_username = bool(flags & 0x40), bool(flags & 0x80)
    if will_qos == 3 or (not will_flag and (will_qos or will_retain)):
        raise ProtocolError("bad Will QoS or Will Retain flags")  # 3.1.2-11..13
    if level == MQTT311 and has_password and not has_username:
        raise ProtocolError("password without a user name")  # 3.1.1: 3.1.2-22
    c = Connect(client_id="", version=level, clean_start=bool(flags & 0x02), keepalive=r.u16())
    if level == MQTT5:
        c.props = decode_properties(r, PacketType.CONNECT)
    c.client_id = r.utf8()
    if will_flag:
        will_props = decode_properties(r, WILL) if level == MQTT5 else Properties()
        topic = r.utf8()
        c.will = Will(topic, r.binary(), will_qos, will_retain, will_props)
    if has_username:
        c.username = r.utf8()
    if has_password:
        c.password = r.binary()
    return c


def _decode_connack(r: Reader, version: int) -> Connack:
    flags = r.u8()
    if flags & 0xFE:
        raise ProtocolError("CONNACK reserved flags set")
    c = Connack(reason=r.u8(), session_present=bool(flags & 1))
    if version == MQTT5:
        c.props = decode_properties(r, PacketType.CONNACK)
    return c


def _decode_publish(first: int, r: Reader, version: int) -> Publish:
    qos, dup, retain = (first >> 1) & 0x03, bool(first & 0x08), bool(first & 0x01)
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")  # 3.3.1-4
    if dup and qos == 0:
        raise ProtocolError("PUBLISH with DUP set at QoS 0", 0x82)  # 3.3.1-2
    p = Publish(topic=r.utf8(), qos=qos, retain=retain, dup=dup)
    if qos:
        p.packet_id = _packet_id(r)
    if version == MQTT5:
        p.props = decode_properties(r, PacketType.PUBLISH)
    p.payload = r.take(r.left())
    return p


def _decode_subscribe(r: Reader, version: int) -> Subscribe:
    s = Subscribe(_packet_id(r), [])
    if version == MQTT5:
        s.props = decode_properties(r, PacketType.SUBSCRIBE)
    while r.left():
        topic, opts = r.utf8(), r.u8()
        reserved = 0xC0 if version == MQTT5 else 0xFC  # 3.8.3.1 / 3.1.1 3.8.3-4
        if opts & reserved or opts & 0x03 == 3 or (opts >> 4) & 0x03 == 3:
            raise ProtocolError(f"bad subscription options 0x{opts:02x} for {topic!r}")
        s.topics.append((topic, SubOptions(opts & 0x03, bool(opts & 0x04), bool(opts & 0x08), (opts >> 4) & 0x03)))
    if not s.topics:
        raise ProtocolError("SUBSCRIBE without a topic filter", 0x82)  # 3.8.3-2
    return s


def _frame(first: int, body: bytes) -> bytes:
    if len(body) > MAX_REMAINING_LENGTH:
        raise ValueError("packet longer than MQTT allows")
    return bytes((first,)) + encode_varint(len(body)) + body


def _props(version: int, props: Properties) -> bytes:
    return encode_properties(props) if version == MQTT5 else b""


def encode(p: Packet, version: int = MQTT5) -> bytes:
    """The packet's bytes, fixed header included, in the given protocol version."""
    if isinstance(p, Publish):
        first = (PacketType.PUBLISH << 4) | (p.dup << 3) | (p.qos << 1) | int(p.retain)
        pid = struct.pack("!H", p.packet_id) if p.qos else b""
        return _frame(first, encode_utf8(p.topic) + pid + _props(version, p.props) + p.payload)
    if isinstance(p, Ack):
        first = (p.kind << 4) | _FLAGS.get(p.kind, 0)
        body = struct.pack("!H", p.packet_id)
        if version == MQTT5 and (p.reason or p.props):  # 3.4.2.1: both may be left out
            body += bytes((p.reason,)) + (encode_properties(p.props) if p.props else b"")
        return _frame(first, body)
    if isinstance(p, Connack):
        return _frame(0x20, bytes((int(p.session_present), p.reason)) + _props(version, p.props))
    if isinstance(p, Suback):
        return _frame(0x90, struct.pack("!H", p.packet_id) + _props(version, p.props) + bytes(p.reasons))
    if isinstance(p, Unsuback):
        tail = _props(version, p.props) + bytes(p.reasons) if version == MQTT5 else b""
        return _frame(0xB0, struct.pack("!H", p.packet_id) + tail)
    if isinstance(p, PingReq):
        return b"\xc0\x00"
    if isinstance(p, PingResp):
        return b"\xd0\x00"
    if isinstance(p, (Disconnect, Auth)):
        first = 0xE0 if isinstance(p, Disconnect) else 0xF0
        if version != MQTT5 or (not p.reason and not p.props):
            return _frame(first, b"")
        return _frame(first, bytes((p.reason,)) + encode_properties(p.props))
    if isinstance(p, Subscribe):
        body = struct.pack("!H", p.packet_id) + _props(version, p.props)
        for topic, o in p.topics:
            opts = o.qos | (o.no_local << 2) | (o.retain_as_published << 3) | (o.retain_handling << 4)
            body += encode_utf8(topic) + bytes((opts,))
        return _frame(0x82, body)
    if isinstance(p, Unsubscribe):
        body = struct.pack("!H", p.packet_id) + _props(version, p.props)
        return _frame(0xA2, body + b"".join(encode_utf8(t) for t in p.topics))
    return _encode_connect(p)


def _encode_connect(c: Connect) -> bytes:
    w = c.will
    flags = (0x02 if c.clean_start else 0) | (0x80 if c.username is not None else 0) \
        | (0x40 if c.password is not None else 0)
    if w is not None:
        flags |= 0x04 | (w.qos << 3) | (0x20 if w.retain else 0)
    body = encode_utf8("MQTT") + bytes((c.version, flags)) + struct.pack("!H", c.keepalive)
    body += _props(c.version, c.props) + encode_utf8(c.client_id)
    if w is not None:
        body += _props(c.version, w.props) + encode_utf8(w.topic) + encode_binary(w.payload)
    if c.username is not None:
        body += encode_utf8(c.username)
    if c.password is not None:
        body += encode_binary(c.password)
    return _frame(0x10, body)
