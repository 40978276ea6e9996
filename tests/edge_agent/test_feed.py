"""The live feed's ring, role filters, resume and slow-client cap (edge_agent/feed.py)."""

from __future__ import annotations

import asyncio

from edge_agent.bus import EventBus
from edge_agent.config import Role
from edge_agent.feed import Feed


async def _settle(feed: Feed, bus: EventBus, n: int) -> None:
    """Wait until the feed task has copied ``n`` events into its ring."""
    async with asyncio.timeout(5):
        while len(feed.ring) < n:
            await asyncio.sleep(0)


def test_roles_see_their_part_of_the_store():
    async def main():
        bus = EventBus()
        feed = Feed(bus)
        await feed.start()
        kiosk, _ = feed.connect(Role.KIOSK, "kiosk-1", None, None)
        associate, _ = feed.connect(Role.ASSOCIATE, "pad-1", None, None)
        console, _ = feed.connect(Role.CONSOLE, "console-1", None, None)
        bus.publish("scan", {"station": "kiosk-1", "code": "A"})
        bus.publish("scan", {"station": "kiosk-2", "code": "B"})
        bus.publish("member.attached", {"station": "kiosk-1", "member_id": "M-1"})
        bus.publish("device.state", {"id": "printer-1", "state": "error"})
        bus.publish("scanner.scan", {"code": "raw driver event, not for the feed"})
        await _settle(feed, bus, 4)
        await feed.stop()
        return _drain(kiosk), _drain(associate), _drain(console)

    kiosk, associate, console = asyncio.run(main())
    assert kiosk == [("scan", "A"), ("member.attached", "M-1")]
    assert associate == [("scan", "A"), ("scan", "B"), ("member.attached", "M-1"), ("device.state", "printer-1")]
    assert console == [("scan", "A"), ("scan", "B"), ("device.state", "printer-1")]  # no member data


def _drain(client) -> list[tuple[str, str]]:
    out = []
    while not client.queue.empty():
        e = client.queue.get_nowait()
        out.append((e.type, e.data.get("code") or e.data.get("member_id") or e.data.get("id")))
    return out


def test_resume_within_the_ring_and_missed_beyond_it():
    async def main():
        bus = EventBus()
        feed = Feed(bus, size=3)
        await feed.start()
        ids = [bus.publish("scan", {"code": str(i)}).id for i in range(5)]
        await _settle(feed, bus, 3)
        await feed.stop()
        ok, ok_hello = feed.connect(Role.ASSOCIATE, "pad-1", ids[2], feed.epoch)
        gone, gone_hello = feed.connect(Role.ASSOCIATE, "pad-1", ids[0], feed.epoch)
        other, other_hello = feed.connect(Role.ASSOCIATE, "pad-1", ids[3], "another-run")
        return ids, _drain(ok), ok_hello, gone_hello, _drain(gone), other_hello

    ids, resumed, ok_hello, gone_hello, gone, other_hello = asyncio.run(main())
    assert ok_hello.resumed and not ok_hello.missed and ok_hello.last_id == ids[-1]
    assert resumed == [("scan", "3"), ("scan", "4")]
    assert gone_hello.missed and not gone_hello.resumed and gone == []  # event 1 rotated out
    assert other_hello.missed


def test_a_slow_client_is_cut_off_without_slowing_anyone():
    async def main():
        bus = EventBus()
        feed = Feed(bus, client_queue=3)
        await feed.start()
        slow, _ = feed.connect(Role.ASSOCIATE, "pad-1", None, None)
        fast, _ = feed.connect(Role.ASSOCIATE, "pad-2", None, None)
        got = []
        for i in range(10):
            bus.publish("scan", {"code": str(i)})
            await _settle(feed, bus, i + 1)
            got += _drain(fast)
        await feed.stop()
        return slow, got

    slow, got = asyncio.run(main())
    assert slow.lagging.is_set() and slow.queue.qsize() == 3
    assert [code for _, code in got] == [str(i) for i in range(10)]


