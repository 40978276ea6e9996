"""A scriptable in-memory transport standing in for any transport type.

It records every byte written, answers writes by rules, and can be told to
be missing or to drop the link, which is what a driver must survive::

    t = FakeTransport("serial", replies={b"PING\\n": b"PONG\\n"})
    await t.open(); await t.write(b"PING\\n")
    assert await t.read() == b"PONG\\n"
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drivers.transport.base import Transport
from edge_agent.errors import DeviceMissing, TransportClosed


class FakeTransport(Transport):
    """In-memory transport; ``type`` names the real transport it stands in for."""

    type = "fake"

    def __init__(
        self,
        stands_for: str = "fake",
        replies: dict[bytes, bytes] | Callable[[bytes], bytes | None] | None = None,
    ):
        self.stands_for = stands_for
        self.replies = replies or {}
        self.written = bytearray()
        self.present = True
        self.opens = 0
        self._open = False
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        if not self.present:
            raise DeviceMissing(f"fake {self.stands_for} device is unplugged")
        self._inbox = asyncio.Queue()
        self._open = True
        self.opens += 1

    async def close(self) -> None:
        self._open = False

    async def write(self, data: bytes) -> None:
        if not self._open:
            raise TransportClosed(f"fake {self.stands_for} link is closed")
        self.written += data
        reply = self.replies(data) if callable(self.replies) else self.replies.get(data)
        if reply:
            self.feed(reply)

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        if not self._open:
            raise TransportClosed(f"fake {self.stands_for} link is closed")
        try:
            chunk = await asyncio.wait_for(self._inbox.get(), timeout)
        except asyncio.TimeoutError:
            return b""
        if chunk is None:
            self._open = False
            raise TransportClosed(f"fake {self.stands_for} link dropped")
        if len(chunk) > max_bytes:
            self._inbox._queue.appendleft(chunk[max_bytes:])  # type: ignore[attr-defined]
            chunk = chunk[:max_bytes]
        return chunk

    # Test controls ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes the device sends unprompted (a scan, a status change)."""
        self._inbox.put_nowait(bytes(data))

    def unplug(self) -> None:
        """The device disappears: the open link drops and reopening fails."""
        self.present = False
        self._inbox.put_nowait(None)

    def plug(self) -> None:
        """The device comes back."""
        self.present = True
