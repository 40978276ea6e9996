"""The internal event bus: prefix filtering, bounded queues, unsubscribe."""

from __future__ import annotations

import asyncio

from edge_agent.bus import EventBus


def run(coro, timeout: float = 5.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _drain(sub) -> list:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_prefix_filtering():
    async def main():
        bus = EventBus()
        devices = bus.subscribe("device.")
        scans_and_sales = bus.subscribe("scan", "sale.")
        everything = bus.subscribe()
        for t in ("device.state", "scan.read", "sale.completed", "sales.report", "devices"):
            bus.publish(t, {"t": t})
        assert [e.type for e in _drain(devices)] == ["device.state"]
        assert [e.type for e in _drain(scans_and_sales)] == ["scan.read", "sale.completed"]
        assert [e.type for e in _drain(everything)] == [
            "device.state", "scan.read", "sale.completed", "sales.report", "devices"]

    run(main())


def test_events_carry_increasing_ids_and_data():
    async def main():
        bus = EventBus()
        sub = bus.subscribe()
        a = bus.publish("x", {"n": 1})
        b = bus.publish("x", {"n": 2})
        assert b.id == a.id + 1
        got = [await sub.get(), await sub.get()]
        assert got == [a, b]
        assert [e.data for e in got] == [{"n": 1}, {"n": 2}]

    run(main())


def test_slow_subscriber_loses_oldest_and_publisher_never_blocks():
    async def main():
        bus = EventBus()
        slow = bus.subscribe("tick", maxsize=3)
        fast = bus.subscribe("tick", maxsize=100)
        for n in range(10):
            bus.publish("tick", {"n": n})  # synchronous: returning at all means it did not block
        assert slow.dropped == 7
        assert [e.data["n"] for e in _drain(slow)] == [7, 8, 9]
        assert fast.dropped == 0
        assert [e.data["n"] for e in _drain(fast)] == list(range(10))

    run(main())


def test_async_iteration_yields_in_order():
    async def main():
        bus = EventBus()
        sub = bus.subscribe("a")
        bus.publish("a.1", {})
        bus.publish("a.2", {})
        seen = []
        async for event in sub:
            seen.append(event.type)
            if len(seen) == 2:
                break
        assert seen == ["a.1", "a.2"]

    run(main())


def test_close_unsubscribes():
    async def main():
        bus = EventBus()
        sub = bus.subscribe()
        other = bus.subscribe()
        bus.publish("before", {})
        sub.close()
        sub.close()  # twice is fine
        bus.publish("after", {})
        assert [e.type for e in _drain(sub)] == ["before"]
        assert [e.type for e in _drain(other)] == ["before", "after"]

    run(main())
