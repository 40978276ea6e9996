"""A scriptable in-memory transport standing in for any transport type.

It records every byte written, answers writes by rules, and can be told to
be missing or to drop the link, which is what a driver must survive::

    t = FakeTransport("serial", replies={b"PING\\n": b"PONG\\n"})
    await t.open(); await t.write(b"PING\\n")
    assert await t.read() == b"PONG\\n"

Each ``feed`` (or reply) is one chunk: a read returns at most one chunk, so
tests see the same boundaries the device produced; a chunk longer than
``max_bytes`` is split across reads.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from drivers.transport.base import Transport
from edge_core.errors import DeviceMissing, TransportClosed

Replies = dict[bytes, bytes] | Callable[[bytes], bytes | None]


class FakeTransport(Transport):
    """In-memory transport; ``stands_for`` names the real transport it stands in for."""

    type = "fake"

    def __init__(self, stands_for: str = "fake", replies: Replies | None = None):
        self.stands_for = stands_for
        self.replies: Replies = replies if replies is not None else {}
        self.written = bytearray()
        self.present = True
        self.opens = 0
        self._open = False
        self._chunks: deque[bytes] = deque()
        self._arrived = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        """Connect; DeviceMissing while unplugged. Bytes from an earlier link are gone."""
        if not self.present:
            raise DeviceMissing(f"fake {self.stands_for} device is unplugged")
        self._chunks.clear()
        self._open = True
        self.opens += 1

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        self._open = False
        self._arrived.set()  # wake a pending read so it sees the link is gone

    async def write(self, data: bytes) -> None:
        """Record ``data`` and queue the reply its rule gives, if any."""
        if not self._open:
            raise TransportClosed(f"fake {self.stands_for} link is closed")
        self.written += data
        reply = self.replies(data) if callable(self.replies) else self.replies.get(bytes(data))
        if reply:
            self.feed(reply)

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """The next chunk (at most ``max_bytes`` of it), or b"" after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._chunks:
            if not self._open:
                raise TransportClosed(f"fake {self.stands_for} link is closed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                return b""
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                return b""
        if not self._open:
            raise TransportClosed(f"fake {self.stands_for} link is closed")
        chunk = self._chunks.popleft()
        if len(chunk) > max_bytes:
            self._chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    def describe(self) -> str:
        return f"fake-{self.stands_for}"

    # Test controls ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes the device sends unprompted (a scan, a status change)."""
        self._chunks.append(bytes(data))
        self._arrived.set()

    def unplug(self) -> None:
        """The device disappears: the open link drops and reopening fails."""
        self.present = False
        self._open = False
        self._chunks.clear()
        self._arrived.set()

    def plug(self) -> None:
        """The device comes back; the driver must reopen to use it."""
        self.present = True
