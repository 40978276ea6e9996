"""Member cards: what associates see when a member arrives, and how long the store keeps a card.

The hub sends cards on ``hub/{store}/members`` (``retail.member.card``, or
``retail.member.arrived`` when the member was seen arriving, e.g. by the
app's geofence): ``member_id, tier, tags, points, interests: [sku],
expires_at``, never a phone number or a name (``sync.topics.MemberCard``
forbids any other field, so a card that carries one is refused whole and
alerted, and nothing of it is stored). A card stays in the store for
``loyalty.card_ttl`` seconds after it arrived, or until its own
``expires_at`` if sooner; then it is deleted, ``member.expired`` goes on
the feed (so screens drop the card) and the feed's history forgets the
card's arrivals.

A member arrives when the hub says so, or when a member QR (``RM1:``) is
scanned, at a kiosk or at the entrance (any scanner). Associates (and
admins) then get ``member.arrived`` on the feed: tier, tags, the points
available here, and the recent online interests with each product's
name, price and store stock.

A card's points, three ways (edge_agent/loyalty.py ``Balance``): ``points``,
what may be redeemed here now (the hub's card less what this store used of
it); ``points_balance``, the balance every document the member gets prints
(receipts, return slips: that, plus what sales here earned since the card);
``points_pending``, that last part, which the hub has not put on a card
yet. A card without a whole number of points has none of them. A kiosk only hears that its own session got
the member (``member.attached``); the console sees no member events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from edge_agent import catalog, loyalty
from edge_agent.bus import EventBus
from edge_agent.errors import StoreClosed, StoreError
from edge_agent.store import Store, Tx, keys
from edge_core.bus import BusEvent, Consumer, utcnow
from edge_core.tasks import cancel_and_wait
from sync.topics import MemberCard

log = logging.getLogger(__name__)

MEMBER_ARRIVED = "member.arrived"
MEMBER_EXPIRED = "member.expired"
# Purge at least this often, and at the moment the next card expires.
PURGE_EVERY = 60.0


def _utc(moment: datetime) -> datetime:
    """Aware UTC (a time without a zone is taken as UTC), so stored times compare as text."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def store_cards(tx: Tx, cards: list[MemberCard], ttl: float, now: datetime) -> None:
    """Store cards from the hub; a new card replaces the old and its points count again from 0 used."""
    for c in cards:
        expires = now + timedelta(seconds=ttl)
        if c.expires_at is not None:
            expires = min(expires, _utc(c.expires_at))
        tx.execute(
            """INSERT INTO members (member_id, card, expires_at, received_at, used_points) VALUES (?, ?, ?, ?, 0)
               ON CONFLICT (member_id) DO UPDATE SET card = excluded.card, expires_at = excluded.expires_at,
                   received_at = excluded.received_at, used_points = 0, earned_points = 0""",
            (c.member_id, c.model_dump_json(), expires.isoformat(), now.isoformat()),
        )


def card_view(conn: sqlite3.Connection, member_id: str, now: datetime) -> dict[str, Any]:
    """The member as associates see them: the card with points available here and interests with stock."""
    row = conn.execute("SELECT card, used_points, expires_at, earned_points FROM members WHERE member_id = ? "
                       "AND (expires_at IS NULL OR expires_at > ?)", (member_id, now.isoformat())).fetchone()
    if row is None:
        return {"member_id": member_id, "known": False, "tier": None, "tags": [], "points": None,
                "interests": [], "expires_at": None}
    card = json.loads(row[0])
    skus = [s for s in card.get("interests", []) if isinstance(s, str)]
    products = catalog.products(conn, skus)
    interests = []
    for sku in skus:
        p = products.get(sku)
        interests.append({"sku": sku, "name": p.name if p else None,
                          "price": str(p.unit_price(now)) if p else None,
                          "stock_store": p.stock_store if p else None, "stock_online": p.stock_online if p else None})
    points = card.get("points")
    if not isinstance(points, int) or isinstance(points, bool):
        return {"member_id": member_id, "known": True, "tier": card.get("tier"), "tags": card.get("tags", []),
                "points": None, "points_balance": None, "points_pending": None,
                "interests": interests, "expires_at": row[2]}
    balance = loyalty.Balance(points, row[1], row[3])
    return {"member_id": member_id, "known": True, "tier": card.get("tier"), "tags": card.get("tags", []),
            "points": balance.available, "points_balance": balance.total, "points_pending": balance.earned,
            "interests": interests, "expires_at": row[2]}


