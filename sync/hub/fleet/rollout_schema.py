"""The hub's rollout tables (sync/hub/fleet/rollout.py, rollout_engine.py), in SQL both SQLite and PostgreSQL run.

``rollouts``: one row per staged rollout of a release (its version, where the
bundle is, its waves as given and as planned, soak and grace, its state
``running`` / ``halted`` / ``done``, the wave it is in, why it halted, and
when it rolled back). ``rollout_stores``: each store of a rollout, its wave,
the release it ran before (version, bundle URL, manifest hash: what a
rollback asks for), the version asked now and when it was asked and sent,
when it first reported the release healthy, and its health reasons when it
was asked (``baseline``: a reason already there is not the release's doing).
``rollout_actions``: everything done to a rollout and who did it.
``update_results``: the latest word of each store on each rollout
(``edge/{store}/update/res``).
"""

from __future__ import annotations

TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS rollouts (
        id TEXT PRIMARY KEY, version TEXT NOT NULL, base_url TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
        waves TEXT NOT NULL, plan TEXT NOT NULL, soak_s DOUBLE PRECISION NOT NULL, grace_s DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL, wave BIGINT NOT NULL, reason TEXT, rolled_back_at TEXT,
        created_at TEXT NOT NULL, created_by TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rollout_stores (
        rollout TEXT NOT NULL, store TEXT NOT NULL, wave BIGINT NOT NULL,
        previous TEXT, previous_base_url TEXT, previous_sha256 TEXT,
        asked TEXT, asked_at TEXT, sent_at TEXT, healthy_at TEXT, baseline TEXT,
        PRIMARY KEY (rollout, store))""",
    """CREATE TABLE IF NOT EXISTS rollout_actions (
        rollout TEXT NOT NULL, at TEXT NOT NULL, by_whom TEXT NOT NULL, action TEXT NOT NULL, detail TEXT)""",
    """CREATE INDEX IF NOT EXISTS rollout_actions_rollout ON rollout_actions (rollout, at)""",
    """CREATE TABLE IF NOT EXISTS update_results (
        store TEXT NOT NULL, rollout TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
        running TEXT NOT NULL, at TEXT NOT NULL, received_at TEXT NOT NULL,
        PRIMARY KEY (store, rollout))""",
)
