"""The hub's enrollment tables (sync/hub/fleet/enroll.py), in SQL both SQLite and PostgreSQL run."""

from __future__ import annotations

TABLES: tuple[str, ...] = ()
