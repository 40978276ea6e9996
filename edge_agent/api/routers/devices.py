"""``GET /v1/devices``: every device's state."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import Role

router = APIRouter(tags=["devices"], route_class=StrictRoute)


class Device(BaseModel):
    """One device as the supervisor last saw it."""

    id: str
    kind: str
    state: str
    since: datetime
    last_error: str | None
    counters: dict[str, int]
    actions: list[str]  # the remote actions its driver declares, ``reopen`` first


@router.get(
    "/v1/devices",
    response_model=list[Device],
    dependencies=[Depends(require(Role.ASSOCIATE, Role.CONSOLE, Role.ADMIN))],
)
async def list_devices(request: Request) -> list[dict]:
    """Every configured device: id, kind, state, since, last_error, counters, actions."""
    return [d.as_dict() for d in request.app.state.agent.supervisor.snapshot()]
