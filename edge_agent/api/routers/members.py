"""Member cards in the store (edge_agent/members.py): ``GET /v1/members`` and ``GET /v1/members/{id}``.

Associates and admins see every card: tier, tags, points available here,
recent online interests with store stock. A kiosk sees only the member
attached to its own session, and of them only what a customer may see on the
kiosk's screen: tier and points (tags are the chain's, not the customer's).
Each member a call returns is a read in the access log (edge_agent/privacy.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from edge_agent import members
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute, member_problem
from edge_agent.config import ClientConfig, Role
from edge_core.bus import utcnow

router = APIRouter(tags=["members"], route_class=StrictRoute)
KIOSK_FIELDS = ("member_id", "known", "tier", "points", "expires_at")


@router.get("/v1/members")
async def list_members(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    client: ClientConfig = Depends(require(Role.ASSOCIATE, Role.ADMIN)),
) -> list[dict]:
    """The member cards the store holds now, the latest to arrive first."""
    now = utcnow()
    agent = request.app.state.agent
    cards = await agent.store.read(lambda conn: members.cards(conn, now, limit))
    for card in cards:
        agent.privacy.access.record(client.name, client.role, card["member_id"], "GET /v1/members")
    return cards


@router.get("/v1/members/{member_id}")
async def get_member(
    request: Request,
    member_id: str = Path(min_length=1, max_length=64),
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """One member's card (``known: false`` when the store has none); a kiosk only its session's member."""
    member_problem(request, member_id)
    agent = request.app.state.agent
    if client.role == Role.KIOSK and agent.sessions.get(client.name).member_id != member_id:
        raise HTTPException(403, "a kiosk sees only the member whose card was scanned at it")
    now = utcnow()
    card = await agent.store.read(lambda conn: members.card_view(conn, member_id, now))
    agent.privacy.access.record(client.name, client.role, member_id, "GET /v1/members/{member_id}")
    if client.role == Role.KIOSK:
        card = {k: card[k] for k in KIOSK_FIELDS}
    return card
