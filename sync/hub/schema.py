"""The hub database's tables, in SQL both SQLite and PostgreSQL run (``events`` apart: one per dialect).

Ingest: ``events``, ``stores``, ``streams``, ``gaps``, ``conflicts``,
``identity``, ``commands``, ``rejected`` (see db.py); retention:
``events_kept``, ``purges`` (see retention.py). Health console (sync/hub/console/): ``device_states`` (one row per
state a device entered, from the health snapshots: the 24-hour timeline),
``device_alerts`` (the last ``retail.device.alert`` per store, device and
code, from the events stream) and ``alerts`` (what the hub's rules raised,
and what staff did about it). Every ``CREATE`` is ``IF NOT EXISTS``: a hub
database made before the console gets the new tables on the next start.
"""

from __future__ import annotations

from sync.hub.fleet import desired_schema, enroll_schema, rollout_schema

# 2: streams. Events, gaps and the ack are per (store, stream); version 1's
# events and gaps become the legacy stream "" (db.py ``_migrate_v1``).
# 3: bounded storage (sync/hub/retention.py). ``events`` is partitioned by day on PostgreSQL
# (version 2's table becomes its first partition, db.py ``_migrate_v2``); ``events_kept`` holds the
# events a purge keeps for the hub's reports; ``purges`` logs each purge;
# ``stores.resent_purged`` counts resends of events purged already.
# 4: config_results keeps one answer per version and agent stream: two PCs running as one store
# answer apiece (sync/hub/fleet/desired.py); schema 3's rows become the answers of stream "".
SCHEMA_VERSION = "4"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hub_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    # ``contiguous``, ``high``: of ``stream``, the stream that last brought new events (the
    # store's line in ``edge-hub stores``); ``events``: of every stream; ``live_stream``: the
    # stream last announced in the store's status; ``streams``: how many it has had.
    """CREATE TABLE IF NOT EXISTS stores (
        store TEXT PRIMARY KEY,
        contiguous BIGINT NOT NULL DEFAULT 0,
        high BIGINT NOT NULL DEFAULT 0,
        events BIGINT NOT NULL DEFAULT 0,
        conflicts BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0,
        last_event_at TEXT,
        status TEXT, status_version TEXT, status_since TEXT, status_at TEXT,
        health TEXT, health_at TEXT,
        stream TEXT, live_stream TEXT, streams BIGINT NOT NULL DEFAULT 0,
        resent_purged BIGINT NOT NULL DEFAULT 0)""",
    # One row per run of a store's database. ``prev_stream``/``prev_seq``: the stream before
    # it and that stream's last seq, as its first event says; ``successor``/``end_seq``: the
    # same seen from the earlier stream. ``announced_at``: last named in a status;
    # ``superseded_at``: when another stream of the store was announced after it.
    """CREATE TABLE IF NOT EXISTS streams (
        store TEXT NOT NULL, stream TEXT NOT NULL,
        contiguous BIGINT NOT NULL DEFAULT 0, high BIGINT NOT NULL DEFAULT 0,
        events BIGINT NOT NULL DEFAULT 0, first_at TEXT NOT NULL, last_event_at TEXT,
        prev_stream TEXT, prev_seq BIGINT, successor TEXT, end_seq BIGINT,
        announced_at TEXT, superseded_at TEXT,
        PRIMARY KEY (store, stream))""",
    # ``events`` itself is made by EVENTS_SQLITE or EVENTS_POSTGRES below (the dialects differ).
    # What a purge keeps of the events it removes: the types a report of the hub reads (retention.py KEEP_TYPES).
    """CREATE TABLE IF NOT EXISTS events_kept (
        store TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
        time TEXT, event TEXT NOT NULL, received_at TEXT NOT NULL,
        PRIMARY KEY (store, stream, seq))""",
    # One row per purge: the cutoff (events received before it left), how many left, how many were kept.
    """CREATE TABLE IF NOT EXISTS purges (
        at TEXT NOT NULL, cutoff TEXT NOT NULL, removed BIGINT NOT NULL, kept BIGINT NOT NULL,
        partitions TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gaps (
        store TEXT NOT NULL, stream TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
        opened_at TEXT NOT NULL, closed_at TEXT, reported INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (store, stream, first_seq))""",
    # An event that came for a position already holding another event: kept whole, never
    # dropped silently; ``kept_id`` is the event the position holds.
    """CREATE TABLE IF NOT EXISTS conflicts (
        store TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL,
        kept_id TEXT NOT NULL, type TEXT NOT NULL, event TEXT NOT NULL, received_at TEXT NOT NULL,
        PRIMARY KEY (store, stream, seq, id))""",
    # What the hub noticed about a store's identity, one row per code and subject:
    # ``stream_conflict`` (subject: the stream), ``database_restored`` (subject: the stream the
    # store's database went back into), ``duplicate_store`` (subject: the store). Raised again,
    # a row counts up; ``cleared_at`` is set when the cause went away (duplicates only).
    """CREATE TABLE IF NOT EXISTS identity (
        store TEXT NOT NULL, code TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
        first_at TEXT NOT NULL, last_at TEXT NOT NULL, count BIGINT NOT NULL DEFAULT 1, cleared_at TEXT,
        PRIMARY KEY (store, code, subject))""",
    """CREATE TABLE IF NOT EXISTS commands (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, device TEXT, action TEXT, args TEXT,
        sent_at TEXT, state TEXT NOT NULL, result TEXT, error TEXT, answered_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS rejected (
        store TEXT NOT NULL, received_at TEXT NOT NULL, reason TEXT NOT NULL,
        detail TEXT NOT NULL, size BIGINT NOT NULL, head TEXT)""",
    """CREATE INDEX IF NOT EXISTS gaps_open ON gaps (closed_at, opened_at)""",
    # The key is the state's start as the store reported it: every hub worker
    # sees every snapshot, and the second one to record a change is a no-op.
    """CREATE TABLE IF NOT EXISTS device_states (
        store TEXT NOT NULL, device TEXT NOT NULL, since TEXT NOT NULL, state TEXT NOT NULL,
        kind TEXT, last_error TEXT, recorded_at TEXT NOT NULL,
        PRIMARY KEY (store, device, since))""",
    """CREATE INDEX IF NOT EXISTS device_states_recorded ON device_states (recorded_at)""",
    # ``seq`` orders the raise and the clear of one alert when two workers
    # store a store's batches out of order.
    """CREATE TABLE IF NOT EXISTS device_alerts (
        store TEXT NOT NULL, device TEXT NOT NULL, code TEXT NOT NULL, state TEXT NOT NULL,
        severity TEXT, message TEXT, seq BIGINT NOT NULL, time TEXT, received_at TEXT NOT NULL,
        stream TEXT,
        PRIMARY KEY (store, device, code))""",
    # ``active_key`` is store/rule/subject while the alert is not resolved and
    # NULL after: the unique index allows one live alert per cause, and two
    # consoles evaluating the same rules insert it once (NULLs never collide).
    """CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, active_key TEXT, store TEXT NOT NULL, rule TEXT NOT NULL,
        subject TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL, detail TEXT,
        since TEXT NOT NULL, raised_at TEXT NOT NULL, state TEXT NOT NULL,
        acked_by TEXT, acked_at TEXT, resolved_by TEXT, resolved_at TEXT, cleared_at TEXT,
        updated_at TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS alerts_active ON alerts (active_key)""",
    """CREATE INDEX IF NOT EXISTS alerts_store ON alerts (store, raised_at)""",
) + enroll_schema.TABLES + desired_schema.TABLES + rollout_schema.TABLES  # fleet operations (sync/hub/fleet/)

