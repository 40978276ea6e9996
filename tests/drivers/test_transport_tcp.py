"""TcpTransport against a real asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest

from drivers.transport.tcp import TcpTransport
from edge_core.errors import DeviceMissing, TransportClosed


def run(coro, timeout: float = 60.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging (generous: a busy machine is no failure)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Peer:
    """A one-connection TCP server that records what it receives."""

    def __init__(self, reply: bytes = b""):
        self.reply = reply
        self.received = bytearray()
        self.connected = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        while data := await reader.read(4096):
            self.received += data
            if self.reply:
                writer.write(self.reply)
                await writer.drain()

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exact_bytes_arrive_and_reply_is_read_back():
    async def main():
        peer = Peer(reply=b"\x10\x04\x01OK")
        t = TcpTransport("127.0.0.1", await peer.start())
        await t.open()
        assert t.is_open
        await t.write(b"\x1b@\x1dV\x42\x00")
        assert await t.read(64, timeout=30) == b"\x10\x04\x01OK"
        assert bytes(peer.received) == b"\x1b@\x1dV\x42\x00"
        await t.close()
        await peer.stop()

    run(main())


def test_read_timeout_returns_empty_bytes():
    async def main():
        peer = Peer()
        t = TcpTransport("127.0.0.1", await peer.start())
        await t.open()
        assert await t.read(timeout=0.05) == b""
        assert t.is_open
        await t.close()
        await peer.stop()

    run(main())


def test_connection_refused_is_device_missing():
    async def main():
        t = TcpTransport("127.0.0.1", _free_port())
        with pytest.raises(DeviceMissing):
            await t.open()
        assert not t.is_open

    run(main())


def test_peer_closing_is_transport_closed():
    async def main():
        peer = Peer()
        t = TcpTransport("127.0.0.1", await peer.start())
        await t.open()
        await peer.connected.wait()
        await peer.stop()
        with pytest.raises(TransportClosed):
            await t.read(timeout=30)  # a bound, not a wait: the close is already on its way
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.write(b"x")

    run(main())


def test_close_twice_is_safe_and_reopen_works():
    async def main():
        peer = Peer(reply=b"!")
        t = TcpTransport("127.0.0.1", await peer.start())
        await t.close()  # never opened
        await t.open()
        await t.close()
        await t.close()
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.read(timeout=0.05)
        await t.open()
        await t.write(b"?")
        assert await t.read(timeout=30) == b"!"
        await t.close()
        await peer.stop()

    run(main())
