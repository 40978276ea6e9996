"""Schema versions, applied in order at start-up; ``PRAGMA user_version`` says
which have run. Append new steps; never edit one that has shipped."""

from __future__ import annotations

import sqlite3

import sqlite_utils

# Each step is a list of statements run in one transaction.
MIGRATIONS: list[list[str]] = [
    # 1: meta counters and the outbox.
    [
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) STRICT""",
        "INSERT INTO meta (key, value) VALUES ('last_seq', 0), ('acked_seq', 0)",
        # seq is assigned by the writer inside the business transaction: per
        # store, from 1, +1 per event, no gaps, never reused (meta.last_seq
        # keeps counting after acknowledged rows are deleted).
        """CREATE TABLE outbox (
            seq      INTEGER PRIMARY KEY,
            id       TEXT NOT NULL UNIQUE,
            type     TEXT NOT NULL,
            time     TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            data     TEXT NOT NULL
        ) STRICT""",
    ],
    # 2: catalog and sales, the first business records.
    [
        """CREATE TABLE products (
            sku          TEXT PRIMARY KEY,
            name         TEXT NOT NULL,
            price        TEXT NOT NULL,
            currency     TEXT NOT NULL,
            promo        TEXT,
            rating       REAL,
            reviews      INTEGER NOT NULL DEFAULT 0,
            stock_store  INTEGER NOT NULL DEFAULT 0,
            stock_online INTEGER NOT NULL DEFAULT 0,
            version      INTEGER NOT NULL DEFAULT 0
        ) STRICT""",
        """CREATE TABLE barcodes (
            code TEXT PRIMARY KEY,
            sku  TEXT NOT NULL REFERENCES products(sku) ON DELETE CASCADE
        ) STRICT""",
        "CREATE INDEX barcodes_sku ON barcodes(sku)",
        """CREATE TABLE sales (
            id             TEXT PRIMARY KEY,
            client_sale_id TEXT NOT NULL UNIQUE,
            request_hash   TEXT NOT NULL,
            client         TEXT NOT NULL,
            created_at     TEXT NOT NULL,
            seq            INTEGER NOT NULL,
            body           TEXT NOT NULL
        ) STRICT""",
    ],
    # 3: what the hub sends down: pickup orders and member cards.
    [
        """CREATE TABLE orders (
            order_id    TEXT PRIMARY KEY,
            pickup_code TEXT NOT NULL,
            member_id   TEXT,
            lines       TEXT NOT NULL,
            ready_by    TEXT,
            status      TEXT NOT NULL DEFAULT 'new',
            received_at TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE members (
            member_id   TEXT PRIMARY KEY,
            card        TEXT NOT NULL,
            expires_at  TEXT,
            received_at TEXT NOT NULL
        ) STRICT""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before."""
    conn: sqlite3.Connection = db.conn
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {found} is newer than this agent's {SCHEMA_VERSION}; "
            "run the newer agent or restore a backup"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
