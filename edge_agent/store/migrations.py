"""Schema versions, applied in order at start-up; ``PRAGMA user_version`` says
which have run. Append new steps; never edit one that has shipped."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from edge_agent.store import codec

Step = list[str] | Callable[[sqlite3.Connection], None]


def _pack_rows(conn: sqlite3.Connection) -> None:
    """4: a week offline in 200 MB (bench/bench_offline.py).

    The outbox keeps its rows but packs their data (codec.pack), stores the
    event id as 16 bytes and loses the id index (ids are UUIDv7s made here,
    never looked up). A sale is stored once: its event in the outbox has no
    data of its own (NULL) and is read from the sale's record, the row of
    ``sales`` with the same seq, whose body holds the event's data under
    ``event`` beside what only the receipt needs. Sale ids are 16 bytes too,
    and the request hash the first 16 bytes of its SHA-256.
    """
    conn.execute("""CREATE TABLE outbox_v4 (
        seq      INTEGER PRIMARY KEY,
        id       BLOB NOT NULL,
        type     TEXT NOT NULL,
        time     TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        data     BLOB
    ) STRICT""")
    conn.execute("""CREATE TABLE sales_v4 (
        seq            INTEGER PRIMARY KEY,
        sale_id        BLOB NOT NULL UNIQUE,
        client_sale_id BLOB NOT NULL UNIQUE,
        request_hash   BLOB NOT NULL,
        body           BLOB NOT NULL
    ) STRICT""")
    for seq, id_, type_, time, priority, data in conn.execute("SELECT * FROM outbox ORDER BY seq").fetchall():
        conn.execute("INSERT INTO outbox_v4 VALUES (?, ?, ?, ?, ?, ?)",
                     (seq, codec.uuid_bytes(id_), type_, time, priority, codec.pack(codec.unpack(data))))
    for sale_id, client_sale_id, request_hash, client, created_at, seq, body in conn.execute(
            "SELECT id, client_sale_id, request_hash, client, created_at, seq, body FROM sales").fetchall():
        old = codec.unpack(body)
        event = {k: v for k, v in old.items() if k not in ("id", "lines", "created_at", "seq")}
        event["lines"] = [{k: line[k] for k in ("sku", "qty", "unit_price")} for line in old["lines"]]
        record = {"event": event, "names": [line["name"] for line in old["lines"]], "created_at": created_at}
        conn.execute("INSERT INTO sales_v4 VALUES (?, ?, ?, ?, ?)",
                     (seq, codec.uuid_bytes(sale_id), codec.uuid_bytes(client_sale_id),
                      bytes.fromhex(request_hash)[:16], codec.pack(record)))
    conn.execute("DROP TABLE outbox")
    conn.execute("ALTER TABLE outbox_v4 RENAME TO outbox")
    conn.execute("DROP TABLE sales")
    conn.execute("ALTER TABLE sales_v4 RENAME TO sales")


# Each step is a list of statements, or a function, run in one transaction.
MIGRATIONS: list[Step] = [
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
    _pack_rows,
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
            step = MIGRATIONS[version - 1]
            if callable(step):
                step(conn)
            else:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
