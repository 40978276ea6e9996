"""The live feed behind ``WS /v1/events``: what associates, kiosks and consoles see.

One task copies feed events from the bus into a ring of the last ``size``
events and into each connected client's bounded queue. A client that
reconnects with the id of the last event it saw gets what it missed from the
ring (same ``epoch``, i.e. the same agent run, and not yet rotated out);
otherwise its hello says ``missed`` and it should reload what it shows.

A slow client never slows the agent: when its queue is full it is marked
lagging and its connection is closed, with the id to resume from.
``close_client`` closes a client's connections, its wristbands' too (a
paired device revoked): they end with 4401.

Personal data is masked by role (``ROLE_MASK``): the console sees member ids
only as their last four characters, and no pickup code of a scanned pickup
QR. Member cards themselves (``member.arrived``) reach associates and admins
only; they carry no phone number or name, which the hub never sends. Each
event that reaches a client with a member id unmasked is a read of that
member's data: ``Feed.on_read`` records it (edge_agent/privacy.py, the
access log, as ``feed:<event type>``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.bus import EventBus
from edge_agent.config import Role
from edge_core.bus import BusEvent, Consumer

# Bus event types that reach the feed: a name ending in "." is a prefix, any
# other an exact type ("scan" is not "scanner.scan", the driver's raw event).
FEED_PREFIXES = ("scan", "member.", "session.", "order.", "return.", "stock.low", "device.", "alert.",
                 "assist.requested", "assist.taken", "assist.closed")
# A kiosk's calls for help (edge_agent/assist.py): staff see them all, a kiosk its own station's.
ASSIST_EVENTS = ("assist.requested", "assist.taken", "assist.closed")


def matches(event_type: str, patterns: tuple[str, ...]) -> bool:
    """True if ``event_type`` is one of ``patterns`` or under one ending in '.'."""
    return any(event_type == p or (p.endswith(".") and event_type.startswith(p)) for p in patterns)

Visible = Callable[[BusEvent, str], bool]


def _own_station(event: BusEvent, client: str) -> bool:
    return event.data.get("station") == client


def _anything(event: BusEvent, client: str) -> bool:
    return True


# Which events each role sees. A kiosk sees only what happens at its own
# station (its scanner's scans, the member attached to its session, its
# session's basket, the end of its session, on which its screen resets, and
# its calls for help: who took them); staff and consoles see the whole store.
# The mirror has no feed.
ROLE_VIEW: dict[Role, tuple[tuple[str, ...], Visible]] = {
    Role.KIOSK: (("scan", "member.attached", "session.basket", "session.ended", *ASSIST_EVENTS), _own_station),
    Role.ASSOCIATE: (FEED_PREFIXES, _anything),
    Role.CONSOLE: (("scan", "order.", "stock.low", "device.", "alert."), _anything),
    Role.ADMIN: (FEED_PREFIXES, _anything),
}


SHOWN_LAST = 4  # a masked id shows its last four characters...
HIDDEN_AT_LEAST = 6  # ...only when at least six others stay hidden


def masked_id(value: Any) -> Any:
    """A member id as the console sees it: ``****`` and its last four characters, or ``****`` alone for a short id.

    The last four are shown only when at least ``HIDDEN_AT_LEAST`` characters stay hidden: ``M-1001``'s last
    four would be nearly all of it.
    """
    if not isinstance(value, str):
        return value
    return "****" + value[-SHOWN_LAST:] if len(value) - SHOWN_LAST >= HIDDEN_AT_LEAST else "****"


def _mask_personal(event: BusEvent) -> BusEvent:
    """The console's view: no member id in full, no pickup code."""
    data = event.data
    if not ("member_id" in data or event.type == "scan" and data.get("kind") in ("member", "pickup")):
        return event
    data = {**data}
    if "member_id" in data:
        data["member_id"] = masked_id(data["member_id"])
    if event.type == "scan" and data.get("kind") in ("member", "pickup"):
        fields = {**(data.get("fields") or {})}
        if "member_id" in fields:
            fields["member_id"] = masked_id(fields["member_id"])
        if "pickup_code" in fields:
            fields["pickup_code"] = "******"
        shown = fields.get("member_id") or fields.get("order_id")
        data.update(fields=fields, code=shown, raw=None)
    return dataclasses.replace(event, data=data)


# What each role's events look like; roles not listed see them as they are.
ROLE_MASK: dict[Role, Callable[[BusEvent], BusEvent]] = {
    Role.CONSOLE: _mask_personal,
}


def message(event: BusEvent) -> dict[str, Any]:
    """An event as the feed sends it."""
    return {"id": event.id, "type": event.type, "time": event.time.isoformat(), "data": event.data}


