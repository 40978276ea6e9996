"""``GET /metrics``: Prometheus text format, for console and admin tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import Role

router = APIRouter(tags=["metrics"], route_class=StrictRoute)


@router.get("/metrics", dependencies=[Depends(require(Role.CONSOLE, Role.ADMIN))])
async def metrics(request: Request) -> Response:
    """The agent's metrics, refreshed at scrape time."""
    m = request.app.state.metrics
    await m.refresh(request.app.state.agent)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
