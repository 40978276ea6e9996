"""SerialTransport (real pyserial) on a real pty pair: the slave is the port,
the test plays the device on the master side."""

from __future__ import annotations

import asyncio
import os
import select
import sys

import pytest

from drivers.transport.serial import SerialTransport
from edge_core.errors import DeviceMissing, TransportClosed

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")


def run(coro, timeout: float = 60.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging (generous: a busy machine is no failure)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def pty():
    """(master fd, slave path); the slave fd is closed so only the transport holds it."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    fds = {"master": master}
    yield fds, path
    if fds["master"] is not None:
        os.close(fds["master"])


def _read_master(master: int, n: int, timeout: float = 2.0) -> bytes:
    """Exactly ``n`` bytes from the device side, or what came before ``timeout``."""
    got = b""
    while len(got) < n:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            break
        got += os.read(master, n - len(got))
    return got


def test_bytes_both_ways_exactly(pty):
    fds, path = pty

    async def main():
        t = SerialTransport(path, baudrate=115200)
        await t.open()
        assert t.is_open
        # A raw port must pass every byte value untouched (no CR/LF mangling, no XON/XOFF).
        sent = bytes(range(256))
        await t.write(sent)
        assert await asyncio.to_thread(_read_master, fds["master"], len(sent)) == sent
        os.write(fds["master"], b"\x02SCAN-0042\r\n\x00\xff")
        got = b""
        while len(got) < 14:
            chunk = await t.read(64, timeout=30)
            assert chunk, "timed out waiting for the device's bytes"
            got += chunk
        assert got == b"\x02SCAN-0042\r\n\x00\xff"
        await t.close()

    run(main())


def test_read_respects_max_bytes(pty):
    fds, path = pty

    async def main():
        t = SerialTransport(path)
        await t.open()
        os.write(fds["master"], b"abcdef")
        first = await t.read(4, timeout=30)
        assert 1 <= len(first) <= 4
        rest = b""
        while len(first) + len(rest) < 6:
            chunk = await t.read(4, timeout=30)
            assert chunk and len(chunk) <= 4
            rest += chunk
        assert first + rest == b"abcdef"
        await t.close()

    run(main())


def test_read_timeout_returns_empty_bytes(pty):
    _, path = pty

    async def main():
        t = SerialTransport(path)
        await t.open()
        assert await t.read(timeout=0.05) == b""
        assert t.is_open
        await t.close()

    run(main())


def test_missing_port_is_device_missing(tmp_path):
    async def main():
        t = SerialTransport(str(tmp_path / "ttyUSB-not-there"))
        with pytest.raises(DeviceMissing):
            await t.open()
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.read(timeout=0.01)

    run(main())


def test_unplug_raises_transport_closed_instead_of_reading_nothing(pty):
    """Closing the master is the pty's unplug: reads must fail, not return b"" for ever."""
    fds, path = pty

    async def main():
        t = SerialTransport(path)
        await t.open()
        os.close(fds["master"])
        fds["master"] = None
        with pytest.raises(TransportClosed):
            await t.read(timeout=30)  # a bound, not a wait: the master is gone already
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.write(b"x")
        await t.close()  # already closed by the failed read: still safe

    run(main())


def test_unplug_while_a_read_waits(pty):
    fds, path = pty

    async def main():
        t = SerialTransport(path)
        await t.open()
        reader = asyncio.create_task(t.read(timeout=30))
        await asyncio.sleep(0.05)  # not synchronisation: any interleaving must end in TransportClosed
        os.close(fds["master"])
        fds["master"] = None
        with pytest.raises(TransportClosed):
            await reader

    run(main())


def test_write_after_unplug_raises_transport_closed(pty):
    fds, path = pty

    async def main():
        t = SerialTransport(path)
        await t.open()
        os.close(fds["master"])
        fds["master"] = None
        with pytest.raises(TransportClosed):
            await t.write(b"PING\n")
        assert not t.is_open

    run(main())


def test_port_is_exclusive_and_released_on_close(pty):
    _, path = pty

    async def main():
        a, b = SerialTransport(path), SerialTransport(path)
        await a.open()
        with pytest.raises(DeviceMissing):
            await b.open()  # a second owner of one port would steal its bytes
        await a.close()
        await a.close()
        await b.open()
        assert b.is_open
        await b.close()

    run(main())
