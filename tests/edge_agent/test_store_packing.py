"""Packed storage (store/codec.py) and the step to schema 4 that packs rows already on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import catalog, sales
from edge_agent.store import Store, codec, outbox
from edge_agent.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_pack_round_trips_any_json(document):
    assert codec.unpack(codec.pack(document)) == document


def test_a_sale_packs_to_well_under_its_json():
    sale = {"event": {"sale_id": str(uuid.uuid4()), "client_sale_id": str(uuid.uuid4()), "store": "store-001",
                      "client": "kiosk-1", "lines": [{"sku": "LIP-001", "qty": 1, "unit_price": "129.00"}],
                      "total": "129.00", "currency": "CNY", "member_id": None, "points_earned": 0,
                      "points_redeemed": 0, "payment": {"method": "card", "reference": "T000123"}},
            "names": ["Velvet Matte Lipstick"], "created_at": "2026-11-24T10:00:00.123456+00:00"}
    raw = len(json.dumps(sale, separators=(",", ":")))
    assert len(codec.pack(sale)) < raw * 0.5


def test_unpack_reads_plain_json_and_refuses_unknown_versions():
    assert codec.unpack('{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="unknown packing version"):
        codec.unpack(b"\x07junk")


def _schema_3(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for version, step in enumerate(MIGRATIONS[:3], 1):
        for statement in step:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_schema_4_packs_an_older_store_and_keeps_every_event_and_sale(tmp_path):
    path = tmp_path / "store.db"
    conn = _schema_3(path)
    sale_id, key = str(uuid.uuid4()), str(uuid.uuid4())
    request_hash = hashlib.sha256(b"body").hexdigest()
    data = {"sale_id": sale_id, "client_sale_id": key, "store": "store-001", "client": "kiosk-1",
            "lines": [{"sku": "TOTE01", "qty": 2, "unit_price": "5.00"}], "total": "10.00", "currency": "CNY",
            "member_id": None, "points_earned": 0, "points_redeemed": 0, "payment": {"method": "cash", "reference": None}}
    body = {**data, "id": sale_id, "lines": [{"sku": "TOTE01", "name": "Tote", "qty": 2, "unit_price": "5.00",
                                              "amount": "10.00"}], "created_at": "2026-11-01T08:00:00+00:00", "seq": 1}
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    conn.execute("INSERT INTO outbox VALUES (1, ?, 'retail.sale.completed', '2026-11-01T08:00:00+00:00', 0, ?)",
                 (ids[0], json.dumps(data)))
    conn.execute("INSERT INTO outbox VALUES (2, ?, 'retail.device.alert', '2026-11-01T08:00:01+00:00', 1, ?)",
                 (ids[1], json.dumps({"device": "printer-1", "reason": "paper out"})))
    conn.execute("UPDATE meta SET value = 2 WHERE key = 'last_seq'")
    conn.execute("INSERT INTO sales VALUES (?, ?, ?, 'kiosk-1', '2026-11-01T08:00:00+00:00', 1, ?)",
                 (sale_id, key, request_hash, json.dumps(body)))

    assert migrate(conn) == 3
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    events = outbox.pending(conn)
    assert [(e.seq, e.id, e.type) for e in events] == [
        (1, ids[0], "retail.sale.completed"), (2, ids[1], "retail.device.alert")]
    assert events[0].data == data
    assert events[1].data == {"device": "printer-1", "reason": "paper out"}
    seq, stored = conn.execute("SELECT seq, body FROM sales").fetchone()
    assert sales.sale_view(seq, stored) == body
    assert conn.execute("SELECT request_hash FROM sales").fetchone()[0] == bytes.fromhex(request_hash)[:16]
    conn.close()


def test_a_sale_is_stored_once_and_its_event_is_read_from_the_sale(tmp_path):
    async def main():
        store = Store(tmp_path / "store.db")
        await store.start()
        try:
            item = catalog.CatalogItem(sku="TOTE01", barcodes=["6901234567892"], name="Tote", price="5.00",
                                       currency="CNY", stock_store=10, version=1)
            await store.write(lambda tx: catalog.upsert(tx.conn, [item]))
            sale = sales.SaleIn.model_validate({"client_sale_id": str(uuid.uuid4()),
                                                "lines": [{"code": "6901234567892", "qty": 3}],
                                                "payment": {"method": "cash"}})
            view, replay = await store.write(lambda tx: sales.record(tx, sale, "kiosk-1", "store-001"))
            again, replay2 = await store.write(lambda tx: sales.record(tx, sale, "kiosk-1", "store-001"))
            stored_data = await store.read(lambda c: c.execute(
                "SELECT data FROM outbox WHERE seq = ?", (view["seq"],)).fetchone()[0])
            events = await store.read(outbox.pending)
        finally:
            await store.stop()
        return view, replay, again, replay2, stored_data, events

    view, replay, again, replay2, stored_data, events = asyncio.run(main())
    assert (replay, replay2) == (False, True) and again == view
    assert view["lines"] == [{"sku": "TOTE01", "name": "Tote", "qty": 3, "unit_price": "5.00", "amount": "15.00"}]
    assert stored_data is None  # no second copy in the outbox
    (event,) = [e for e in events if e.seq == view["seq"]]
    assert event.data["sale_id"] == view["id"] and event.data["total"] == "15.00"
    assert event.data["lines"] == [{"sku": "TOTE01", "qty": 3, "unit_price": "5.00"}]


def test_an_outbox_row_whose_record_is_gone_is_named(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO outbox VALUES (1, ?, 'retail.sale.completed', 't', 0, NULL)", (uuid.uuid4().bytes,))
    with pytest.raises(LookupError, match="outbox event 1 .* lost its record"):
        outbox.pending(conn)
