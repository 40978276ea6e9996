"""Whose word on a devices.yaml version is the store's: its live stream's, never a second PC's.

On the hub's own database (a SQLite file and a fresh PostgreSQL database):
answers are kept per agent stream, the store's is the one its agent
announced last, another agent's differing word is shown apart, and a
schema 3 table (one answer per version) comes through the upgrade whole.
The same with real processes: tests/sync/test_desired_config.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sync.hub.console.fleet import desired_configs
from sync.hub.db import open_db
from sync.hub.fleet import desired
from sync.hub.schema import SCHEMA_VERSION
from sync.topics import ConfigResult, ConfigVersion

STORE = "store-ans"
A, B, C = (c * 8 + "-0000-4000-8000-" + "0" * 12 for c in "abc")


def word(version: int, state: str, in_force: int, stream: str | None) -> ConfigResult:
    return ConfigResult(version=version, stream=stream, ok=state != "refused", state=state,
                        in_force=ConfigVersion(version=in_force, sha256="0" * 64), at=datetime.now(timezone.utc))


def test_the_stores_word_is_its_live_agents_whatever_came_last(db_url):
    db = open_db(db_url)
    try:
        desired.store_version(db, STORE, "store: {id: store-ans}\n", "ops")
        with db.transaction() as tx:
            tx.announce(STORE, A)
            desired.record_result(tx, STORE, word(1, "applied", 1, A))
        with db.transaction() as tx:  # a second PC takes the session and says its own word
            tx.announce(STORE, B)
            desired.record_result(tx, STORE, word(1, "restart_required", 0, B))
        [st] = desired.statuses(db, STORE)
        assert (st.state, st.in_force) == ("restart_required", 0)  # B is the agent the hub hears now
        with db.transaction() as tx:  # the store's agent takes it back; its word was said before
            tx.announce(STORE, A)
        [st] = desired.statuses(db, STORE)
        assert (st.answered, st.state, st.in_force, st.others) == (1, "applied", 1, [])
        assert desired_configs(db)[STORE] == {"desired": 1, "answered": 1, "state": "applied"}  # the console's
        with db.transaction() as tx:  # B's health snapshot, the last one the hub has: not what the store runs
            tx.set_health(STORE, json.dumps({"stream": B, "config": {"version": 0, "drift": True}}))
        [st] = desired.statuses(db, STORE)
        assert (st.in_force, st.drift) == (1, None)
        with db.transaction() as tx:  # the store's agent's own snapshot counts
            tx.set_health(STORE, json.dumps({"stream": A, "config": {"version": 1, "drift": True}}))
        [st] = desired.statuses(db, STORE)
        assert (st.in_force, st.drift) == (1, True)
        with db.transaction() as tx:  # the hub saw them take turns: while that is open, B's word is shown apart
            tx.duplicate(STORE, (A, B))
        [st] = desired.statuses(db, STORE)
        assert (st.answered, st.state, st.in_force) == (1, "applied", 1)
        assert [(a.stream, a.state) for a in st.others] == [(B, "restart_required")]
        text = desired.format_statuses([st])
        assert f"another agent running as {STORE} (stream {B[:8]}) said restart_required of version 1" in text
        # Both words are kept, one per stream; the console's facts read the same rule.
        assert sorted(db.query("SELECT stream, state FROM config_results WHERE store = ?", (STORE,))) == [
            (A, "applied"), (B, "restart_required")]
        with db.transaction() as tx:  # an agent naming no stream (older) and a new version the store refused
            desired.record_result(tx, STORE, word(2, "refused", 1, A))
            desired.record_result(tx, "store-old", word(3, "applied", 3, None))
        [st] = desired.statuses(db, STORE)
        assert (st.answered, st.state, st.in_force, st.others) == (2, "refused", 1, [])
        [old] = desired.statuses(db, "store-old")
        assert (old.answered, old.state) == (3, "applied")
    finally:
        db.close()


def test_a_schema_3_answer_table_comes_through_the_upgrade_as_the_word_of_no_stream(db_url):
    db = open_db(db_url)
    try:
        with db.transaction() as tx:  # as schema 3 made it: one answer per (store, version)
            tx.execute("DROP TABLE config_results")
            tx.execute("CREATE TABLE config_results (store TEXT NOT NULL, version BIGINT NOT NULL, ok BIGINT NOT NULL, "
                       "state TEXT NOT NULL, errors TEXT NOT NULL, reason TEXT, in_force_version BIGINT NOT NULL, "
                       "in_force_sha256 TEXT NOT NULL, at TEXT NOT NULL, received_at TEXT NOT NULL, "
                       "PRIMARY KEY (store, version))")
            tx.execute("INSERT INTO config_results VALUES (?, 1, 0, 'refused', ?, NULL, 0, ?, 'x', 'y')",
                       (STORE, json.dumps(["devices.yaml (hub version 1):3: bad"]), "0" * 64))
            tx.execute("UPDATE hub_meta SET value = '3' WHERE key = 'schema_version'")
            tx.execute("DELETE FROM hub_meta WHERE key = 'schema_sha256'")
    finally:
        db.close()
    db = open_db(db_url)
    try:
        assert db.query("SELECT value FROM hub_meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
        assert db.query("SELECT stream, state FROM config_results") == [("", "refused")]
        [st] = desired.statuses(db, STORE)
        assert (st.answered, st.state, st.errors) == (1, "refused", ["devices.yaml (hub version 1):3: bad"])
        with db.transaction() as tx:  # the new key holds: the store's agent answers under its stream beside it
            tx.announce(STORE, A)
            desired.record_result(tx, STORE, word(1, "applied", 1, A))
        [st] = desired.statuses(db, STORE)
        assert (st.state, st.in_force) == ("applied", 1)
    finally:
        db.close()


def test_an_agent_restarted_in_a_new_stream_keeps_the_stores_history_and_raises_no_alarm(db_url):
    db = open_db(db_url)
    try:
        with db.transaction() as tx:
            tx.announce(STORE, A)
            desired.record_result(tx, STORE, word(1, "rolled_back", 0, A))
            desired.record_result(tx, STORE, word(2, "restart_required", 0, A))
        with db.transaction() as tx:  # the restart: a new stream, announced before it says its last word
            tx.announce(STORE, C)
        [st] = desired.statuses(db, STORE)
        assert (st.answered, st.state, [v for v, _ in st.rolled_back]) == (2, "restart_required", [1])
        with db.transaction() as tx:
            desired.record_result(tx, STORE, word(2, "applied", 2, C))
        [st] = desired.statuses(db, STORE)
        assert (st.answered, st.state, st.in_force, st.others) == (2, "applied", 2, [])
        assert [v for v, _ in st.rolled_back] == [1]
        assert "another agent" not in desired.format_statuses([st])
    finally:
        db.close()
