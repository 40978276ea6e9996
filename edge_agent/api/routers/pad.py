"""``/pad``: the associate's web app (phone or tablet), static files served from this agent."""

from __future__ import annotations

from fastapi import APIRouter

from edge_agent.api.strict import StrictRoute

router = APIRouter(tags=["pad"], route_class=StrictRoute)
