"""``GET /v1/health``: unauthenticated liveness for load balancers and people."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from edge_agent.api.strict import StrictRoute
from edge_agent.health import REASON_CODES, assess
from edge_agent.store import outbox

router = APIRouter(tags=["health"], route_class=StrictRoute)


class Reason(BaseModel):
    """Why the store is degraded: a short machine code, what it is about, and words for people."""

    # Derived from the codes ``assess`` may give, so the OpenAPI page cannot drift from them.
    code: str = Field(description="one of " + ", ".join(sorted(REASON_CODES)))
    subject: str | None = Field(None, description="the device id, or 'labels' / 'printing'")
    message: str


class Health(BaseModel):
    """CONTRACT section 3, plus ``reasons`` and the label and print figures."""

    status: Literal["ok", "degraded"]
    store: str
    hub: Literal["online", "offline"]
    outbox_depth: int
    version: str
    hub_error: str | None = None
    # Empty when ``ok``; one entry per problem when ``degraded``.
    reasons: list[Reason] = Field(default_factory=list)
    # Print jobs per state (queued, printing, failed); null when the store has no printer.
    printing: dict[str, int] | None = None
    # Shelf labels: how many, how many do not show the checkout's price (``non_compliant``,
    # in their grace or not) and since when the oldest does not, how many are wrong past
    # their grace (``past_grace``: these make the store degraded), active label alerts;
    # null when the store has no label device and no label.
    labels: dict[str, Any] | None = None


@router.get("/v1/health", response_model=Health)
async def health(request: Request) -> Health:
    """``ok`` when the store writes, every device is up, labels show the checkout's price and
    printing needs nobody; ``degraded`` otherwise, with the reasons."""
    agent = request.app.state.agent
    depth = await agent.store.read(outbox.depth)
    hub_online = agent.hub_online
    a = await assess(agent)
    return Health(
        status=a["status"],
        store=agent.config.store.id,
        hub="online" if hub_online else "offline",
        outbox_depth=depth,
        version=agent.version,
        hub_error=None if hub_online or agent.link is None else agent.link.last_error,
        reasons=a["reasons"],
        printing=a["printing"],
        labels=a["labels"],
    )
