"""An ended try-on session becomes one ``retail.tryon.session`` telemetry event in the outbox."""

from __future__ import annotations

import asyncio

from drivers.mirror.driver import SESSION_ENDED
from drivers.mirror.recorder import TRYON_EVENT, TryOnRecorder
from edge_agent.bus import EventBus
from edge_agent.store import Store
from edge_agent.store import outbox
from edge_agent.store.outbox import Priority

SESSION = {"session_id": "3b1f", "device": "mirror-1", "station": "mirror-1", "started_at": "2026-11-24T10:00:00+00:00",
           "ended_at": "2026-11-24T10:02:00+00:00", "seconds": 120.0, "face_seconds": 95.5, "ended_by": "done",
           "compared": True, "tried": [{"sku": "LIP-RED-01", "kind": "lipstick", "seconds": 60.0}],
           "basket": [{"sku": "LIP-RED-01", "qty": 1, "channel": "store"}]}


def test_a_session_is_stored_as_telemetry(tmp_path):
    async def scenario() -> list[outbox.OutboxEvent]:
        store = Store(tmp_path / "store.db")
        await store.start()
        bus = EventBus()
        recorder = TryOnRecorder(store, bus)
        await recorder.start()
        committed = asyncio.Event()
        loop = asyncio.get_running_loop()
        store.add_commit_listener(lambda seq: loop.call_soon_threadsafe(committed.set))
        bus.publish(SESSION_ENDED, SESSION)
        await asyncio.wait_for(committed.wait(), 10)
        await recorder.stop()
        events = await store.read(lambda conn: outbox.pending(conn))
        await store.stop()
        return events

    events = asyncio.run(scenario())
    assert [(e.type, e.priority, e.data) for e in events] == [(TRYON_EVENT, Priority.TELEMETRY, SESSION)]
