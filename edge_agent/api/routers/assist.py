"""``/v1/assist``: a kiosk calls for help; the associates on duty are told until one takes it."""

from __future__ import annotations

from fastapi import APIRouter

from edge_agent.api.strict import StrictRoute

router = APIRouter(tags=["assist"], route_class=StrictRoute)
