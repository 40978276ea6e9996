"""The hub's rollout tables (sync/hub/fleet/rollout.py), in SQL both SQLite and PostgreSQL run."""

from __future__ import annotations

TABLES: tuple[str, ...] = ()
