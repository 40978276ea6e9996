"""``GET /v1/health``: unauthenticated liveness for load balancers and people."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from drivers.base import DeviceState
from edge_agent.store import outbox

router = APIRouter(tags=["health"])

_UNWELL = {DeviceState.OFFLINE, DeviceState.ERROR}


class Health(BaseModel):
    """CONTRACT section 3."""

    status: Literal["ok", "degraded"]
    store: str
    hub: Literal["online", "offline"]
    outbox_depth: int
    version: str
    hub_error: str | None = None
    # Print jobs per state (queued, printing, failed); null when the store has no printer.
    printing: dict[str, int] | None = None
    # Shelf labels: how many, how many do not show the checkout's price and since when the
    # oldest does not, active label alerts; null when the store has no label device and no label.
    labels: dict[str, Any] | None = None


@router.get("/v1/health", response_model=Health)
async def health(request: Request) -> Health:
    """``ok`` when the store writes and every device is up; ``degraded`` otherwise."""
    agent = request.app.state.agent
    depth = await agent.store.read(outbox.depth)
    devices_ok = all(d.state not in _UNWELL for d in agent.supervisor.snapshot())
    ok = devices_ok and agent.store.writer_alive
    hub_online = agent.hub_online
    printing = await agent.printing.counts() if agent.printing.printers else None
    return Health(
        status="ok" if ok else "degraded",
        store=agent.config.store.id,
        hub="online" if hub_online else "offline",
        outbox_depth=depth,
        version=agent.version,
        hub_error=None if hub_online or agent.link is None else agent.link.last_error,
        printing=printing,
        labels=agent.labels.monitor.summary() if agent.labels.started else None,
    )
