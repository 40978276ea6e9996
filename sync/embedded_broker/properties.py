"""MQTT 5 properties (section 2.2.2): every identifier of table 2.2.2.2, its
data type and the packets it may appear in; pure, no I/O.

A property in a packet that does not allow it, a repeated property (other
than User Property, and Subscription Identifier in PUBLISH), or a value out
of range is a ProtocolError, as section 2.2.2.2 says.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class ProtocolError(Exception):
    """A malformed packet or a protocol violation; ``reason`` is the MQTT 5 reason code to answer with."""

    def __init__(self, message: str, reason: int = 0x81):
        super().__init__(message)
        self.reason = reason  # 0x81 Malformed Packet, 0x82 Protocol Error, ... (section 2.4)


class PacketType(IntEnum):
    """Control packet types, section 2.1.2."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


WILL = 0  # not a packet type: the Will Properties of a CONNECT payload (3.1.3.2)


class PropId(IntEnum):
    """Property identifiers, section 2.2.2.2."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class DataType(IntEnum):
    """Data representations, section 1.5."""

    BYTE = 1
    TWO_BYTE = 2
    FOUR_BYTE = 3
    VARINT = 4
    UTF8 = 5
    BINARY = 6
    UTF8_PAIR = 7


_P = PacketType
_ACKS = (_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP)
_MSG = (_P.PUBLISH, WILL)
# id: (type, packets that may carry it), straight from table 2.2.2.2.
SPEC: dict[PropId, tuple[DataType, tuple[int, ...]]] = {
    PropId.PAYLOAD_FORMAT_INDICATOR: (DataType.BYTE, _MSG),
    PropId.MESSAGE_EXPIRY_INTERVAL: (DataType.FOUR_BYTE, _MSG),
    PropId.CONTENT_TYPE: (DataType.UTF8, _MSG),
    PropId.RESPONSE_TOPIC: (DataType.UTF8, _MSG),
    PropId.CORRELATION_DATA: (DataType.BINARY, _MSG),
    PropId.SUBSCRIPTION_IDENTIFIER: (DataType.VARINT, (_P.PUBLISH, _P.SUBSCRIBE)),
    PropId.SESSION_EXPIRY_INTERVAL: (DataType.FOUR_BYTE, (_P.CONNECT, _P.CONNACK, _P.DISCONNECT)),
    PropId.ASSIGNED_CLIENT_IDENTIFIER: (DataType.UTF8, (_P.CONNACK,)),
    PropId.SERVER_KEEP_ALIVE: (DataType.TWO_BYTE, (_P.CONNACK,)),
    PropId.AUTHENTICATION_METHOD: (DataType.UTF8, (_P.CONNECT, _P.CONNACK, _P.AUTH)),
    PropId.AUTHENTICATION_DATA: (DataType.BINARY, (_P.CONNECT, _P.CONNACK, _P.AUTH)),
    PropId.REQUEST_PROBLEM_INFORMATION: (DataType.BYTE, (_P.CONNECT,)),
    PropId.WILL_DELAY_INTERVAL: (DataType.FOUR_BYTE, (WILL,)),
    PropId.REQUEST_RESPONSE_INFORMATION: (DataType.BYTE, (_P.CONNECT,)),
    PropId.RESPONSE_INFORMATION: (DataType.UTF8, (_P.CONNACK,)),
    PropId.SERVER_REFERENCE: (DataType.UTF8, (_P.CONNACK, _P.DISCONNECT)),
    PropId.REASON_STRING: (DataType.UTF8, (_P.CONNACK, *_ACKS, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH)),
    PropId.RECEIVE_MAXIMUM: (DataType.TWO_BYTE, (_P.CONNECT, _P.CONNACK)),
    PropId.TOPIC_ALIAS_MAXIMUM: (DataType.TWO_BYTE, (_P.CONNECT, _P.CONNACK)),
    PropId.TOPIC_ALIAS: (DataType.TWO_BYTE, (_P.PUBLISH,)),
    PropId.MAXIMUM_QOS: (DataType.BYTE, (_P.CONNACK,)),
    PropId.RETAIN_AVAILABLE: (DataType.BYTE, (_P.CONNACK,)),
    PropId.USER_PROPERTY: (DataType.UTF8_PAIR, (*_P, WILL)),
    PropId.MAXIMUM_PACKET_SIZE: (DataType.FOUR_BYTE, (_P.CONNECT, _P.CONNACK)),
    PropId.WILDCARD_SUBSCRIPTION_AVAILABLE: (DataType.BYTE, (_P.CONNACK,)),
    PropId.SUBSCRIPTION_IDENTIFIER_AVAILABLE: (DataType.BYTE, (_P.CONNACK,)),
    PropId.SHARED_SUBSCRIPTION_AVAILABLE: (DataType.BYTE, (_P.CONNACK,)),
}
# Byte properties that are booleans: any value but 0 or 1 is a Protocol Error (3.1.2.11, 3.2.2.3).
_BOOLEAN = {PropId.PAYLOAD_FORMAT_INDICATOR, PropId.REQUEST_PROBLEM_INFORMATION,
            PropId.REQUEST_RESPONSE_INFORMATION, PropId.RETAIN_AVAILABLE, PropId.MAXIMUM_QOS,
            PropId.WILDCARD_SUBSCRIPTION_AVAILABLE, PropId.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            PropId.SHARED_SUBSCRIPTION_AVAILABLE}
# A value of 0 is a Protocol Error for these (3.1.2.11.3, 3.1.2.11.4, 3.3.2.3.8).
_NONZERO = {PropId.RECEIVE_MAXIMUM, PropId.MAXIMUM_PACKET_SIZE, PropId.SUBSCRIPTION_IDENTIFIER,
            PropId.TOPIC_ALIAS}


@dataclass
class Properties:
    """The properties of one packet: single values by id, plus the repeatable ones as lists."""

    values: dict[PropId, Any] = field(default_factory=dict)
    user: list[tuple[str, str]] = field(default_factory=list)
    subscription_ids: list[int] = field(default_factory=list)

    def get(self, pid: PropId, default: Any = None) -> Any:
        """The value of ``pid``, or ``default`` when absent."""
        return self.values.get(pid, default)

    def __bool__(self) -> bool:
        return bool(self.values or self.user or self.subscription_ids)


def encode_varint(n: int) -> bytes:
    """Variable Byte Integer, section 1.5.5 (at most 268,435,455)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit a Variable Byte Integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_utf8(s: str) -> bytes:
    """UTF-8 Encoded String, section 1.5.4: two-byte length, then the bytes."""
    data = s.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65,535 bytes")
    return struct.pack("!H", len(data)) + data


