"""Limits that hold before the API does any work for a client.

Anyone on the store's Wi-Fi can open a socket to the agent. What a client
gets before its token is even looked at is bounded here:

- ``BodyLimit`` (ASGI): a request body over ``api.max_body`` bytes is
  answered 413 from its ``Content-Length`` alone, or as soon as a chunked
  body passes the limit; nothing more of it is read or kept.
- ``guarded_protocol`` (uvicorn's HTTP protocol, subclassed): a connection
  has ``api.header_timeout`` seconds to send a whole request head, the
  first one and every later one on a kept-alive connection, and then its
  body at ``BODY_MIN_RATE`` at least (the app reads a body before it looks
  at the token: a body dripped a byte at a time must not hold a slot); one address may
  hold ``api.max_connections_per_client`` connections and all clients
  together ``api.max_connections``; a connection past either is closed as
  it opens, before a byte is parsed. The cap sits well below the process's
  file limit (``raise_file_limit``), so a flood of sockets can never take
  the descriptors the store needs for its database, devices and the hub.
- With ``api.tls``, the same caps hold from the moment a socket is
  accepted, not from the end of its TLS handshake (which is when asyncio
  would first show it to the HTTP protocol): a socket that never finishes
  its handshake holds a slot for at most ``api.header_timeout`` seconds, and
  sockets still in their handshake count against both caps. Plain HTTP,
  or a client without the certificate mutual TLS asks for, is closed at the
  handshake with one log line per interval.
- ``RateLimitedLog``: each condition is logged once per interval with the
  count of what was suppressed, so a flood cannot flood the journal.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections import Counter
from typing import Any

log = logging.getLogger("edge_agent.api.limits")

# Descriptors kept for the store itself (SQLite, serial ports, printers, the hub, the mirror) beyond
# what the API's connections may take.
RESERVED_FILES = 256
# The slowest a request body may arrive, after its head: 16 KiB/s, so the largest body (api.max_body,
# 512 KiB by default) has 32 s beyond api.header_timeout, a sale of a few KiB a fraction of a second.
BODY_MIN_RATE = 16 * 1024


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


def guarded_protocol(header_timeout: float, max_connections: int, per_client: int,
                     tls: ssl.SSLContext | None = None, max_body: int = 512 * 1024) -> type:
    """uvicorn's HTTP protocol class (httptools when installed, else h11) with the connection limits;
    with ``tls``, a class that does the TLS handshake first, under the same limits (``_TlsGate``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    peers: Counter[str] = Counter()

    class GuardedProtocol(Base):  # type: ignore[misc, valid-type]
        _peer: str | None = None
        _head_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None

        def admitted(self, host: str) -> "GuardedProtocol":
            """Already counted (by the TLS gate, at accept): ``connection_made`` checks no cap again."""
            self._peer = host
            return self

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self._peer is not None:
                self._arm_head_timer()
                return
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
            length = self._announced_body()
            super().on_headers_complete()
            if length and not self.parser.should_upgrade():
                # The body too comes within a deadline: the head's time, and the time the body takes at
                # BODY_MIN_RATE (the app reads it before a token is looked at, so a body dripped a byte at a
                # time would hold the connection's slot for ever).
                self._body_timer = self.loop.call_later(header_timeout + min(length, max_body) / BODY_MIN_RATE,
                                                        self._body_timeout)

        def _announced_body(self) -> int:
            """The body's length as the head announces it (a chunked body counts as ``max_body``); 0 for none."""
            for name, value in self.headers:
                if name.lower() == b"content-length":
                    try:
                        return max(0, int(value))
                    except ValueError:
                        return max_body
                if name.lower() == b"transfer-encoding":
                    return max_body
            return 0

        def on_message_complete(self) -> None:
            self._cancel_body_timer()
            super().on_message_complete()

        def _cancel_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _body_timeout(self) -> None:
            self._body_timer = None
            if not self.transport.is_closing():
                _limited.warning(("body", self._peer), "api: closed a connection from %s: its request body did "
                                 "not arrive in time (api.header_timeout, then %d bytes/s)", self._peer,
                                 BODY_MIN_RATE)
                self.transport.abort()

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._cancel_head_timer()
            self._forget_peer()  # the WebSocket protocol takes the connection over
            super().handle_websocket_upgrade(*args)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            self._cancel_body_timer()
            self._forget_peer()
            super().connection_lost(exc)

    GuardedProtocol.__name__ = f"Guarded{Base.__name__}"
    if tls is None:
        return GuardedProtocol
    handshaking: set[asyncio.Task[None]] = set()

    _small_tls_buffers()

    class TlsGate(_TlsGate):
        context = tls
        timeout = header_timeout
        protocol = GuardedProtocol
        tasks = handshaking
        cap = max_connections
        cap_per_client = per_client
        clients = peers

    return TlsGate


class _Handshaking(asyncio.Protocol):
    """The TLS layer's application until the HTTP protocol takes over: keeps what arrives meanwhile.

    A TLS 1.3 client sends its request right behind its Finished message, and
    asyncio passes the decrypted bytes on before ``start_tls`` returns."""

    lost = False
    eof = False

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


# Alerts a client sends when the server's certificate will not do (OpenSSL names a received alert
# SSLV3_ALERT_* or TLSV1_ALERT_*): unknown_ca (48), bad_certificate (42), certificate_unknown (46),
# certificate_expired (45), unsupported_certificate (43). The agent checks a client's certificate itself and
# then says CERTIFICATE_VERIFY_FAILED, never one of these.
_CLIENT_REFUSED_OURS = ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                        "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE")


