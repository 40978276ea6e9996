"""One client's network connection: CONNECT, the packet loop, the send loop,
and how it ends (MQTT 5 sections 3.1-3.14, 4.13)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from sync.embedded_broker import codec
from sync.embedded_broker.codec import MQTT5, Ack, Connack, Connect, Disconnect, PacketType, Publish, Will
from sync.embedded_broker.matching import valid_filter, valid_topic_name
from sync.embedded_broker.properties import Properties, PropId, ProtocolError
from sync.embedded_broker.router import Router, make_message
from sync.embedded_broker.session import NEVER_EXPIRES, Delivery, Session

log = logging.getLogger("sync.embedded_broker")

# Reason codes used here (section 2.4).
SUCCESS, DISCONNECT_WITH_WILL, NO_SUBSCRIPTION_EXISTED = 0x00, 0x04, 0x11
UNSPECIFIED, PROTOCOL_ERROR, BAD_AUTH_METHOD = 0x80, 0x82, 0x8C
SERVER_SHUTTING_DOWN, KEEP_ALIVE_TIMEOUT, SESSION_TAKEN_OVER = 0x8B, 0x8D, 0x8E
TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID, PACKET_ID_NOT_FOUND = 0x8F, 0x90, 0x92
TOPIC_ALIAS_INVALID, PACKET_TOO_LARGE = 0x94, 0x95
_HIGH_WATER = 1 << 20  # bytes buffered for a slow reader before we wait for it to drain


@dataclass(frozen=True)
class Settings:
    """Broker limits; the defaults suit the demo store."""

    # 16 MiB: the hub takes batches up to 4 MiB (sync/hub/ingest.py), the agent sends 256 KiB.
    max_packet_size: int = 16 * 1024 * 1024
    max_queued: int = 100_000  # per session; the oldest is dropped beyond it
    receive_maximum: int = 65535  # QoS 1/2 PUBLISHes a client may have unacknowledged towards us
    inflight_v311: int = 1000  # QoS 1 messages in flight to a 3.1.1 client (it has no Receive Maximum)
    connect_timeout: float = 10.0  # a socket that sends no CONNECT by then is closed


class Connection:
    """Reads and answers one client's packets; attached to its session while connected."""

    def __init__(self, router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 settings: Settings):
        self.router, self.reader, self.writer, self.settings = router, reader, writer, settings
        self.peer = writer.get_extra_info("peername")
        self.version = MQTT5
        self.session: Session | None = None
        self.will: Will | None = None
        self.window = settings.receive_maximum
        self.client_max_packet = settings.max_packet_size
        self._connect_expiry = 0
        self._wake = asyncio.Event()
        self._out: list[bytes] = []  # packets to send with the next write
        self._sender: asyncio.Task | None = None
        self._connected = False  # CONNECT accepted
        self._closed = False

    # Life cycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends."""
        clean = False
        buf = bytearray()
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self.settings.connect_timeout  # CONNECT must come by then
        keepalive: float | None = None
        try:
            while not self._closed:
                # Read what has arrived, answer every complete packet in it, then send the
                # answers in one write: a burst of PUBLISHes costs one send for its PUBACKs.
                if self._connected:
                    deadline = None if keepalive is None else loop.time() + keepalive
                async with asyncio.timeout_at(deadline):
                    chunk = await self.reader.read(1 << 16)
                if not chunk or self._closed:
                    break  # closed without DISCONNECT (the Will goes out), or closed by us
                buf += chunk
                while not self._closed and (packet := self._next_packet(buf)) is not None:
                    if not self._connected:
                        if not isinstance(packet, Connect) or not self._accept(packet):
                            return
                        keepalive = packet.keepalive * 1.5 if packet.keepalive else None  # 3.1.2.10
                    elif isinstance(packet, Disconnect):
                        clean = self._on_disconnect(packet)
                        return
                    else:
                        self._handle(packet)
                self._flush_out()
                if self.writer.transport.get_write_buffer_size() > _HIGH_WATER:
                    await self.writer.drain()  # a client that does not read stops being read
        except ProtocolError as err:
            self._refuse(err)
        except TimeoutError:
            log.info("%s: %s; closing", self._who(), "no packet within 1.5 x keep alive" if self._connected
                     else "no CONNECT in time")
            self._send_disconnect(KEEP_ALIVE_TIMEOUT)
        except (ConnectionError, OSError):
            pass  # the client went away without DISCONNECT: its Will goes out
        finally:
            self._close(publish_will=not clean)

    def _next_packet(self, buf: bytearray) -> codec.Packet | None:
        """Take the first complete packet off ``buf`` (2.1.1); None until one is complete."""
        if not self._connected and buf and buf[0] != PacketType.CONNECT << 4:
            raise ProtocolError(f"first packet is 0x{buf[0]:02x}, not CONNECT")  # 3.1.0-1: close at once
        header = codec.split_header(buf)
        if header is None:
            return None
        first, length, size = header
        if length + size > self.settings.max_packet_size:
            raise ProtocolError(f"packet of {length} bytes is over the {self.settings.max_packet_size} limit",
                                PACKET_TOO_LARGE)
        if len(buf) < size + length:
            return None
        body = bytes(buf[size:size + length])
        del buf[:size + length]
        return codec.decode(first, body, self.version)

    def _close(self, publish_will: bool) -> None:
        if self._closed:
            return
        self._flush_out()
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
        session, self.session = self.session, None
        if session is not None and session.link is self:
            self.router.detach(session, self.will if publish_will else None)
        self.writer.close()

    def kick(self, reason: int, publish_will: bool) -> None:
        """Close from the server's side: a session takeover (3.1.4-3) or shutdown (4.13)."""
        self._send_disconnect(reason)
        self._close(publish_will)

    def wake(self) -> None:
        """The session has something new to send."""
        self._wake.set()

    def _who(self) -> str:
        return f"client {self.session.client_id}" if self.session else f"{self.peer}"

    # CONNECT ---------------------------------------------------------------------------------

    def _accept(self, c: Connect) -> bool:
        self.version = c.version
        v5 = c.version == MQTT5
        client_id, assigned = c.client_id, False
        if not client_id:
            if not v5 and not c.clean_start:
                return self._connack(0x02)  # 3.1.1: Identifier rejected (3.1.3-8)
            client_id, assigned = f"auto-{uuid.uuid4()}", True  # 3.1.3-6
        if c.props.get(PropId.AUTHENTICATION_METHOD) is not None:
            return self._connack(BAD_AUTH_METHOD)  # no enhanced authentication (4.12)
        if c.will is not None and not valid_topic_name(c.will.topic):
            # 3.1.1 has no return code for it: the connection is just closed.
            return self._connack(TOPIC_NAME_INVALID) if v5 else False
        if v5:
            expiry = c.props.get(PropId.SESSION_EXPIRY_INTERVAL, 0)
            self.window = c.props.get(PropId.RECEIVE_MAXIMUM, 65535)
            self.client_max_packet = min(self.client_max_packet, c.props.get(PropId.MAXIMUM_PACKET_SIZE, 1 << 32))
        else:
            expiry = 0 if c.clean_start else NEVER_EXPIRES  # 3.1.1 Clean Session 0: a session kept for good
            self.window = self.settings.inflight_v311
        old = self.router.sessions.get(client_id)
        if old is not None and isinstance(old.link, Connection):
            # 3.1.4-3: DISCONNECT 0x8E to the connected client and close it. Its Will goes out
            # unless a Will Delay Interval runs and the session lives on (3.1.3.2.2).
            delay = old.link.will.props.get(PropId.WILL_DELAY_INTERVAL, 0) if old.link.will else 0
            log.info("client %s connected again from %s; closing its old connection", client_id, self.peer)
            old.link.kick(SESSION_TAKEN_OVER, publish_will=delay == 0 or c.clean_start)
        self._connect_expiry = expiry
        session, present = self.router.open_session(client_id, c.clean_start, expiry)
        session.link = self
        self.session, self.will, self._connected = session, c.will, True
        props = Properties()
        if v5:
            props.values = {
                PropId.RECEIVE_MAXIMUM: self.settings.receive_maximum,
                PropId.RETAIN_AVAILABLE: 1,
                PropId.MAXIMUM_PACKET_SIZE: self.settings.max_packet_size,
                PropId.TOPIC_ALIAS_MAXIMUM: 0,
                PropId.WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
                PropId.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 1,
                PropId.SHARED_SUBSCRIPTION_AVAILABLE: 1,
            }
            if assigned:
                props.values[PropId.ASSIGNED_CLIENT_IDENTIFIER] = client_id
        self._write(Connack(SUCCESS, present, props))
        log.debug("client %s connected from %s (MQTT %s, session %s)", client_id, self.peer,
                  "5" if v5 else "3.1.1", "resumed" if present else "new")
        self._sender = asyncio.create_task(self._send_loop(), name=f"mqtt-send-{client_id}")
        return True

    def _connack(self, reason: int) -> bool:
        """Refuse the connection (3.2.2.2); the 3.1.1 return codes are used as given."""
        self._write(Connack(reason))
        return False

    # Packets -------------------------------------------------------------------------------------

    def _handle(self, p: codec.Packet) -> None:
        session = self.session
        assert session is not None
        if isinstance(p, Publish):
            self._on_publish(session, p)
        elif isinstance(p, Ack) and p.kind is PacketType.PUBACK:
            if session.inflight.pop(p.packet_id, None) is not None:
                self._wake.set()  # a slot in the window is free
        elif isinstance(p, Ack) and p.kind is PacketType.PUBREL:
            # 4.3.3: forget the packet id, answer PUBCOMP (0x92 if we did not know it).
            known = p.packet_id in session.awaiting_rel
            session.awaiting_rel.discard(p.packet_id)
            self._write(Ack(PacketType.PUBCOMP, p.packet_id, SUCCESS if known else PACKET_ID_NOT_FOUND))
        elif isinstance(p, codec.Subscribe):
            self._on_subscribe(session, p)
        elif isinstance(p, codec.Unsubscribe):
            existed = [self.router.unsubscribe(session, t) for t in p.topics]
            reasons = [SUCCESS if e else NO_SUBSCRIPTION_EXISTED for e in existed]
            self._write(codec.Unsuback(p.packet_id, reasons if self.version == MQTT5 else []))
        elif isinstance(p, codec.PingReq):
            self._write(codec.PingResp())
        else:
            # A second CONNECT (3.1.0-2), AUTH without an authentication method (4.12),
            # PUBREC/PUBCOMP for QoS 2 we never send, or a server-to-client packet.
            raise ProtocolError(f"unexpected {type(p).__name__} from a client", PROTOCOL_ERROR)

    def _on_publish(self, session: Session, p: Publish) -> None:
        if p.props.get(PropId.TOPIC_ALIAS) is not None:
            raise ProtocolError("Topic Alias used, but Topic Alias Maximum is 0", TOPIC_ALIAS_INVALID)  # 3.3.2.3.4
        if not valid_topic_name(p.topic):
            raise ProtocolError(f"PUBLISH to {p.topic!r}, not a valid topic name", TOPIC_NAME_INVALID)  # 3.3.2-2
        response = p.props.get(PropId.RESPONSE_TOPIC)
        if response is not None and not valid_topic_name(response):
            raise ProtocolError("Response Topic has wildcards", PROTOCOL_ERROR)  # 3.3.2-14
        if p.props.subscription_ids:
            raise ProtocolError("a client may not send a Subscription Identifier", PROTOCOL_ERROR)  # 3.3.4-6
        if p.qos == 2:
            # 4.3.3 method B: route on the first PUBLISH, ignore re-sends until PUBREL.
            if p.packet_id not in session.awaiting_rel:
                session.awaiting_rel.add(p.packet_id)
                self.router.publish(make_message(p.topic, p.payload, 2, p.retain, p.props, session.client_id))
            self._write(Ack(PacketType.PUBREC, p.packet_id))
            return
        self.router.publish(make_message(p.topic, p.payload, p.qos, p.retain, p.props, session.client_id))
        if p.qos == 1:
            self._write(Ack(PacketType.PUBACK, p.packet_id))

    def _on_subscribe(self, session: Session, p: codec.Subscribe) -> None:
        v5 = self.version == MQTT5
        sub_id = p.props.get(PropId.SUBSCRIPTION_IDENTIFIER)
        reasons: list[int] = []
        retained: list[Delivery] = []
        for flt, opts in p.topics:
            shared = flt.startswith("$share/")
            if shared and opts.no_local:
                raise ProtocolError(f"No Local on shared subscription {flt!r}", PROTOCOL_ERROR)  # 3.8.3-4
            granted = min(opts.qos, 1)  # we deliver at QoS 0 or 1 (3.8.4: a lower QoS may be granted)
            try:
                if not shared and not valid_filter(flt):
                    raise ValueError(flt)
                existed = self.router.subscribe(session, flt, codec.SubOptions(
                    granted, opts.no_local, opts.retain_as_published, opts.retain_handling), sub_id)
            except ValueError:
                reasons.append(TOPIC_FILTER_INVALID if v5 else 0x80)
                continue
            reasons.append(granted)
            # 3.8.3.1 Retain Handling; never for a shared subscription (4.8.2).
            if not shared and (opts.retain_handling == 0 or (opts.retain_handling == 1 and not existed)):
                ids = (sub_id,) if sub_id is not None else ()
                retained += [Delivery(m, min(m.qos, granted), True, ids) for m in self.router.retained_for(flt)]
        self._write(codec.Suback(p.packet_id, reasons))
        for d in retained:
            session.deliver(d)

    def _on_disconnect(self, p: Disconnect) -> bool:
        """A client's DISCONNECT (3.14.4); True when it discards the Will."""
        expiry = p.props.get(PropId.SESSION_EXPIRY_INTERVAL)
        if expiry is not None:
            if self._connect_expiry == 0 and expiry != 0:
                raise ProtocolError("Session Expiry Interval set on DISCONNECT after 0 on CONNECT",
                                    PROTOCOL_ERROR)  # 3.14.2.2.2
            if self.session is not None:
                self.session.expiry = expiry
        return p.reason != DISCONNECT_WITH_WILL

    def _refuse(self, err: ProtocolError) -> None:
        if isinstance(err, codec.UnsupportedProtocol):
            # 3.1.2.2: a 3.1.1-shaped CONNACK (return code 0x01) for levels below 5.
            self.version = MQTT5 if err.level > MQTT5 else 4
            self._connack(0x84 if self.version == MQTT5 else 0x01)
        elif self.session is not None:
            self._send_disconnect(err.reason, str(err))
        log.warning("%s: %s; closing the connection", self._who(), err)

    # Writing -----------------------------------------------------------------------------------

    def _write(self, packet: codec.Packet) -> None:
        self._out.append(codec.encode(packet, self.version))

    def _flush_out(self) -> None:
        if self._out and not self._closed:
            self.writer.write(b"".join(self._out))
        self._out.clear()

    def _send_disconnect(self, reason: int, text: str = "") -> None:
        if self.version == MQTT5 and self.session is not None:  # 3.1.1 has no server DISCONNECT
            props = Properties({PropId.REASON_STRING: text[:200]}) if text else Properties()
            self._write(Disconnect(reason, props))

    async def _send_loop(self) -> None:
        session = self.session
        assert session is not None
        # 4.4: unacknowledged QoS 1 messages go again, first, with DUP and their packet ids.
        self._out += [x for d in session.inflight.values() if (x := self._encode(d, dup=True)) is not None]
        self._flush_out()
        try:
            while not self._closed:
                self._wake.clear()
                self._flush(session)
                if self.writer.transport.get_write_buffer_size() > _HIGH_WATER:
                    await self.writer.drain()
                    continue
                await self._wake.wait()
        except (ConnectionError, OSError):
            pass  # the reading side sees the same and ends the connection

    def _flush(self, session: Session) -> None:
        """Send queued messages while the client's Receive Maximum allows (3.3.4, 4.9)."""
        now = time.monotonic()
        while session.pending:
            d = session.pending[0]
            if d.qos and len(session.inflight) >= self.window:
                break
            session.pending.popleft()
            if d.msg.expired(now):
                continue  # 3.3.2.3.3: not yet on its way, so it is dropped
            if d.qos:
                d.packet_id = session.next_packet_id()
                session.inflight[d.packet_id] = d
            data = self._encode(d, dup=False, now=now)
            if data is None:
                session.inflight.pop(d.packet_id, None)
                continue
            self._out.append(data)
        self._flush_out()

    def _encode(self, d: Delivery, dup: bool, now: float | None = None) -> bytes | None:
        msg = d.msg
        props = Properties()
        if self.version == MQTT5:
            props = Properties(dict(msg.props.values), msg.props.user, list(d.sub_ids))
            remaining = msg.remaining(time.monotonic() if now is None else now)
            if remaining is not None:
                props.values[PropId.MESSAGE_EXPIRY_INTERVAL] = remaining
        data = codec.encode(Publish(msg.topic, msg.payload, d.qos, d.retain, dup and d.qos > 0, d.packet_id, props),
                            self.version)
        if len(data) > self.client_max_packet:
            # 3.1.2-25: too big for the client: discarded as if sent.
            log.warning("%s: a %d-byte message on %s is over its Maximum Packet Size; dropped",
                        self._who(), len(data), msg.topic)
            return None
        return data
