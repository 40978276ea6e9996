"""An ended try-on session becomes one ``retail.tryon.session`` telemetry event in the outbox.

The recorder gets the outbox only as a callable; these tests wire it to a real
store the way edge_agent/agent.py does.
"""

from __future__ import annotations

import asyncio
import functools
import logging

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


def telemetry_of(store: Store):
    """What the agent passes the recorder: the store's emit at telemetry priority."""
    return functools.partial(store.emit, priority=Priority.TELEMETRY)


async def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_session_is_stored_as_telemetry(tmp_path):
    async def scenario() -> list[outbox.OutboxEvent]:
        store = Store(tmp_path / "store.db")
        await store.start()
        bus = EventBus()
        recorder = TryOnRecorder(telemetry_of(store), bus)
        await recorder.start()
        committed = asyncio.Event()
        loop = asyncio.get_running_loop()
        store.add_commit_listener(lambda seq: loop.call_soon_threadsafe(committed.set))
        bus.publish(SESSION_ENDED, SESSION)
        await asyncio.wait_for(committed.wait(), 30)
        await recorder.stop()
        events = await store.read(lambda conn: outbox.pending(conn))
        await store.stop()
        return events

    events = asyncio.run(scenario())
    assert [(e.type, e.priority, e.data) for e in events] == [(TRYON_EVENT, Priority.TELEMETRY, SESSION)]


def test_a_session_the_store_refuses_is_logged_and_the_next_one_is_recorded(tmp_path, caplog):
    async def scenario() -> tuple[TryOnRecorder, list[outbox.OutboxEvent]]:
        closed = Store(tmp_path / "closed.db")
        await closed.start()
        await closed.stop()  # a stopped store refuses writes with StoreClosed, an EdgeError
        live = Store(tmp_path / "live.db")
        await live.start()
        sinks = [telemetry_of(closed), telemetry_of(live)]
        bus = EventBus()
        recorder = TryOnRecorder(lambda type_, data: sinks.pop(0)(type_, data), bus)
        await recorder.start()
        bus.publish(SESSION_ENDED, {**SESSION, "session_id": "lost"})
        bus.publish(SESSION_ENDED, SESSION)
        await wait_for(lambda: recorder.recorded == 1, "the second session to be recorded")
        await recorder.stop()
        events = await live.read(lambda conn: outbox.pending(conn))
        await live.stop()
        return recorder, events

    with caplog.at_level(logging.WARNING, logger="drivers.mirror.recorder"):
        recorder, events = asyncio.run(scenario())
    assert [e.data["session_id"] for e in events] == ["3b1f"]
    assert recorder.recorded == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "drivers.mirror.recorder"]
    assert line.startswith("try-on session lost not recorded: ")
