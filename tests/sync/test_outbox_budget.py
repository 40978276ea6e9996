"""The outbox budget: telemetry is dropped oldest first, business events never."""

from __future__ import annotations

import asyncio
import random

from edge_agent.store import Store, outbox
from edge_agent.store.outbox import DROPPED_TYPE, Priority


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def noise(n: int, seed: int = 0) -> str:
    """``n`` characters that do not compress: the outbox packs what it stores."""
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def test_drop_telemetry_keeps_seq_and_business_events(tmp_path):
    big = {"blob": noise(2400)}  # about 2,000 bytes packed

    async def main():
        store = Store(tmp_path / "s.db")
        await store.start()
        for i in range(10):
            await store.emit("retail.stock.adjusted" if i % 2 else "retail.device.alert", {**big, "i": i},
                             Priority.BUSINESS if i % 2 else Priority.TELEMETRY)
        before = store.outbox_bytes
        dropped, freed = await store.write(lambda tx: outbox.drop_telemetry(tx.conn, 4500))
        events = await store.read(outbox.pending)
        counted = await store.read(outbox.usage)
        await store.stop()
        return before, dropped, freed, events, counted

    before, dropped, freed, events, counted = run(main())
    assert dropped == 3 and freed >= 4500  # the three oldest alerts: seq 1, 3, 5
    assert [e.seq for e in events] == list(range(1, 11))  # nothing removed: no gap for the hub
    tombs = [e for e in events if e.type == DROPPED_TYPE]
    assert [e.seq for e in tombs] == [1, 3, 5]
    assert tombs[0].data == {"dropped_type": "retail.device.alert", "reason": "outbox budget reached"}
    assert all(e.data["blob"] for e in events if e.type == "retail.stock.adjusted")
    assert [e.type for e in events if e.seq in (7, 9)] == ["retail.device.alert"] * 2
    assert before > counted[1] > 0


def test_store_counts_outbox_bytes_across_restarts(tmp_path):
    async def main():
        store = Store(tmp_path / "s.db")
        await store.start()
        for i in range(5):
            await store.emit("t", {"i": i, "pad": noise(100, i)})
        counted_live = store.outbox_bytes
        await store.stop()
        store = Store(tmp_path / "s.db")
        await store.start()
        counted_again = store.outbox_bytes
        await store.stop()
        return counted_live, counted_again

    live, again = run(main())
    assert live == again > 5 * 100