@dataclass
class Hello:
    """The first message of a connection: where the client stands."""

    epoch: str
    last_id: int
    resumed: bool
    missed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"type": "hello", "epoch": self.epoch, "last_id": self.last_id,
                "resumed": self.resumed, "missed": self.missed}


# Called with (client, role, member id, what) for each member read through the feed.
OnRead = Callable[[str, Role, str, str], None]


def member_of(event: BusEvent) -> str | None:
    """The member id an event shows, if any (a member QR scan shows it in its fields)."""
    member = event.data.get("member_id")
    if member is None and event.type == "scan" and event.data.get("kind") == "member":
        member = (event.data.get("fields") or {}).get("member_id")
    return member if isinstance(member, str) and member else None


class FeedClient:
    """One connection's view: its filter and a bounded queue."""

    def __init__(self, role: Role, name: str, maxsize: int, on_read: OnRead | None = None):
        self.prefixes, self.visible = ROLE_VIEW[role]
        self.mask = ROLE_MASK.get(role)
        self.role = role
        self.name = name
        self.on_read = on_read
        self.queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize)
        self.lagging = asyncio.Event()
        self.revoked = asyncio.Event()  # the client was unpaired: its connection is closed (4401)
        self.sent_id = 0

    def wants(self, event: BusEvent) -> bool:
        return matches(event.type, self.prefixes) and self.visible(event, self.name)

    def offer(self, event: BusEvent) -> None:
        if self.lagging.is_set() or self.revoked.is_set() or not self.wants(event):
            return  # an unpaired device is sent nothing more, and reads nothing more
        try:
            self.queue.put_nowait(self.mask(event) if self.mask else event)
        except asyncio.QueueFull:
            self.lagging.set()  # the connection is closed; the client resumes from sent_id
            return
        if self.mask is None and self.on_read is not None and (member := member_of(event)) is not None:
            self.on_read(self.name, self.role, member, f"feed:{event.type}")


class Feed(Consumer):
    """The ring of recent feed events and the connected clients."""

    prefixes = FEED_PREFIXES
    maxsize = 100_000

    def __init__(self, bus: EventBus, size: int = 5000, client_queue: int = 1000):
        super().__init__(bus)
        self.epoch = uuid.uuid4().hex[:12]
        self.ring: deque[BusEvent] = deque(maxlen=size)
        self.rotated_out = 0  # id of the newest event that has left the ring
        self.client_queue = client_queue
        self.clients: set[FeedClient] = set()
        self.on_read: OnRead | None = None  # the access log's, set by the agent
        # Other connections a client's credential opened (its wristbands), closed with its feed connections.
        self.closers: list[Callable[[str], int]] = []

    async def handle(self, event: BusEvent) -> None:
        """Keep a feed event in the ring and offer it to every client."""
        if not matches(event.type, FEED_PREFIXES):
            return  # the bus matches by prefix only
        if len(self.ring) == self.ring.maxlen:
            self.rotated_out = self.ring[0].id
        self.ring.append(event)
        for client in list(self.clients):
            client.offer(event)

    def connect(self, role: Role, name: str, since: int | None, epoch: str | None) -> tuple[FeedClient, Hello]:
        """Register a client; events it missed since ``since`` are queued first when the ring still has them."""
        client = FeedClient(role, name, self.client_queue, self.on_read)
        last_id = self.ring[-1].id if self.ring else 0
        resumed = missed = False
        if since is not None:
            # Resumable when nothing after ``since`` has left the ring.
            if epoch == self.epoch and since >= self.rotated_out:
                resumed = True
                for event in self.ring:
                    if event.id > since:
                        client.offer(event)
            else:
                missed = True
        self.clients.add(client)
        return client, Hello(self.epoch, last_id, resumed, missed)

    def disconnect(self, client: FeedClient) -> None:
        """Forget a client."""
        self.clients.discard(client)

    def close_client(self, name: str) -> int:
        """Close every connection of the client ``name`` (feed and wristband; it was unpaired): its
        connections end with close code 4401. How many there were."""
        mine = [c for c in self.clients if c.name == name]
        for client in mine:
            client.revoked.set()
        return len(mine) + sum(close(name) for close in self.closers)

    def forget_member(self, member_id: str) -> None:
        """Drop a member's arrivals from the history (their card expired): a resume no longer shows them."""
        kept = [e for e in self.ring if not (e.type == "member.arrived" and e.data.get("member_id") == member_id)]
        if len(kept) != len(self.ring):
            self.ring = deque(kept, maxlen=self.ring.maxlen)
