"""FakeTransport: the stand-in every driver test relies on must behave like a link."""

from __future__ import annotations

import asyncio

import pytest

from drivers.transport.fake import FakeTransport
from edge_core.errors import DeviceMissing, TransportClosed


def run(coro, timeout: float = 60.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging (generous: a busy machine is no failure)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_records_exact_bytes_written():
    async def main():
        t = FakeTransport("serial")
        await t.open()
        await t.write(b"\x1b@")
        await t.write(b"HELLO\n")
        assert bytes(t.written) == b"\x1b@HELLO\n"
        assert t.opens == 1
        assert t.is_open

    run(main())


def test_dict_reply_rule_answers_only_matching_writes():
    async def main():
        t = FakeTransport("tcp", replies={b"PING\n": b"PONG 1\n"})
        await t.open()
        await t.write(b"PING\n")
        assert await t.read(timeout=0.5) == b"PONG 1\n"
        await t.write(b"OTHER\n")
        assert await t.read(timeout=0.01) == b""

    run(main())


def test_callable_reply_rule_sees_each_write():
    async def main():
        seen: list[bytes] = []

        def rule(data: bytes) -> bytes | None:
            seen.append(data)
            return data.upper() if data.startswith(b"echo") else None

        t = FakeTransport(replies=rule)
        await t.open()
        await t.write(b"echo hi")
        await t.write(b"quiet")
        assert await t.read(timeout=0.5) == b"ECHO HI"
        assert await t.read(timeout=0.01) == b""
        assert seen == [b"echo hi", b"quiet"]

    run(main())


def test_feed_delivers_unprompted_bytes_chunk_by_chunk():
    async def main():
        t = FakeTransport()
        await t.open()
        t.feed(b"0123456789\r")
        t.feed(b"42\r")
        assert await t.read(timeout=0.5) == b"0123456789\r"
        assert await t.read(timeout=0.5) == b"42\r"

    run(main())


def test_feed_wakes_a_pending_read():
    async def main():
        t = FakeTransport()
        await t.open()
        reader = asyncio.create_task(t.read(timeout=5))
        await asyncio.sleep(0)  # let the read start waiting
        t.feed(b"scan")
        assert await reader == b"scan"

    run(main())


def test_read_timeout_returns_empty_bytes():
    async def main():
        t = FakeTransport()
        await t.open()
        assert await t.read(timeout=0.01) == b""
        assert await t.read(timeout=0) == b""

    run(main())


def test_max_bytes_splits_a_chunk_across_reads():
    async def main():
        t = FakeTransport()
        await t.open()
        t.feed(b"abcdefg")
        assert await t.read(max_bytes=3, timeout=0.5) == b"abc"
        assert await t.read(max_bytes=3, timeout=0.5) == b"def"
        assert await t.read(max_bytes=3, timeout=0.5) == b"g"
        assert await t.read(max_bytes=3, timeout=0.01) == b""

    run(main())


def test_unplug_drops_the_link_and_open_fails():
    async def main():
        t = FakeTransport("serial")
        await t.open()
        t.feed(b"lost")
        t.unplug()
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.read(timeout=0.5)
        with pytest.raises(TransportClosed):
            await t.write(b"x")
        with pytest.raises(DeviceMissing):
            await t.open()
        assert t.opens == 1

    run(main())


def test_unplug_wakes_a_pending_read():
    async def main():
        t = FakeTransport()
        await t.open()
        reader = asyncio.create_task(t.read(timeout=5))
        await asyncio.sleep(0)
        t.unplug()
        with pytest.raises(TransportClosed):
            await reader

    run(main())


def test_plug_lets_the_driver_reopen():
    async def main():
        t = FakeTransport(replies={b"?": b"!"})
        await t.open()
        t.unplug()
        t.plug()
        assert not t.is_open  # plugging back does not reopen by itself
        with pytest.raises(TransportClosed):
            await t.write(b"?")
        await t.open()
        await t.write(b"?")
        assert await t.read(timeout=0.5) == b"!"
        assert t.opens == 2
        assert bytes(t.written) == b"?"

    run(main())


def test_closed_transport_refuses_io_and_close_is_idempotent():
    async def main():
        t = FakeTransport()
        with pytest.raises(TransportClosed):
            await t.read(timeout=0.01)
        await t.open()
        await t.close()
        await t.close()
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.write(b"x")
        with pytest.raises(TransportClosed):
            await t.read(timeout=0.01)

    run(main())
