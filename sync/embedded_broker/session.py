"""Session state (MQTT 5 section 4.1): subscriptions, the queue of messages
waiting for the client, QoS 1 messages in flight, QoS 2 packet ids awaiting
PUBREL. In memory only: a broker restart forgets every session.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from sync.embedded_broker.codec import SubOptions, Will
from sync.embedded_broker.properties import Properties

log = logging.getLogger("sync.embedded_broker")

NEVER_EXPIRES = 0xFFFF_FFFF  # Session Expiry Interval meaning "does not expire" (3.1.2.11.2)


@dataclass(frozen=True, slots=True)
class Message:
    """An Application Message as the broker holds it: what subscribers get, minus per-subscriber fields."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    # Forwarded unaltered (3.3.2.3): payload format, content type, response topic,
    # correlation data, user properties. Never a Topic Alias or Subscription Identifier.
    props: Properties = field(default_factory=Properties)
    origin: str = ""  # the publisher's client id, for No Local (3.8.3.1)
    expires_at: float | None = None  # loop time; from the Message Expiry Interval (3.3.2.3.3)

    def expired(self, now: float) -> bool:
        """Whether the Message Expiry Interval has passed."""
        return self.expires_at is not None and now >= self.expires_at

    def remaining(self, now: float) -> int | None:
        """The expiry interval to send on: the received value minus the time spent waiting (3.3.2.3.3)."""
        return None if self.expires_at is None else max(0, int(self.expires_at - now + 0.999))


@dataclass(slots=True)
class Delivery:
    """One message on its way to one session."""

    msg: Message
    qos: int
    retain: bool
    sub_ids: tuple[int, ...] = ()
    share: tuple[str, str] | None = None  # (group, filter) when it came by a shared subscription
    packet_id: int = 0


@dataclass(slots=True)
class Subscription:
    """One subscription of a session; ``share`` is the group of a ``$share/{group}/...`` one."""

    filter: str
    options: SubOptions
    sub_id: int | None = None
    share: str | None = None


class Link(Protocol):
    """What a session needs of the connection it is attached to."""

    def wake(self) -> None:
        """There is something new in the session's queue."""


class Session:
    """The broker's state for one client id (4.1): lives on across connections until it expires."""

    def __init__(self, client_id: str, expiry: int, max_queued: int):
        self.client_id = client_id
        self.expiry = expiry
        self.max_queued = max_queued
        self.subs: dict[str, Subscription] = {}  # by the filter as subscribed, $share/ prefix included
        self.pending: deque[Delivery] = deque()
        self.inflight: dict[int, Delivery] = {}  # sent at QoS 1, no PUBACK yet; in send order
        self.awaiting_rel: set[int] = set()  # QoS 2 received, no PUBREL yet (4.3.3)
        self.link: Link | None = None
        self.dropped = 0
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.will: Will | None = None  # a Will whose Will Delay Interval is running (3.1.3.2.2)
        self.will_timer: asyncio.TimerHandle | None = None
        self._next_id = 0

    @property
    def online(self) -> bool:
        """Whether a network connection is attached."""
        return self.link is not None

    def deliver(self, d: Delivery) -> None:
        """Queue a message for the client; QoS 0 is dropped while it is away (4.1: optional to keep)."""
        if d.qos == 0 and self.link is None:
            return
        if len(self.pending) >= self.max_queued:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("session %s: %d messages queued, the limit; dropped the oldest (%d so far)",
                            self.client_id, self.max_queued, self.dropped)
        self.pending.append(d)
        if self.link is not None:
            self.link.wake()

    def next_packet_id(self) -> int:
        """A Packet Identifier not in use by a QoS 1 message in flight (2.2.1)."""
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
        raise RuntimeError("all 65,535 packet identifiers are in flight")

    def cancel_timers(self) -> None:
        """Stop the expiry and delayed-Will clocks (a client came back, or the session ends)."""
        for timer in (self.expiry_timer, self.will_timer):
            if timer is not None:
                timer.cancel()
        self.expiry_timer = self.will_timer = None


class ShareGroup:
    """The sessions sharing one ``$share/{group}/{filter}``: round robin, online members first (4.8.2)."""

    def __init__(self) -> None:
        self.members: list[str] = []
        self._next = 0

    def pick(self, sessions: dict[str, Session]) -> Session | None:
        """The next online member; if none is online, the next member anyway (its session queues)."""
        n = len(self.members)
        if not n:
            return None
        fallback = None
        for i in range(n):
            idx = (self._next + i) % n
            s = sessions.get(self.members[idx])
            if s is None:
                continue
            if s.online:
                self._next = idx + 1
                return s
            fallback = fallback or (idx, s)
        if fallback is None:
            return None
        self._next = fallback[0] + 1
        return fallback[1]