def _handshake_failure(err: BaseException) -> tuple[str, str]:
    """(a log key, why in words) for a handshake that failed: a few kinds, each logged once per interval."""
    reason = getattr(err, "reason", None) or ""
    if reason in ("HTTP_REQUEST", "WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "UNKNOWN_PROTOCOL",
                  "VERSION_TOO_LOW", "NO_PROTOCOLS_AVAILABLE"):
        return "plain", f"not TLS 1.2 or newer ({reason}): plain HTTP to the HTTPS port? use https:// and wss://"
    if reason in _CLIENT_REFUSED_OURS:
        # An alert the client sent: it checked the agent's certificate and refused it (a browser or a phone that
        # was never given the CA, or a certificate that does not name the address it dialled).
        return "untrusted", (f"the client did not trust this agent's certificate ({reason}): give it the CA that "
                             "issued api.tls.cert_file, and dial a name the certificate has")
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED",
                  "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        return "cert", f"no valid client certificate ({reason}; api.tls.client_cert, api.tls.client_ca_file)"
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)) or "longer than" in str(err):
        return "slow", "no TLS handshake within api.header_timeout"
    return "other", f"TLS handshake failed: {reason or type(err).__name__}"


# asyncio gives each TLS connection a read buffer of SSLProtocol.max_size, 256 KiB, from the moment it is
# accepted, handshake or not: at the connection cap that is 128 MiB that anyone on the Wi-Fi can make the
# agent hold (the soak's intruder grew it by 72 MB). A TLS record carries at most 16 KiB, so 32 KiB reads
# cost the API nothing measurable (bench/bench_checkout.py --https) and bound the whole to 16 MiB.
TLS_READ_BUFFER = 32 * 1024


def _small_tls_buffers() -> None:
    """Set asyncio's TLS read buffer to ``TLS_READ_BUFFER`` for the process (the agent's only asyncio
    TLS server is the API; its other TLS clients read small replies)."""
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


class _TlsGate(asyncio.Protocol):
    """The protocol asyncio gives each accepted socket when the API serves TLS.

    asyncio's own TLS server shows a socket to the HTTP protocol only once
    its handshake is done (and waits 60 s for it by default), so the caps in
    ``connection_made`` would not see a socket that never sends its
    ClientHello. The gate counts the socket as it is accepted, against the
    cap and the per-address cap, and does the handshake itself
    (``loop.start_tls``, bounded by ``api.header_timeout``); then hands the
    TLS transport to the guarded HTTP protocol, which keeps the slot until
    the connection ends. A failed handshake gives the slot back.
    """

    context: ssl.SSLContext
    timeout: float
    protocol: type
    tasks: set[asyncio.Task[None]]
    cap: int
    cap_per_client: int
    clients: Counter[str]
    pending = 0  # sockets in their handshake, across the server (a class attribute of each subclass)

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._connections = kwargs["server_state"].connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # nothing is read before start_tls takes the socket
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        cls = type(self)
        if len(self._connections) + cls.pending >= self.cap:
            _limited.warning(("connections",), "api: closed a connection from %s: %d open, the cap is %d "
                             "(api.max_connections)", host, len(self._connections) + cls.pending, self.cap)
            transport.abort()
            return
        if self.clients[host] >= self.cap_per_client:
            _limited.warning(("peer", host), "api: closed a connection from %s: it holds %d, the cap is %d "
                             "(api.max_connections_per_client)", host, self.clients[host], self.cap_per_client)
            transport.abort()
            return
        cls.pending += 1
        self.clients[host] += 1
        task = asyncio.get_running_loop().create_task(self._handshake(transport, host))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handshake(self, transport: asyncio.Transport, host: str) -> None:
        cls = type(self)
        waiting = _Handshaking()
        tls_transport = None
        try:
            tls_transport = await asyncio.get_running_loop().start_tls(
                transport, waiting, self.context, server_side=True, ssl_handshake_timeout=self.timeout)
        except (OSError, asyncio.TimeoutError, ConnectionError, ssl.SSLError) as err:
            key, why = _handshake_failure(err)
            _limited.warning(("tls", key), "api: closed a connection from %s: %s", host, why)
        except asyncio.CancelledError:
            transport.abort()
            raise
        finally:
            cls.pending -= 1
            if tls_transport is None or waiting.lost:
                self._give_back(host)
        if tls_transport is None or waiting.lost:
            return
        app = self.protocol(**self._kwargs).admitted(host)
        tls_transport.set_protocol(app)
        app.connection_made(tls_transport)
        if waiting.received:
            app.data_received(bytes(waiting.received))
        if waiting.eof and not tls_transport.is_closing():
            app.eof_received()

    def _give_back(self, host: str) -> None:
        self.clients[host] -= 1
        if self.clients[host] <= 0:
            del self.clients[host]

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # before start_tls took the socket: the handshake task sees it fail


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
