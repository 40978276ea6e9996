"""Pairing an associate's PAD or wristband with a one-time code: its own token, named, revocable."""

from __future__ import annotations

from fastapi import APIRouter

from edge_agent.api.strict import StrictRoute

router = APIRouter(tags=["pairing"], route_class=StrictRoute)
