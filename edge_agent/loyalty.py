"""Member points: what a sale earns, what a member may redeem here, what a return gives back.

The hub owns every member's balance and sends it on the member card
(``retail.member.card`` / ``retail.member.arrived``, the ``members`` table).
The store spends from that card: ``members.used_points`` counts what this
store took from it since it arrived (points redeemed, plus earned points a
return took back, minus redeemed points a return gave back), inside the
same write as the sale or return, so two kiosks cannot spend the same points
offline. A new card from the hub replaces the old one and starts the count
again at 0. Without a card (never sent, or expired) a member can earn but not
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
from datetime import datetime
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


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's points as the store sees them now."""

    card_points: int      # the balance on the card the hub sent
    used: int             # what this store took from it since (see the module docstring)

    @property
    def available(self) -> int:
        """What may be redeemed here now."""
        return max(0, self.card_points - self.used)


def balance(conn: sqlite3.Connection, member_id: str, now: datetime) -> Balance | None:
    """The member's balance from an unexpired card, or None when the store has none."""
    row = conn.execute(
        "SELECT card, used_points FROM members WHERE member_id = ? AND (expires_at IS NULL OR expires_at > ?)",
        (member_id, now.isoformat())).fetchone()
    if row is None:
        return None
    points = json.loads(row[0]).get("points")
    if not isinstance(points, int) or isinstance(points, bool):
        return None
    return Balance(points, row[1])


def use(conn: sqlite3.Connection, member_id: str, points: int) -> None:
    """Count ``points`` (negative to give back) against the member's card, if the store has one."""
    if points:
        conn.execute("UPDATE members SET used_points = used_points + ? WHERE member_id = ?", (points, member_id))
