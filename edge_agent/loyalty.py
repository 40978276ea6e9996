"""Member points: what a sale earns, what a member may redeem here, what a return gives back.

The hub owns every member's balance and sends it on the member card
(``retail.member.card`` / ``retail.member.arrived``, the ``members`` table).
The store spends from that card: ``members.used_points`` counts what this
store took from it since it arrived (points redeemed, plus earned points a
return took back, minus redeemed points a return gave back), inside the
same write as the sale or return, so two kiosks cannot spend the same points
offline. Points that sales here earned since the card arrived are not on the
card yet: ``members.earned_points`` counts them (less what returns of those
sales took back), for the balance a receipt prints; they cannot be redeemed
here until the hub's next card holds them. A return takes the earned points
of a sale made before the card arrived from the card (the hub's card holds
them), and those of a later sale from ``earned_points``. A new card from the
hub replaces the old one and starts both counts again at 0. Without a card (never sent, or expired) a member can earn but not
redeem: the store does not know the balance.

Points earned are the chain's rule: ``loyalty.points_per_unit`` points per
currency unit paid in money (what points paid for earns nothing), rounded
down per sale. A redeemed point takes ``loyalty.point_value`` off the amount
to pay.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from edge_agent.config import LoyaltyConfig

CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """``value`` rounded to the cent (half to even, as the catalog's prices are exact)."""
    return value.quantize(CENT, ROUND_HALF_EVEN)


def earned(paid: Decimal, rule: LoyaltyConfig) -> int:
    """Points a member earns for ``paid`` in money."""
    if paid <= 0:
        return 0
    return int((paid * rule.points_per_unit).to_integral_value(ROUND_FLOOR))


def redemption_value(points: int, rule: LoyaltyConfig) -> Decimal:
    """What ``points`` take off the amount to pay."""
    return money(points * rule.point_value)


def share(whole: int | Decimal, part: Decimal, of: Decimal) -> Decimal:
    """``whole * part / of`` exactly (``of`` > 0), for proportional refunds and reversals."""
    return Decimal(whole) * part / of


def floor_int(value: Decimal) -> int:
    """``value`` rounded down to a whole number."""
    return int(value.to_integral_value(ROUND_FLOOR))


def refund_between(paid: Decimal, before: Decimal, after: Decimal, whole: Decimal) -> Decimal:
    """The money a return gives back: the sale's ``paid`` share of its lines' value ``whole`` up to ``after``
    (returned with this return) less the share up to ``before`` (returned already), each rounded to the cent,
    so that a sale returned in parts refunds exactly what was paid. ``whole`` > 0."""
    return money(share(paid, after, whole)) - money(share(paid, before, whole))


def points_between(points: int, before: Decimal, after: Decimal, whole: Decimal) -> int:
    """The same share of a sale's ``points`` (earned: reversed; redeemed: restored), in whole points."""
    return floor_int(share(points, after, whole)) - floor_int(share(points, before, whole))


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's points as the store sees them now."""

    card_points: int      # the balance on the card the hub sent
    used: int             # what this store took from it since (see the module docstring)
    earned: int = 0       # what sales here earned since, not on the card yet

    @property
    def available(self) -> int:
        """What may be redeemed here now."""
        return max(0, self.card_points - self.used)

    @property
    def total(self) -> int:
        """The member's balance as the chain will have it once the hub took in this store's events."""
        return self.card_points - self.used + self.earned


def balance(conn: sqlite3.Connection, member_id: str, now: datetime) -> Balance | None:
    """The member's balance from an unexpired card, or None when the store has none."""
    row = conn.execute(
        "SELECT card, used_points, earned_points FROM members WHERE member_id = ? "
        "AND (expires_at IS NULL OR expires_at > ?)", (member_id, now.isoformat())).fetchone()
    if row is None:
        return None
    points = json.loads(row[0]).get("points")
    if not isinstance(points, int) or isinstance(points, bool):
        return None
    return Balance(points, row[1], row[2])


def earn(conn: sqlite3.Connection, member_id: str, points: int) -> None:
    """Count ``points`` (negative: taken back by a return) as earned here since the card, if the store has one."""
    if points:
        conn.execute("UPDATE members SET earned_points = earned_points + ? WHERE member_id = ?", (points, member_id))


def reverse(conn: sqlite3.Connection, member_id: str, points: int, sold_at: str) -> None:
    """A return takes back ``points`` a sale made at ``sold_at`` earned: from the card if the sale was before
    the card arrived (the hub's card holds them), else from what was earned here since."""
    if not points:
        return
    row = conn.execute("SELECT received_at FROM members WHERE member_id = ?", (member_id,)).fetchone()
    if row is None:
        return
    if _utc(sold_at) >= _utc(row[0]):
        earn(conn, member_id, -points)
    else:
        use(conn, member_id, points)


def _utc(iso: str) -> datetime:
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def use(conn: sqlite3.Connection, member_id: str, points: int) -> None:
    """Count ``points`` (negative to give back) against the member's card, if the store has one."""
    if points:
        conn.execute("UPDATE members SET used_points = used_points + ? WHERE member_id = ?", (points, member_id))
