"""The broker's shared state: sessions, subscriptions, retained messages, and
the routing of one message to every session that should get it. No sockets
here; connections call in (connection.py). Runs on one event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sync.embedded_broker.codec import SubOptions, Will
from sync.embedded_broker.matching import SHARE_PREFIX, matches, parse_shared
from sync.embedded_broker.properties import Properties, PropId
from sync.embedded_broker.session import NEVER_EXPIRES, Delivery, Message, Session, ShareGroup, Subscription

log = logging.getLogger("sync.embedded_broker")

# Application Message properties a subscriber receives as published (3.3.2.3; 3.1.3.2 for a Will).
_FORWARDED = (PropId.PAYLOAD_FORMAT_INDICATOR, PropId.CONTENT_TYPE, PropId.RESPONSE_TOPIC, PropId.CORRELATION_DATA)


def make_message(topic: str, payload: bytes, qos: int, retain: bool, props: Properties, origin: str) -> Message:
    """The broker's copy of a PUBLISH or a Will: forwarded properties kept, the expiry made a deadline."""
    kept = Properties({pid: props.values[pid] for pid in _FORWARDED if pid in props.values}, list(props.user))
    expiry = props.get(PropId.MESSAGE_EXPIRY_INTERVAL)
    expires_at = None if expiry is None else time.monotonic() + expiry
    return Message(topic, payload, qos, retain, kept, origin, expires_at)


