"""Schema versions, applied in order at start-up; ``PRAGMA user_version`` says
which have run. Append new steps; never edit one that has shipped."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone

from edge_agent.store import codec, keys

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


def _personal_data(conn: sqlite3.Connection) -> None:
    """11: personal data kept no longer than needed (edge_agent/privacy.py).

    - ``acks``: when the hub acknowledged up to each seq (store/outbox.py
      ``acknowledge``); retention counts from there. Events acknowledged
      before this step count as acknowledged now.
    - ``access_log``: who read which member's data (the member as its
      pseudonym, store/keys.py), with its own retention.
    - ``orders.status_seq``: the seq of the order's last status event; a
      collected order is swept once that event is acknowledged. Orders
      collected before this step take the last seq numbered so far.
      ``orders.member_pseudonym``: the member, once swept.
    - Pickup codes become keyed hashes (store/keys.py ``code_hash``); a
      collected order's code is no longer needed and goes.
    - ``meta``: the sweep's cursor (``privacy_swept_seq``: sales, returns and
      orders up to it are swept), the last access log row summarised to the
      hub (``privacy_summary_id``), the last placed order whose replay no
      longer shows its pickup code (``privacy_placed_seq``).
    """
    conn.execute("""CREATE TABLE acks (
        seq INTEGER PRIMARY KEY,
        at  TEXT NOT NULL
    ) STRICT""")
    conn.execute("INSERT INTO acks (seq, at) SELECT value, ? FROM meta WHERE key = 'acked_seq' AND value > 0",
                 (datetime.now(timezone.utc).isoformat(),))
    conn.execute("""CREATE TABLE access_log (
        id     INTEGER PRIMARY KEY,
        at     TEXT NOT NULL,
        client TEXT NOT NULL,
        role   TEXT NOT NULL,
        member TEXT NOT NULL,
        what   TEXT NOT NULL
    ) STRICT""")
    conn.execute("CREATE INDEX access_log_at ON access_log(at)")
    conn.execute("ALTER TABLE orders ADD COLUMN status_seq INTEGER")
    conn.execute("ALTER TABLE orders ADD COLUMN member_pseudonym TEXT")
    conn.execute("UPDATE orders SET status_seq = (SELECT value FROM meta WHERE key = 'last_seq') "
                 "WHERE status = 'collected'")
    conn.execute("CREATE INDEX orders_status_seq ON orders(status_seq) WHERE status_seq IS NOT NULL")
    conn.execute("INSERT INTO meta (key, value) VALUES ('privacy_swept_seq', 0), ('privacy_summary_id', 0), "
                 "('privacy_placed_seq', 0)")
    conn.execute("UPDATE orders SET pickup_code = '' WHERE status = 'collected'")
    rows = conn.execute("SELECT order_id, pickup_code FROM orders WHERE pickup_code != ''").fetchall()
    if rows:
        key = keys.database_key(conn)
        conn.executemany("UPDATE orders SET pickup_code = ? WHERE order_id = ?",
                         [(keys.code_hash(key, order_id, code), order_id) for order_id, code in rows])


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
    # The print queue (edge_agent/printing.py): one row per job, in the order
    # jobs were queued (seq). data is the document's JSON, rendered at print
    # time so a copy that may have printed before gets its REPRINT mark.
    [
        """CREATE TABLE print_jobs (
            seq         INTEGER PRIMARY KEY,
            id          TEXT NOT NULL UNIQUE,
            device      TEXT NOT NULL,
            kind        TEXT NOT NULL CHECK (kind IN ('sale_receipt', 'return_slip', 'pick_ticket', 'test_page')),
            data        TEXT NOT NULL,
            state       TEXT NOT NULL CHECK (state IN ('queued', 'printing', 'done', 'failed')),
            reprint     INTEGER NOT NULL DEFAULT 0,
            attempts    INTEGER NOT NULL DEFAULT 0,
            replaced    INTEGER NOT NULL DEFAULT 0,
            reason      TEXT,
            ref         TEXT,
            created_at  TEXT NOT NULL,
            started_at  TEXT,
            finished_at TEXT
        ) STRICT""",
        "CREATE INDEX print_jobs_queue ON print_jobs(device, state, seq)",
        "CREATE INDEX print_jobs_ref ON print_jobs(ref) WHERE ref IS NOT NULL",
    ],
    # Shelf labels (edge_agent/labels/): which product each label shows, what
    # it should show, what its back end last accepted and what it confirmed
    # the label shows. Prices are decimal strings, times ISO-8601 UTC. A
    # label is a tag MAC (16 hex digits) or a file back end's key. Alerts
    # raised once per condition and cleared once (subject: a label or a device).
    [
        """CREATE TABLE labels (
            mac            TEXT PRIMARY KEY,
            device         TEXT NOT NULL,
            sku            TEXT,
            model          TEXT NOT NULL,
            source         TEXT NOT NULL CHECK (source IN ('config', 'api')),
            bound_at       TEXT NOT NULL,
            desired_hash   TEXT,
            desired_price  TEXT,
            desired_note   TEXT,
            checkout_price TEXT,
            planned_at     TEXT,
            pushed_hash    TEXT,
            pushed_price   TEXT,
            pushed_sku     TEXT,
            pushed_at      TEXT,
            push_token     TEXT,
            shown_hash     TEXT,
            shown_price    TEXT,
            shown_sku      TEXT,
            shown_since    TEXT,
            confirmed_at   TEXT,
            shown_token    TEXT,
            last_error     TEXT,
            error_at       TEXT,
            wrong_since    TEXT
        ) STRICT""",
        "CREATE INDEX labels_sku ON labels(sku)",
        "CREATE INDEX labels_device ON labels(device)",
        """CREATE TABLE label_alerts (
            subject   TEXT NOT NULL,
            kind      TEXT NOT NULL CHECK (kind IN ('price', 'stale', 'battery', 'device')),
            since     TEXT NOT NULL,
            raised_at TEXT NOT NULL,
            data      TEXT NOT NULL,
            PRIMARY KEY (subject, kind)
        ) STRICT""",
    ],
    # Store flows (edge_agent/returns.py, stock.py, loyalty.py, orders.py).
    # A return is stored once, like a sale: the outbox reads its event's data
    # from its row (outbox.RECORDS). Its state changes when the hub judges a
    # pending online return; its body (the event as sent) never does. A
    # manual stock adjustment keeps its answer here for idempotent replays
    # (its event is an ordinary outbox row: adjustments are rare).
    # members.used_points: the points this store has taken from the card
    # since the hub sent it (reset by a new card), so two kiosks cannot
    # spend the same points offline.
    [
        """CREATE TABLE returns (
            seq              INTEGER PRIMARY KEY,
            return_id        BLOB NOT NULL UNIQUE,
            client_return_id BLOB NOT NULL UNIQUE,
            request_hash     BLOB NOT NULL,
            sale_seq         INTEGER,
            order_id         TEXT,
            state            TEXT NOT NULL CHECK (state IN ('accepted', 'pending', 'rejected')),
            body             BLOB NOT NULL
        ) STRICT""",
        "CREATE INDEX returns_sale ON returns(sale_seq) WHERE sale_seq IS NOT NULL",
        "CREATE INDEX returns_order ON returns(order_id) WHERE order_id IS NOT NULL",
        """CREATE TABLE stock_adjustments (
            seq                  INTEGER PRIMARY KEY,
            adjustment_id        BLOB NOT NULL UNIQUE,
            client_adjustment_id BLOB UNIQUE,
            request_hash         BLOB,
            body                 BLOB NOT NULL
        ) STRICT""",
        "ALTER TABLE members ADD COLUMN used_points INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX members_expiry ON members(expires_at)",
        "ALTER TABLE orders ADD COLUMN code_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN locked_until TEXT",
        "CREATE INDEX orders_status ON orders(status, received_at)",
    ],
    # Pickup orders placed in this store (edge_agent/orders.py ``place``): the
    # mirror's "Order online", a kiosk, an associate. orders.origin says where
    # an order came from ('hub' for each one the hub sent). placed_orders keeps
    # a placed order's idempotency key, request hash and answer; its event is
    # an ordinary outbox row, like an adjustment's (orders are placed rarely,
    # and one more record table would join into every outbox read).
    [
        "ALTER TABLE orders ADD COLUMN origin TEXT NOT NULL DEFAULT 'hub'",
        """CREATE TABLE placed_orders (
            order_id        TEXT PRIMARY KEY,
            client_order_id BLOB NOT NULL UNIQUE,
            request_hash    BLOB NOT NULL,
            seq             INTEGER NOT NULL,
            body            BLOB NOT NULL
        ) STRICT""",
    ],
    # members.earned_points: the points sales here earned since the card
    # arrived, less what returns of those sales took back. The card does not
    # hold them yet (the hub credits them from the sales' events), so a
    # return of such a sale takes its points from here, not from the card;
    # receipts and slips print card - used + earned. Reset by a new card.
    [
        "ALTER TABLE members ADD COLUMN earned_points INTEGER NOT NULL DEFAULT 0",
    ],
    # 10: streams (streams.py): each run of the database numbers its events in
    # a stream of its own. Events numbered before are the legacy stream "".
    [
        """CREATE TABLE streams (
            id         TEXT PRIMARY KEY,
            base       INTEGER NOT NULL UNIQUE,
            started_at TEXT NOT NULL
        ) STRICT""",
        "INSERT INTO streams (id, base, started_at) SELECT '', 0, strftime('%Y-%m-%dT%H:%M:%fZ') "
        "FROM meta WHERE key = 'last_seq' AND value > 0",
    ],
    # 11: personal data: acknowledgement times, the access log, hashed pickup codes.
    _personal_data,
    # 12: associates' devices (PADs, wristbands) paired with a one-time code instead of a typed token
    # (edge_agent/pairing.py): only SHA-256s of codes and tokens are kept, a revoked device keeps its row.
    # And a shelf label's zone (an aisle or area), so a wrong label reaches the associates of that zone.
    [
        """CREATE TABLE paired_clients (
            name         TEXT PRIMARY KEY,
            role         TEXT NOT NULL CHECK (role IN ('associate')),
            token_sha256 TEXT NOT NULL UNIQUE,
            zones        TEXT NOT NULL DEFAULT '[]',
            paired_at    TEXT NOT NULL,
            paired_by    TEXT NOT NULL,
            last_seen    TEXT,
            revoked_at   TEXT,
            revoked_by   TEXT
        ) STRICT""",
        """CREATE TABLE pairing_codes (
            code_sha256 TEXT PRIMARY KEY,
            name        TEXT NOT NULL,
            role        TEXT NOT NULL CHECK (role IN ('associate')),
            zones       TEXT NOT NULL DEFAULT '[]',
            created_at  TEXT NOT NULL,
            created_by  TEXT NOT NULL,
            expires_at  TEXT NOT NULL,
            used_at     TEXT
        ) STRICT""",
        "ALTER TABLE labels ADD COLUMN zone TEXT",
    ],
    # 13: the history of unpairings: a device unpaired, whose name is then paired again, keeps its row here
    # (who paired and unpaired it, when, its token's SHA-256, still refused as "unpaired").
    [
        """CREATE TABLE unpaired_clients (
            name         TEXT NOT NULL,
            role         TEXT NOT NULL CHECK (role IN ('associate')),
            token_sha256 TEXT NOT NULL UNIQUE,
            zones        TEXT NOT NULL DEFAULT '[]',
            paired_at    TEXT NOT NULL,
            paired_by    TEXT NOT NULL,
            last_seen    TEXT,
            revoked_at   TEXT NOT NULL,
            revoked_by   TEXT
        ) STRICT""",
        "CREATE INDEX unpaired_clients_name ON unpaired_clients (name, paired_at)",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before."""
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