_EVENT_COLUMNS = """store TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL,
        type TEXT NOT NULL, time TEXT, event TEXT NOT NULL, received_at TEXT NOT NULL"""

# SQLite: one table; the key is the dedupe's lookup and a last guard against a second copy.
EVENTS_SQLITE = (
    f"""CREATE TABLE IF NOT EXISTS events ({_EVENT_COLUMNS}, PRIMARY KEY (store, stream, seq))""",
)

# PostgreSQL: range partitions by the day the hub received an event (retention.py makes them ahead and
# drops them whole). ``received_at`` is ISO-8601 UTC text; compared in the "C" collation its order is
# time order, and a day's bounds are its date ('2026-12-07' <= '2026-12-07T...' < '2026-12-08'). A
# unique key would have to include ``received_at``, so there is none: exactly-once is the ingest's
# lookup under the store's row lock (db.py ``Tx.ingest``), and ``events_key`` serves that lookup.
EVENTS_POSTGRES = (
    f"""CREATE TABLE IF NOT EXISTS events ({_EVENT_COLUMNS}) PARTITION BY RANGE (received_at COLLATE "C")""",
    """CREATE INDEX IF NOT EXISTS events_key ON events (store, stream, seq)""",
    # Where an event goes when no day's partition covers it yet: an insert never fails for want of one.
    """CREATE TABLE IF NOT EXISTS events_default PARTITION OF events DEFAULT""",
)