def cards(conn: sqlite3.Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Every unexpired card, the latest to arrive first."""
    ids = [r[0] for r in conn.execute(
        "SELECT member_id FROM members WHERE expires_at IS NULL OR expires_at > ? ORDER BY received_at DESC LIMIT ?",
        (now.isoformat(), limit))]
    return [card_view(conn, m, now) for m in ids]


# Rows stored before every card got an expiry (schema 3) expire ttl after they arrived.
_EXPIRED = "expires_at <= ? OR (expires_at IS NULL AND received_at <= ?)"


def _purge(tx: Tx, now: datetime, ttl: float) -> list[str]:
    stale = (now - timedelta(seconds=ttl)).isoformat()
    return [r[0] for r in tx.execute(f"DELETE FROM members WHERE {_EXPIRED} RETURNING member_id",
                                     (now.isoformat(), stale))]


def _due(conn: sqlite3.Connection, now: datetime, ttl: float) -> bool:
    stale = (now - timedelta(seconds=ttl)).isoformat()
    return conn.execute(f"SELECT 1 FROM members WHERE {_EXPIRED} LIMIT 1", (now.isoformat(), stale)).fetchone() is not None


def _next_expiry(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT min(expires_at) FROM members").fetchone()
    return row[0] if row else None


class MemberService(Consumer):
    """Arrivals to the feed (from scans and from the hub) and the expiry of cards; one task each."""

    prefixes = ("scan",)

    def __init__(self, store: Store, bus: EventBus, ttl: float, forget: Any = None):
        super().__init__(bus)
        self.store = store
        self.ttl = ttl
        self.forget = forget  # called with a member id whose card expired (the feed's history)
        self._wake = asyncio.Event()
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for member scans and start purging expired cards."""
        await super().start()
        self._purger = asyncio.create_task(self._purge_loop(), name="member-expiry")

    async def stop(self) -> None:
        """Stop both tasks."""
        task, self._purger = self._purger, None
        await cancel_and_wait(task)
        await super().stop()

    async def handle(self, event: BusEvent) -> None:
        """A member QR scanned anywhere: the member arrived."""
        data = event.data
        if event.type != "scan" or not data.get("ok") or data.get("kind") != "member":
            return
        member_id = (data.get("fields") or {}).get("member_id")
        if not isinstance(member_id, str):
            return
        try:
            await self.arrived(member_id, "scan", device=data.get("device"), station=data.get("station"))
        except (StoreError, StoreClosed) as err:
            # By pseudonym: the journal keeps lines longer than the store keeps a member (edge_agent/privacy.py).
            who = keys.pseudonym(self.store.secret, member_id) if self.store.secret else "(a member)"
            log.warning("member %s arrived but the store could not be read: %s", who, err)

    async def arrived(self, member_id: str, via: str, **where: Any) -> dict[str, Any]:
        """Tell associates a member is in the store, with the card the store has (``known: false`` if none)."""
        now = utcnow()
        view = await self.store.read(lambda conn: card_view(conn, member_id, now))
        data = {**view, "via": via, **{k: v for k, v in where.items() if v is not None}}
        self.bus.publish(MEMBER_ARRIVED, data)
        return data

    def cards_changed(self) -> None:
        """New cards arrived: the next expiry may be sooner."""
        self._wake.set()

    async def _purge_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._purge_due()
                nxt = await self.store.read(_next_expiry)
            except (StoreError, StoreClosed) as err:
                log.warning("member cards: purge failed, retrying: %s", err)
                nxt = None
            delay = PURGE_EVERY
            if nxt is not None:
                delay = min(delay, max(0.0, (datetime.fromisoformat(nxt) - utcnow()).total_seconds()) + 0.01)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _purge_due(self) -> None:
        now = utcnow()
        if not await self.store.read(lambda conn: _due(conn, now, self.ttl)):
            return
        gone = await self.store.write(lambda tx: _purge(tx, now, self.ttl))
        for member_id in gone:
            if self.forget is not None:
                self.forget(member_id)
            self.bus.publish(MEMBER_EXPIRED, {"member_id": member_id})
