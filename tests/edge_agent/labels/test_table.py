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


def test_a_held_label_is_not_written_until_released(tmp_path):
    """A flow writing a label's binding holds it: the recorder's copy of the old binding must not land
    after the flow's row; once released, the label's newest row is written."""
    async def scenario():
        store = Store(tmp_path / "s.db")
        await store.start()
        labels = {m: Label(mac=m, device="d", sku="MILK", model="m2-2.9-bwr", source="config", bound_at=T0)
                  for m in ("A", "B")}
        recorder = Recorder(store, labels)
        recorder.start()

        async def stored() -> dict[str, Label]:
            return {lb.mac: lb for lb in await store.read(lambda c: load(c))}

        try:
            recorder.mark(labels["A"])
            recorder.mark(labels["B"])
            await recorder.flush()
            recorder.hold("A")
            recorder.hold("A")  # two flows at once
            labels["A"].shown_price = labels["B"].shown_price = Decimal("1.00")
            recorder.mark(labels["A"])
            recorder.mark(labels["B"])
            for _ in range(1000):  # B's batch commits; A waits
                if (await stored())["B"].shown_price is not None:
                    break
                await asyncio.sleep(0.01)
            assert (await stored())["B"].shown_price == Decimal("1.00")
            assert (await stored())["A"].shown_price is None
            recorder.release("A")  # still held by the other
            assert (await stored())["A"].shown_price is None
            labels["A"] = Label(mac="A", device="d", sku="TEA", model="m2-2.9-bwr", source="api", bound_at=T0)
            recorder.mark(labels["A"])
            recorder.release("A")
            await asyncio.wait_for(recorder.flush(), 10)
            return await stored()
        finally:
            await recorder.stop()
            await store.stop()

    rows = asyncio.run(scenario())
    assert (rows["A"].sku, rows["A"].source) == ("TEA", "api")

