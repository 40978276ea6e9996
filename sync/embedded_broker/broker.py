"""The embedded broker's server: an asyncio TCP listener handing each socket
to a Connection, and a thread wrapper for synchronous callers.

All state is in memory; stopping the broker forgets every session and
retained message (Mosquitto with persistence keeps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

from sync.embedded_broker.connection import SERVER_SHUTTING_DOWN, Connection, Settings
from sync.embedded_broker.router import Router

log = logging.getLogger("sync.embedded_broker")


class EmbeddedBroker:
    """An MQTT 5 / 3.1.1 broker on ``host:port`` (0: any free port); ``start()`` and ``stop()`` act."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, settings: Settings = Settings()):
        self.host = host
        self.settings = settings
        self.router = Router(settings.max_queued)
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[Connection, asyncio.Task] = {}

    @property
    def port(self) -> int:
        """The port it listens on (the real one once started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT``, the form ``hub.url`` and ``edge-hub run --broker`` take."""
        return f"mqtt://{self.host}:{self._port}"

    async def start(self) -> None:
        """Listen; return once connections are accepted. OSError if the port is taken."""
        self._server = await asyncio.start_server(self._serve, self.host, self._port, limit=1 << 20)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        """Stop listening, tell MQTT 5 clients (DISCONNECT 0x8B, no Wills), drop every session."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.kick(SERVER_SHUTTING_DOWN, publish_will=False)
        tasks = list(self._connections.values())
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._server.wait_closed()
        self._server = None
        self.router.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Small packets (PUBACK, an ack on hub/{store}/ack) must not wait for the peer's delayed ACK.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(self.router, reader, writer, self.settings)
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn] = task
        try:
            await conn.run()
        except Exception:
            log.exception("connection from %s failed", conn.peer)  # a bug here must not stop the broker
            conn.kick(0x80, publish_will=True)
        finally:
            del self._connections[conn]


class BrokerThread:
    """An EmbeddedBroker on its own event loop thread: ``start()`` returns once it listens."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, settings: Settings = Settings()):
        self.broker = EmbeddedBroker(host, port, settings)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.broker.port

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT``."""
        return self.broker.url

    def start(self, timeout: float = 10.0) -> "BrokerThread":
        """Start the thread and the broker; raise what the broker raised (a taken port: OSError)."""
        self._ready.clear()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="embedded-broker",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the embedded broker did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.broker.start()
        except BaseException as err:  # handed to start() in the caller's thread
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.broker.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker and wait for its thread."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None
