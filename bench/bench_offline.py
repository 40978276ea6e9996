"""Offline capacity: disk bytes per buffered sale, against the same events' CloudEvents JSON.

While the hub is unreachable a store keeps selling, and every sale stays on
disk: its row in ``sales`` (which also holds its event's data, packed) and
its ``retail.sale.completed`` row in the outbox (seq, id, type, time), until
the hub acknowledges it. The target is a week of a busy store, 350,000
sales, in under 200 MB.

The sales go through the agent's real write path: ``edge_agent.sales.record``
inside ``Store.write`` (group commit, WAL, synchronous=FULL), from 32
concurrent tasks, with the demo catalog (demo/catalog.json) imported by
``edge_agent.catalog.upsert``; 1 to 3 lines a sale, 40 % with a member id,
no hub link at all. Then the WAL is checkpointed into the main file
(``PRAGMA wal_checkpoint(TRUNCATE)``) and the file is measured; bytes per
sale are (file size - size with only the catalog) / sales, and ``dbstat``
splits the file between the outbox table, the sales table (table, sale id
and client_sale_id indexes) and free pages.

Baseline, same run: the raw CloudEvents JSON of the same events
(``sync.topics.encode_event``), what they weigh on the wire. The target row
compares the projected file for 350,000 sales with the fixed 200 MB budget.
``--quick`` writes 20,000 sales and projects. Afterwards the outbox must hold
seq 1..N and ``sales`` N rows; otherwise a failure row and exit status 1.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from common import REPO, Row, arguments, check_row, cpu_count, durable_tmpdir, is_check, report, row
from edge_agent import catalog, sales
from edge_agent.store import Store
from edge_agent.store import outbox
from sync.topics import encode_event

BENCH = "offline"
STORE_ID = "store-0042"
SOURCE = f"edge/{STORE_ID}"
WEEK = 350_000           # sales in a busy store's week
BUDGET_MB = 200
WRITERS = 32
MB = 1_000_000


@dataclass(frozen=True)
class Plan:
    """How many sales to write (the figure for WEEK is projected from them)."""

    sales: int


DEFAULT = Plan(sales=WEEK)     # about 1.5 min on 2 cores
QUICK = Plan(sales=20_000)     # a few seconds


def demo_catalog() -> list[catalog.CatalogItem]:
    """The demo catalog, with stock enough that no count goes below zero."""
    items = TypeAdapter(list[catalog.CatalogItem]).validate_json((REPO / "demo" / "catalog.json").read_bytes())
    return [item.model_copy(update={"stock_store": 10_000_000}) for item in items]


def sale_in(rng: random.Random, codes: list[str]) -> sales.SaleIn:
    """A kiosk's sale: 1 to 3 lines by barcode, 40 % with a member, card/QR/cash."""
    lines = [{"code": code, "qty": rng.choice((1, 1, 1, 2, 3))} for code in rng.sample(codes, rng.randint(1, 3))]
    method = rng.choice(("card", "qr", "cash"))
    return sales.SaleIn.model_validate({
        "client_sale_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "lines": lines,
        "member_id": f"M-{rng.randrange(10**8):08d}" if rng.random() < 0.4 else None,
        "payment": {"method": method, "reference": None if method == "cash" else f"T{rng.randrange(10**12):012d}"},
    })


async def _writer(store: Store, worker: int, count: int, codes: list[str]) -> None:
    rng = random.Random(worker)
    client = f"kiosk-{worker % 4 + 1}"
    for _ in range(count):
        sale = sale_in(rng, codes)
        await store.write(lambda tx, s=sale: sales.record(tx, s, client, STORE_ID))


async def _fill(path: Path, n: int) -> tuple[int, float]:
    """Import the catalog, note the checkpointed size, write ``n`` sales; (size before, seconds)."""
    items = demo_catalog()
    codes = [code for item in items for code in item.barcodes]
    store = Store(path)
    await store.start()
    try:
        await store.write(lambda tx: catalog.upsert(tx.conn, items))
        empty = checkpointed_size(path)
        start = time.perf_counter()
        share, rest = divmod(n, WRITERS)
        await asyncio.gather(*(_writer(store, w, share + (w < rest), codes) for w in range(WRITERS)))
        seconds = time.perf_counter() - start
    finally:
        await store.stop()
    return empty, seconds


