"""``WS /v1/wristband``: the compact stream for an associate's wristband (title, line, vibration, acknowledge)."""

from __future__ import annotations

from fastapi import APIRouter

from edge_agent.api.strict import StrictRoute

router = APIRouter(tags=["wristband"], route_class=StrictRoute)
