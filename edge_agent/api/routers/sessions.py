"""``GET /v1/sessions/{station}``: a kiosk's current session (the member attached to it)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from edge_agent.api.auth import require
from edge_agent.config import ClientConfig, Role

router = APIRouter(tags=["sessions"])


@router.get("/v1/sessions/{station}")
async def get_session(
    request: Request,
    station: str = Path(min_length=1, max_length=64),
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """The station's session; a kiosk may read only its own."""
    if client.role == Role.KIOSK and station != client.name:
        raise HTTPException(403, f"a kiosk reads only its own session ({client.name!r})")
    return request.app.state.agent.sessions.get(station).as_dict()