def checkpointed_size(path: Path) -> int:
    """Bytes of the database file after its WAL is checkpointed into it and truncated."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{path}: the WAL checkpoint could not finish (a reader or writer is still open)")
    finally:
        conn.close()
    return path.stat().st_size


@dataclass
class Measured:
    """What the filled store weighs, by part, and what its events weigh as JSON."""

    sales: int
    seconds: float
    empty: int
    size: int
    parts: dict[str, int]
    wire: int
    outbox_rows: int
    seq_range: tuple[int, int]
    last_seq: int
    sales_rows: int


def parts_of(conn: sqlite3.Connection, size: int) -> dict[str, int]:
    """Bytes of the file per part: outbox, sales (table + indexes), other, free."""
    by_table = {"outbox": 0, "sales": 0, "other": 0}
    for name, table, pages in conn.execute(
            "SELECT d.name, coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
            "LEFT JOIN sqlite_schema m ON m.name = d.name GROUP BY d.name"):
        by_table[table if table in by_table else "other"] += pages
    by_table["free"] = size - sum(by_table.values())
    return by_table


def measure(plan: Plan) -> Measured:
    """Write the sales, checkpoint, measure the file, the parts and the events' JSON."""
    with durable_tmpdir("bench-offline-") as tmp:
        path = tmp / "store.db"
        empty, seconds = asyncio.run(_fill(path, plan.sales))
        size = checkpointed_size(path)
        conn = sqlite3.connect(path)
        try:
            parts = parts_of(conn, size)
            wire = 0
            for event in outbox.pending(conn, 0, plan.sales):
                wire += len(encode_event(SOURCE, event))
            count, lo, hi = conn.execute("SELECT count(*), min(seq), max(seq) FROM outbox").fetchone()
            last_seq = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
            sales_rows = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
        finally:
            conn.close()
    return Measured(plan.sales, seconds, empty, size, parts, wire, count, (lo, hi), last_seq, sales_rows)


def rows_for(m: Measured) -> list[Row]:
    """Bytes per sale against its JSON, the projected week against the budget, and the checks."""
    n = m.sales
    per_event = (m.size - m.empty) / n
    wire = m.wire / n
    week = (m.empty + per_event * WEEK) / MB
    share = {k: v / n for k, v in m.parts.items()}
    how = (f"{n:,} sales via sales.record in Store.write, {WRITERS} tasks, {m.seconds:.1f}s "
           f"({n / m.seconds:,.0f} sales/s, {cpu_count()} CPUs); WAL checkpointed")
    rows = [
        row(BENCH, "store file per buffered sale", per_event, "bytes", "its CloudEvents JSON on the wire", wire,
            higher_is_better=False,
            note=(f"disk/raw {per_event / wire:.2f}; per sale: outbox {share['outbox']:.0f} B, "
                  f"sales {share['sales']:.0f} B (table + 2 indexes), free pages {share['free']:.0f} B, "
                  f"other {share['other']:.0f} B; {how}")),
        row(BENCH, f"store file for {WEEK:,} sales (a busy week)", week, "MB", "budget", BUDGET_MB,
            higher_is_better=False, min_ratio=1,
            note=(("measured" if n == WEEK else f"projected from {n:,}") +
                  f": {m.empty / MB:.2f} MB empty + {WEEK:,} × {per_event:.0f} B; outbox alone "
                  f"{share['outbox'] * WEEK / MB:.0f} MB, the same events as JSON {wire * WEEK / MB:.0f} MB")),
        check_row(BENCH, "outbox holds seq 1..N", m.outbox_rows, n, "events",
                  f"seq {m.seq_range[0]}..{m.seq_range[1]}, meta.last_seq {m.last_seq}"),
        check_row(BENCH, "sales table holds every sale", m.sales_rows, n, "sales", "one row per sales.record"),
    ]
    if m.seq_range != (1, n) or m.last_seq != n:
        rows.append(check_row(BENCH, "outbox seq range is 1..N", m.seq_range[1], n, "seq",
                              f"seq {m.seq_range[0]}..{m.seq_range[1]}, meta.last_seq {m.last_seq}"))
    return rows


def main() -> int:
    """Measure, print the rows; exit 1 if a check failed."""
    args = arguments(__doc__.splitlines()[0])
    plan = QUICK if args.quick else DEFAULT
    rows = rows_for(measure(plan))
    report(rows, args)
    return 1 if any(is_check(r) and not r["met"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
