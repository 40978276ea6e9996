"""The hub's desired-configuration tables (sync/hub/fleet/desired.py), in SQL both SQLite and PostgreSQL run.

``desired_configs``: every version of every store's devices.yaml, as pushed
(``edge-hub config push``); a store's versions count from 1. ``config_results``:
what each store said of each version on ``edge/{store}/config/res``, the latest
word per version and agent stream (a store says it again on every connect;
``stream`` is "" for an agent that does not name its stream). The store's answer
is its live stream's (desired.py ``answers``), so a second PC running with the
store's id cannot overwrite what the store itself said. Drift is not here:
it is in the store's health snapshot (``stores.health``, its ``config``).
"""

from __future__ import annotations

TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS desired_configs (
        store TEXT NOT NULL, version BIGINT NOT NULL, sha256 TEXT NOT NULL, yaml TEXT NOT NULL,
        created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        PRIMARY KEY (store, version))""",
    """CREATE TABLE IF NOT EXISTS config_results (
        store TEXT NOT NULL, version BIGINT NOT NULL, stream TEXT NOT NULL, ok BIGINT NOT NULL,
        state TEXT NOT NULL, errors TEXT NOT NULL, reason TEXT, in_force_version BIGINT NOT NULL,
        in_force_sha256 TEXT NOT NULL, at TEXT NOT NULL, received_at TEXT NOT NULL,
        PRIMARY KEY (store, version, stream))""",
)