def encode_binary(b: bytes) -> bytes:
    """Binary Data, section 1.5.6."""
    if len(b) > 0xFFFF:
        raise ValueError("binary data longer than 65,535 bytes")
    return struct.pack("!H", len(b)) + b


def _encode_value(dtype: DataType, value: Any) -> bytes:
    if dtype is DataType.BYTE:
        return bytes((value,))
    if dtype is DataType.TWO_BYTE:
        return struct.pack("!H", value)
    if dtype is DataType.FOUR_BYTE:
        return struct.pack("!I", value)
    if dtype is DataType.VARINT:
        return encode_varint(value)
    if dtype is DataType.UTF8:
        return encode_utf8(value)
    if dtype is DataType.BINARY:
        return encode_binary(value)
    return encode_utf8(value[0]) + encode_utf8(value[1])


def encode_properties(props: Properties | None) -> bytes:
    """Property Length (a varint) followed by the properties, section 2.2.2.1."""
    if not props:
        return b"\x00"
    body = bytearray()
    for pid, value in props.values.items():
        body += bytes((pid,)) + _encode_value(SPEC[pid][0], value)
    for sid in props.subscription_ids:
        body += bytes((PropId.SUBSCRIPTION_IDENTIFIER,)) + encode_varint(sid)
    for pair in props.user:
        body += bytes((PropId.USER_PROPERTY,)) + _encode_value(DataType.UTF8_PAIR, pair)
    return encode_varint(len(body)) + bytes(body)


class Reader:
    """A cursor over one packet's bytes; every read past the end is a Malformed Packet (1.5)."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def left(self) -> int:
        """Bytes not read yet."""
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        if n > self.left():
            raise ProtocolError("packet shorter than its contents say")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        """One Byte, 1.5.1."""
        return self.take(1)[0]

    def u16(self) -> int:
        """Two Byte Integer, big-endian, 1.5.2."""
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        """Four Byte Integer, big-endian, 1.5.3."""
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        """Variable Byte Integer, at most four bytes (1.5.5)."""
        value = 0
        for i in range(4):
            byte = self.u8()
            value += (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise ProtocolError("Variable Byte Integer longer than four bytes")

    def binary(self) -> bytes:
        """Binary Data, 1.5.6."""
        return self.take(self.u16())

    def utf8(self) -> str:
        """UTF-8 Encoded String, 1.5.4: well-formed (no surrogates) and without U+0000."""
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError(f"string is not well-formed UTF-8: {err.reason}") from err
        if "\x00" in text:
            raise ProtocolError("string contains U+0000")
        return text


def decode_properties(r: Reader, packet: int) -> Properties:
    """The properties at the reader's position, checked against table 2.2.2.2 for ``packet``."""
    length = r.varint()
    if length > r.left():
        raise ProtocolError("property length runs past the end of the packet")
    sub = Reader(r.data, r.pos, r.pos + length)
    r.pos += length
    props = Properties()
    while sub.left():
        raw_id = sub.varint()  # identifiers are varints, all of them one byte long today
        try:
            pid = PropId(raw_id)
        except ValueError:
            raise ProtocolError(f"unknown property identifier 0x{raw_id:02x}") from None
        dtype, allowed = SPEC[pid]
        if packet not in allowed:
            name = "Will" if packet == WILL else PacketType(packet).name
            raise ProtocolError(f"property {pid.name} is not allowed in {name}")
        value = _decode_value(sub, dtype)
        if pid in _BOOLEAN and value not in (0, 1):
            raise ProtocolError(f"property {pid.name} must be 0 or 1, not {value}", 0x82)
        if pid in _NONZERO and value == 0:
            raise ProtocolError(f"property {pid.name} must not be 0", 0x82)
        if pid is PropId.USER_PROPERTY:
            props.user.append(value)
        elif pid is PropId.SUBSCRIPTION_IDENTIFIER and packet == PacketType.PUBLISH:
            props.subscription_ids.append(value)
        elif pid in props.values:
            raise ProtocolError(f"property {pid.name} appears twice", 0x82)
        else:
            props.values[pid] = value
    return props


def _decode_value(r: Reader, dtype: DataType) -> Any:
    if dtype is DataType.BYTE:
        return r.u8()
    if dtype is DataType.TWO_BYTE:
        return r.u16()
    if dtype is DataType.FOUR_BYTE:
        return r.u32()
    if dtype is DataType.VARINT:
        return r.varint()
    if dtype is DataType.UTF8:
        return r.utf8()
    if dtype is DataType.BINARY:
        return r.binary()
    return (r.utf8(), r.utf8())
