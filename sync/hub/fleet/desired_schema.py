"""The hub's desired-configuration tables (sync/hub/fleet/desired.py), in SQL both SQLite and PostgreSQL run."""

from __future__ import annotations

TABLES: tuple[str, ...] = ()