def test_a_kiosk_hears_its_own_calls_for_help_and_staff_hear_them_all():
    async def main():
        bus = EventBus()
        feed = Feed(bus)
        await feed.start()
        kiosk, _ = feed.connect(Role.KIOSK, "kiosk-1", None, None)
        associate, _ = feed.connect(Role.ASSOCIATE, "pad-1", None, None)
        console, _ = feed.connect(Role.CONSOLE, "console-1", None, None)
        bus.publish("assist.requested", {"station": "kiosk-2", "assist_id": "B"})
        bus.publish("assist.requested", {"station": "kiosk-1", "assist_id": "A"})
        bus.publish("assist.reminder", {"station": "kiosk-1", "assist_id": "A"})  # for the wristbands only
        bus.publish("assist.taken", {"station": "kiosk-1", "assist_id": "A", "taken_by": "pad-1"})
        bus.publish("assist.closed", {"station": "kiosk-1", "assist_id": "A"})
        await _settle(feed, bus, 4)
        await feed.stop()
        return [[(e.type, e.data["assist_id"]) for e in _events(c)] for c in (kiosk, associate, console)]

    kiosk, associate, console = asyncio.run(main())
    assert kiosk == [("assist.requested", "A"), ("assist.taken", "A"), ("assist.closed", "A")]
    assert associate == [("assist.requested", "B"), *kiosk]
    assert console == []


def _events(client) -> list:
    out = []
    while not client.queue.empty():
        out.append(client.queue.get_nowait())
    return out


def test_close_client_ends_that_clients_connections_and_its_wristbands():
    bus = EventBus()
    feed = Feed(bus)
    closed: list[str] = []
    feed.closers.append(lambda name: closed.append(name) or 1)
    pad, _ = feed.connect(Role.ASSOCIATE, "pad-anna", None, None)
    pad_again, _ = feed.connect(Role.ASSOCIATE, "pad-anna", None, None)
    other, _ = feed.connect(Role.ASSOCIATE, "pad-ben", None, None)
    assert feed.close_client("pad-anna") == 3  # two feed connections and one band
    assert pad.revoked.is_set() and pad_again.revoked.is_set() and not other.revoked.is_set()
    assert closed == ["pad-anna"]


def test_a_masked_member_id_shows_its_last_four_only_when_six_stay_hidden():
    from edge_agent.feed import masked_id

    assert masked_id("M-12345678") == "****5678"  # 6 hidden, 4 shown
    assert masked_id("M-1234567") == "****"  # only 5 would stay hidden: nothing shown
    for short in ("M-1001", "M-1", "1001", ""):
        assert masked_id(short) == "****"
    assert masked_id(None) is None


def test_next_out_says_what_comes_first_for_a_stream_connection():
    # The feed's and the wristband's loop: unpaired before anything queued; an item before a lag or the client gone.
    from edge_agent.api.routers.events import next_out

    async def main():
        async def never():
            await asyncio.Event().wait()

        queue, lagging, revoked = asyncio.Queue(), asyncio.Event(), asyncio.Event()
        receiver = asyncio.create_task(never())
        queue.put_nowait("a")
        lagging.set()
        first = await next_out(queue, lagging, revoked, receiver)
        lagged = await next_out(queue, lagging, revoked, receiver)
        queue.put_nowait("b")
        revoked.set()
        unpaired = await next_out(queue, lagging, revoked, receiver)
        queue.get_nowait()  # what an unpaired device was not sent
        receiver.cancel()
        gone = asyncio.create_task(asyncio.sleep(0))
        await gone
        revoked.clear()
        left = await next_out(queue, lagging, revoked, gone)
        return first, lagged, unpaired, left, queue.qsize()

    first, lagged, unpaired, left, size = asyncio.run(main())
    assert first == ("item", "a") and lagged == ("lagging", None) and unpaired == ("revoked", None)
    assert left == ("left", None) and size == 0


def test_an_unpaired_client_is_offered_nothing_more():
    async def main():
        bus = EventBus()
        feed = Feed(bus)
        await feed.start()
        gone, _ = feed.connect(Role.ASSOCIATE, "pad-gone", None, None)
        kept, _ = feed.connect(Role.ASSOCIATE, "pad-1", None, None)
        assert feed.close_client("pad-gone") == 1
        bus.publish("scan", {"code": "after"})
        await _settle(feed, bus, 1)
        await feed.stop()
        return _drain(gone), _drain(kept)

    gone, kept = asyncio.run(main())
    assert gone == [] and kept == [("scan", "after")]