class Router:
    """Sessions by client id, the subscription index, retained messages."""

    def __init__(self, max_queued: int = 100_000):
        self.max_queued = max_queued
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self._plain: dict[str, dict[str, Subscription]] = {}  # filter -> client id -> subscription
        self._shared: dict[tuple[str, str], ShareGroup] = {}  # (group, filter) -> members
        self.published = 0

    # Routing -----------------------------------------------------------------------

    def publish(self, msg: Message) -> None:
        """Store or clear a retained message (3.3.1.3) and hand ``msg`` to every matching session."""
        self.published += 1
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = msg
            else:
                self.retained.pop(msg.topic, None)  # an empty retained payload clears the topic
        # One copy per session, at the highest QoS of its matching subscriptions, carrying
        # every matching Subscription Identifier (3.3.4: overlapping subscriptions).
        targets: dict[str, tuple[int, bool, list[int]]] = {}
        for flt, subs in self._plain.items():
            if not matches(flt, msg.topic):
                continue
            for client_id, sub in subs.items():
                if sub.options.no_local and client_id == msg.origin:
                    continue  # 3.8.3.1: not back to its own publisher
                qos, rap, ids = targets.get(client_id, (0, False, []))
                if sub.sub_id is not None:
                    ids.append(sub.sub_id)
                targets[client_id] = (max(qos, sub.options.qos), rap or sub.options.retain_as_published, ids)
        for client_id, (qos, rap, ids) in targets.items():
            # Retain As Published 0: the RETAIN flag is cleared on forwarding (3.3.1.3).
            self.sessions[client_id].deliver(Delivery(msg, min(msg.qos, qos), msg.retain and rap, tuple(ids)))
        for (group, flt), members in self._shared.items():
            if matches(flt, msg.topic):
                self._to_group(msg, group, flt, members)

    def _to_group(self, msg: Message, group: str, flt: str, members: ShareGroup) -> None:
        session = members.pick(self.sessions)
        if session is None:
            return
        sub = session.subs[f"{SHARE_PREFIX}{group}/{flt}"]
        ids = (sub.sub_id,) if sub.sub_id is not None else ()
        retain = msg.retain and sub.options.retain_as_published
        session.deliver(Delivery(msg, min(msg.qos, sub.options.qos), retain, ids, (group, flt)))

    def retained_for(self, flt: str) -> list[Message]:
        """Retained messages matching ``flt``, for a new subscription (3.3.1.3); expired ones are dropped."""
        now = time.monotonic()
        for topic in [t for t, m in self.retained.items() if m.expired(now)]:
            del self.retained[topic]
        return [m for t, m in self.retained.items() if matches(flt, t)]

    # Subscriptions -------------------------------------------------------------------

    def subscribe(self, session: Session, full: str, options: SubOptions, sub_id: int | None) -> bool:
        """Add or replace a subscription (3.8.4); True if it existed. ValueError for a bad $share filter."""
        shared = parse_shared(full)
        existed = full in session.subs
        if shared is None:
            session.subs[full] = Subscription(full, options, sub_id)
            self._plain.setdefault(full, {})[session.client_id] = session.subs[full]
        else:
            group, flt = shared
            session.subs[full] = Subscription(flt, options, sub_id, group)
            members = self._shared.setdefault((group, flt), ShareGroup()).members
            if session.client_id not in members:
                members.append(session.client_id)
        return existed

    def unsubscribe(self, session: Session, full: str) -> bool:
        """Remove a subscription (3.10.4); False if there was none."""
        sub = session.subs.pop(full, None)
        if sub is None:
            return False
        if sub.share is None:
            subs = self._plain.get(sub.filter, {})
            subs.pop(session.client_id, None)
            if not subs:
                self._plain.pop(sub.filter, None)
        else:
            group = self._shared.get((sub.share, sub.filter))
            if group is not None and session.client_id in group.members:
                group.members.remove(session.client_id)
                if not group.members:
                    del self._shared[(sub.share, sub.filter)]
        return True

    # Session life cycle (4.1) ----------------------------------------------------------------

    def open_session(self, client_id: str, clean_start: bool, expiry: int) -> tuple[Session, bool]:
        """The session for a new connection and whether it was present (3.2.2.1.1)."""
        old = self.sessions.get(client_id)
        if old is not None and clean_start:
            self.end_session(old)
            old = None
        if old is not None:
            old.cancel_timers()
            old.will = None  # reconnected within the Will Delay Interval: no Will (3.1.3.2.2)
            old.expiry = expiry
            if old.dropped:
                log.warning("session %s: %d queued message(s) were dropped while it was away",
                            client_id, old.dropped)
                old.dropped = 0
            return old, True
        session = Session(client_id, expiry, self.max_queued)
        self.sessions[client_id] = session
        return session, False

    def detach(self, session: Session, will: Will | None) -> None:
        """The connection ended: publish or delay its Will (3.1.2.5), end or keep the session (3.1.2.11.2)."""
        session.link = None
        if will is not None:
            delay = will.props.get(PropId.WILL_DELAY_INTERVAL, 0)
            if delay == 0 or session.expiry == 0:
                self.publish_will(will, session.client_id)
            else:
                session.will = will
                session.will_timer = asyncio.get_running_loop().call_later(delay, self._delayed_will, session)
        if session.expiry == 0:
            self.end_session(session)
        elif session.expiry != NEVER_EXPIRES:
            session.expiry_timer = asyncio.get_running_loop().call_later(session.expiry, self._expire, session)

    def publish_will(self, will: Will, client_id: str) -> None:
        """Publish a Will Message as if its client had (3.1.2.5)."""
        self.publish(make_message(will.topic, will.payload, will.qos, will.retain, will.props, client_id))

    def _delayed_will(self, session: Session) -> None:
        session.will_timer = None
        if session.will is not None and not session.online:
            will, session.will = session.will, None
            self.publish_will(will, session.client_id)

    def _expire(self, session: Session) -> None:
        session.expiry_timer = None
        if not session.online and self.sessions.get(session.client_id) is session:
            log.info("session %s expired", session.client_id)
            self.end_session(session)

    def end_session(self, session: Session) -> None:
        """Forget a session; a delayed Will goes out now; shared messages go to another member (4.8.2)."""
        session.cancel_timers()
        if session.will is not None:
            will, session.will = session.will, None
            self.publish_will(will, session.client_id)
        for full in list(session.subs):
            self.unsubscribe(session, full)
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        leftovers = [d for d in (*session.inflight.values(), *session.pending) if d.share is not None]
        session.inflight.clear()
        session.pending.clear()
        for d in leftovers:
            group, flt = d.share  # type: ignore[misc]
            members = self._shared.get((group, flt))
            if members is not None:
                self._to_group(d.msg, group, flt, members)

    def close(self) -> None:
        """Stop every timer (the broker is stopping; nothing is kept)."""
        for session in self.sessions.values():
            session.cancel_timers()
        self.sessions.clear()
        self.retained.clear()
        self._plain.clear()
        self._shared.clear()
