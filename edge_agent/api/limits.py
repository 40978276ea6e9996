"""Limits that hold before the API does any work for a client.

Anyone on the store's Wi-Fi can open a socket to the agent. What a client
gets before its token is even looked at is bounded here:

- ``BodyLimit`` (ASGI): a request body over ``api.max_body`` bytes is
  answered 413 from its ``Content-Length`` alone, or as soon as a chunked
  body passes the limit; nothing more of it is read or kept.
- ``guarded_protocol`` (uvicorn's HTTP protocol, subclassed): a connection
  has ``api.header_timeout`` seconds to send a whole request head, the
  first one and every later one on a kept-alive connection; one address may
  hold ``api.max_connections_per_client`` connections and all clients
  together ``api.max_connections``; a connection past either is closed as
  it opens, before a byte is parsed. The cap sits well below the process's
  file limit (``raise_file_limit``), so a flood of sockets can never take
  the descriptors the store needs for its database, devices and the hub.
- ``RateLimitedLog``: each condition is logged once per interval with the
  count of what was suppressed, so a flood cannot flood the journal.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from typing import Any

log = logging.getLogger("edge_agent.api.limits")

# Descriptors kept for the store itself (SQLite, serial ports, printers, the hub, the mirror) beyond
# what the API's connections may take.
RESERVED_FILES = 256


class RateLimitedLog:
    """``warning(key, msg, *args)`` logs at most once per ``interval`` s per key, then says how many
    were left out."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_keys: int = 1000):
        self.logger, self.interval, self.max_keys = logger, interval, max_keys
        self._last: dict[Any, float] = {}
        self.suppressed: Counter[Any] = Counter()

    def warning(self, key: Any, msg: str, *args: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self.suppressed[key] += 1
            return
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        more = self.suppressed.pop(key, 0)
        self.logger.warning(msg + (f" ({more} more like it in the last {self.interval:.0f} s)" if more else ""),
                            *args, **kwargs)


_limited = RateLimitedLog(log)


# Bodies ---------------------------------------------------------------------------------------

class _TooLarge(BaseException):
    """Raised out of ``receive`` past the limit. A BaseException: the app's own error handling
    (which turns an Exception into a 500) must not swallow it on its way out."""


async def _send_error(send: Any, status: int, detail: str) -> None:
    body = ('{"detail": "%s"}' % detail).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_body`` bytes, before more of it is read."""

    def __init__(self, app: Any, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await _send_error(send, 400, "Content-Length is not a number")
                return
            if int(length) > limit:
                self._refused(scope, int(length))
                await _send_error(send, 413, f"the body may have at most {limit} bytes")
                return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            self._refused(scope, seen)
            if not started:
                await _send_error(send, 413, f"the body may have at most {limit} bytes")

    def _refused(self, scope: dict, size: int) -> None:
        client = (scope.get("client") or ("?", 0))[0]
        _limited.warning(("body", client), "api: refused a %d-byte body from %s to %s %s (api.max_body %d)",
                         size, client, scope.get("method"), scope.get("path"), self.max_body)


# Connections ----------------------------------------------------------------------------------

def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(configured: int, file_limit: int) -> int:
    """``api.max_connections``, lowered to leave ``RESERVED_FILES`` of the file limit to the store."""
    room = max(8, file_limit - RESERVED_FILES)
    if configured > room:
        log.warning("api: max_connections %d lowered to %d: the process may open %d files and the store keeps %d "
                    "for itself (raise LimitNOFILE in the unit for more)", configured, room, file_limit,
                    RESERVED_FILES)
        return room
    return configured


def accept_backlog(file_limit: int, cap: int) -> int:
    """The listen backlog, which is also how many sockets asyncio accepts in one go: what the file
    limit leaves beside the store's own files and the capped connections, at most uvicorn's 2048."""
    return max(64, min(2048, file_limit - RESERVED_FILES - cap))


def guarded_protocol(header_timeout: float, max_connections: int, per_client: int) -> type:
    """uvicorn's HTTP protocol class (httptools when installed, else h11) with the connection limits."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    peers: Counter[str] = Counter()

    class GuardedProtocol(Base):  # type: ignore[misc, valid-type]
        _peer: str | None = None
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else "?"
            if len(self.connections) > max_connections:
                _limited.warning(("connections",), "api: closed a connection from %s: %d open, the cap is %d "
                                 "(api.max_connections)", host, len(self.connections) - 1, max_connections)
                transport.abort()
                return
            if peers[host] >= per_client:
                _limited.warning(("peer", host), "api: closed a connection from %s: it holds %d, the cap is %d "
                                 "(api.max_connections_per_client)", host, peers[host], per_client)
                transport.abort()
                return
            self._peer = host
            peers[host] += 1
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                _limited.warning(("head", self._peer), "api: closed a connection from %s: no whole request head "
                                 "within %.0f s (api.header_timeout)", self._peer, header_timeout)
                self.transport.abort()

        def _forget_peer(self) -> None:
            if self._peer is not None:
                peers[self._peer] -= 1
                if peers[self._peer] <= 0:
                    del peers[self._peer]
                self._peer = None

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:  # a later request on a kept-alive connection
                self._arm_head_timer()

        def on_headers_complete(self) -> None:
            self._cancel_head_timer()
            super().on_headers_complete()

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._cancel_head_timer()
            self._forget_peer()  # the WebSocket protocol takes the connection over
            super().handle_websocket_upgrade(*args)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            self._forget_peer()
            super().connection_lost(exc)

    GuardedProtocol.__name__ = f"Guarded{Base.__name__}"
    return GuardedProtocol


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """The loop's own errors (``accept()`` out of files, a transport's failure) once per minute each,
    the first with its traceback, then with a count: not a traceback per event."""
    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        key = (context.get("message"), type(exc).__name__ if exc else None)
        _limited.warning(("loop", key), "event loop: %s%s", context.get("message"),
                         f": {type(exc).__name__}: {exc}" if exc else "",
                         exc_info=(type(exc), exc, exc.__traceback__) if exc else None)

    loop.set_exception_handler(handler)
