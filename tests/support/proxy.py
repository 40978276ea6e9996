"""A TCP proxy for fault tests: forwards a free loopback port to the broker and
can cut every connection through it with a TCP reset, refuse new ones, hold
bytes back (a blackhole), or cut a connection after exactly N bytes.

One thread owns every socket (a selector loop); the test's calls are queued
to it and wait for it to carry them out, so ``cut()`` has happened, sockets
closed, by the time it returns.
"""

from __future__ import annotations

import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

_CHUNK = 64 * 1024
# Stop reading from one side while this much waits to be written to the other.
_HIGH_WATER = 1024 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, not FIN, and drops unsent bytes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


@dataclass(eq=False)
class _Pipe:
    """One client connection and its upstream connection."""

    client: socket.socket
    upstream: socket.socket
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    sent_up: int = 0  # bytes forwarded client -> upstream
    # Cut (RST both ways) once this many bytes went upstream; None: never.
    cut_at: int | None = None

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client

    def outbuf(self, sock: socket.socket) -> bytearray:
        """What waits to be written to ``sock``."""
        return self.to_upstream if sock is self.upstream else self.to_client


class TCPProxy:
    """``127.0.0.1:{port}`` -> ``target``; ``start()`` listens, ``close()`` stops."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0  # connections accepted and forwarded, in total
        self.cuts = 0      # connections reset by cut() or cut_after_bytes()
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._pipes: list[_Pipe] = []
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._paused = False
        self._refusing = False
        self._cut_plan: list[int] = []  # byte counts for the next connections
        self._running = False
        self._rate: float | None = None  # bytes per second upstream, all connections together
        self._tokens = 0.0
        self._refilled = time.monotonic()
        self.connected = threading.Condition()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    # Life cycle --------------------------------------------------------------

    def start(self) -> "TCPProxy":
        """Listen on a free loopback port and start forwarding."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Reset every connection, stop listening and end the thread."""
        if not self._running:
            return
        self._call(self._shutdown)
        assert self._thread is not None
        self._thread.join(5)

    # Faults (any thread) -----------------------------------------------------

    def cut(self) -> int:
        """Reset every current connection, both sides; returns how many were cut."""
        return self._call(self._cut_all)

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are reset as soon as they are accepted."""
        self._call(lambda: setattr(self, "_refusing", on))

    def pause(self) -> None:
        """Blackhole: stop moving bytes (they wait in the kernel's buffers); connections stay open."""
        self._call(lambda: setattr(self, "_paused", True))

    def resume(self) -> None:
        """Move bytes again, the held-back ones first."""
        self._call(lambda: setattr(self, "_paused", False))

    def cut_after_bytes(self, *counts: int) -> None:
        """The next ``len(counts)`` connections are each reset once they forwarded that many bytes upstream.

        The reset lands exactly at that byte, usually in the middle of an MQTT packet.
        """
        self._call(lambda: self._cut_plan.extend(counts))

    def limit_rate(self, bytes_per_s: float | None) -> None:
        """A slow uplink: at most this many bytes per second towards the target; None lifts it."""

        def apply() -> None:
            self._rate, self._tokens, self._refilled = bytes_per_s, 0.0, time.monotonic()
        self._call(apply)

    def connections(self) -> int:
        """Connections open through the proxy now."""
        return self._call(lambda: len(self._pipes))

    def wait_accepted(self, count: int, timeout: float) -> None:
        """Block until ``accepted`` reaches ``count``."""
        with self.connected:
            if not self.connected.wait_for(lambda: self.accepted >= count, timeout):
                raise AssertionError(f"proxy: {self.accepted} connection(s) within {timeout} s, not {count}")

    # The loop thread ---------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future = Future()
        self._calls.put((fn, fut))
        self._wake_w.send(b"x")
        return fut.result(10)

    def _loop(self) -> None:
        while self._running:
            for key, events in self._sel.select(timeout=0.01 if self._rate else 1.0):
                what = key.data
                if what == "wake":
                    self._run_calls()
                elif what == "accept":
                    self._accept()
                else:
                    pipe: _Pipe = what
                    if pipe not in self._pipes:
                        continue  # cut earlier in this round
                    if events & selectors.EVENT_WRITE:
                        self._flush(pipe, key.fileobj)
                    if events & selectors.EVENT_READ and pipe in self._pipes:
                        self._pump(pipe, key.fileobj)
            self._update_interest()

    def _refill(self) -> None:
        if self._rate is None:
            return
        now = time.monotonic()
        # A bucket of 50 ms worth: bursts stay small, the average is the rate.
        self._tokens = min(self._rate * 0.05, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now

    def _run_calls(self) -> None:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn())
            except BaseException as err:  # noqa: BLE001 - handed back to the calling thread
                fut.set_exception(err)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._refusing:
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)  # the broker is down: so is the proxy, as far as the client can tell
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream, cut_at=self._cut_plan.pop(0) if self._cut_plan else None)
        self._pipes.append(pipe)
        self._sel.register(client, selectors.EVENT_READ, pipe)
        self._sel.register(upstream, selectors.EVENT_READ, pipe)
        with self.connected:
            self.accepted += 1
            self.connected.notify_all()

    def _pump(self, pipe: _Pipe, sock: socket.socket) -> None:
        size = _CHUNK
        if sock is pipe.client and self._rate is not None:
            size = min(size, int(self._tokens))
            if size <= 0:
                return
        try:
            data = sock.recv(size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # One side closed: hand the other what is still buffered for it, then close it too.
            self._flush(pipe, pipe.peer(sock), blocking=True)
            self._drop(pipe, reset=False)
            return
        if sock is pipe.client and pipe.cut_at is not None:
            room = pipe.cut_at - pipe.sent_up
            if len(data) >= room:
                pipe.to_upstream += data[:room]
                pipe.sent_up += room
                self._flush(pipe, pipe.upstream, blocking=True)
                self.cuts += 1
                self._drop(pipe)
                return
        if sock is pipe.client:
            pipe.sent_up += len(data)
            if self._rate is not None:
                self._tokens -= len(data)
        pipe.outbuf(pipe.peer(sock)).extend(data)
        self._flush(pipe, pipe.peer(sock))

    def _flush(self, pipe: _Pipe, sock: socket.socket, blocking: bool = False) -> None:
        buf = pipe.outbuf(sock)
        if blocking:
            sock.setblocking(True)
            sock.settimeout(5)
        try:
            while buf:
                n = sock.send(buf)
                del buf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(pipe)

    def _update_interest(self) -> None:
        self._refill()
        for pipe in self._pipes:
            for sock in (pipe.client, pipe.upstream):
                events = 0
                if not self._paused:
                    throttled = sock is pipe.client and self._rate is not None and self._tokens < 1
                    if len(pipe.outbuf(pipe.peer(sock))) < _HIGH_WATER and not throttled:
                        events |= selectors.EVENT_READ
                    if pipe.outbuf(sock):
                        events |= selectors.EVENT_WRITE
                registered = sock in self._sel.get_map()
                if events and registered:
                    self._sel.modify(sock, events, pipe)
                elif events:
                    self._sel.register(sock, events, pipe)
                elif registered:
                    self._sel.unregister(sock)

    def _drop(self, pipe: _Pipe, reset: bool = True) -> None:
        if pipe not in self._pipes:
            return
        self._pipes.remove(pipe)
        for sock in (pipe.client, pipe.upstream):
            if sock in self._sel.get_map():
                self._sel.unregister(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()

    def _cut_all(self) -> int:
        pipes = list(self._pipes)
        for pipe in pipes:
            self._drop(pipe)
        self.cuts += len(pipes)
        return len(pipes)

    def _shutdown(self) -> None:
        self._cut_all()
        self._running = False
        for sock in (self._listener, self._wake_r):
            if sock is not None:
                self._sel.unregister(sock)
                sock.close()
        self._wake_w.close()
