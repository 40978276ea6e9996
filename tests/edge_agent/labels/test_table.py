"""The label tables: one migration step, STRICT tables, and rows written back in batches."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from edge_agent.labels.table import Label, Recorder, load
from edge_agent.store import Store
from edge_agent.store.migrations import MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def test_the_label_tables_are_one_appended_strict_step(tmp_path):
    async def scenario():
        store = Store(tmp_path / "s.db")
        await store.start()
        await store.stop()

    asyncio.run(scenario())
    db = sqlite3.connect(tmp_path / "s.db")
    ddl = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert ddl["labels"].rstrip().endswith("STRICT") and ddl["label_alerts"].rstrip().endswith("STRICT")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    steps = [i + 1 for i, step in enumerate(MIGRATIONS)
             if not callable(step) and any("CREATE TABLE labels" in s for s in step)]
    assert len(steps) == 1 and any("CREATE TABLE label_alerts" in s for s in MIGRATIONS[steps[0] - 1])
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO label_alerts VALUES ('x', 'nonsense', '', '', '{}')")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO labels (mac, device, model, source, bound_at) VALUES ('m', 'd', 'x', 'ui', '')")


def test_the_recorder_writes_what_changed_many_per_commit(tmp_path):
    async def scenario():
        store = Store(tmp_path / "s.db")
        await store.start()
        labels = {f"L{i}": Label(mac=f"L{i}", device="d", sku="MILK", model="m2-2.9-bwr", source="api",
                                 bound_at=T0) for i in range(200)}
        recorder = Recorder(store, labels)
        recorder.start()
        try:
            for label in labels.values():
                recorder.mark(label)
            labels["L7"].shown_price = Decimal("12.80")
            recorder.mark(labels["L7"])
            await recorder.flush()
            rows = {lb.mac: lb for lb in await store.read(lambda c: load(c))}
            commits = store.stats.commits
        finally:
            await recorder.stop()
            await store.stop()
        return rows, commits

    rows, commits = asyncio.run(scenario())
    assert len(rows) == 200 and rows["L7"].shown_price == Decimal("12.80") and rows["L7"].bound_at == T0
    assert commits <= 3
