"""The console beside the hub worker: its own thread, event loop, HTTP server and database connection.

``edge-hub run --http HOST:PORT`` builds one. The MQTT ingest path is left
as it was: the worker thread only updates the fleet in memory and pokes this
loop (``call_soon_threadsafe``) once per committed group; HTTP, the live
streams, the alert rules and the console's database reads all run here. The
socket is bound in ``prepare()``, in the caller's thread, so a port in use is
an error at start-up, not a log line in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

import uvicorn

from sync.hub.console.app import Console, create_app
from sync.hub.console.auth import Tokens
from sync.hub.console.commands import CommandDesk
from sync.hub.console.dbthread import DBThread
from sync.hub.console.evaluator import Evaluator
from sync.hub.console.fleet import Fleet, FleetChange
from sync.console.rules import RuleSet
from sync.hub.console.stream import Broadcaster
from sync.hub.errors import ConsoleConfigError

if TYPE_CHECKING:
    from sync.hub.service import HubService

log = logging.getLogger("sync.hub.console")
EXPIRE_EVERY_S = 0.5  # how often unanswered commands are checked against their deadline


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` or ``PORT`` for loopback); ConsoleConfigError when it is not one."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConsoleConfigError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8090")
    return host, int(port)


class ConsoleServer:
    """Console HTTP server, alert evaluator and command desk for one hub process."""

    def __init__(self, service: "HubService", fleet: Fleet, listen: str, tokens: Tokens, rules: RuleSet,
                 db_url: str, *, version: str, command_timeout_s: float = 30.0, enrollment: Any = None,
                 releases: Any = None):
        self.service = service
        self.fleet = fleet
        self.host, self.port = parse_listen(listen)
        self.db = DBThread(db_url)
        self.broadcaster = Broadcaster()
        self.evaluator = Evaluator(rules, fleet, self.db, lambda rows: self.broadcaster.publish(alerts=rows))
        self.desk = CommandDesk(self.db.read, self.db.write, service.send_command, command_timeout_s,
                                lambda row: self.broadcaster.publish(commands=(row,)))
        self.console = Console(version, fleet, self.db, rules, self.evaluator, self.desk, self.broadcaster, tokens,
                               stats=lambda: service.stats, connected=lambda: service.connected,
                               enrollment=enrollment, releases=releases)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._tasks: set[asyncio.Future[None]] = set()  # answered commands being read back for the pages
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        """Where the page is."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def prepare(self) -> None:
        """Open the console's database connection, load the fleet from it, bind the port."""
        self.db.open()
        n = self.fleet.load(self.db.db)  # type: ignore[arg-type]
        log.info("console: %d %s from the database", n, "store" if n == 1 else "stores")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as err:
            sock.close()
            raise ConsoleConfigError(f"--http {self.host}:{self.port}: cannot listen: {err.strerror or err}") from err
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self.fleet.subscribe(self._from_worker)

    def start(self, timeout: float = 15.0) -> None:
        """Serve in a thread; return once the server accepts requests."""
        self._thread = threading.Thread(target=self._run, name="hub-console", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the console did not start within {timeout:g} s: {self.error}")
        if self.error is not None:
            raise RuntimeError(f"the console failed to start: {self.error}") from self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # noqa: BLE001 - reported to start() and logged; the worker goes on
            self.error = err
            log.exception("the console stopped")
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.broadcaster.bind(self._loop)
        config = uvicorn.Config(create_app(self.console), log_config=None, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        tasks = [asyncio.create_task(self.evaluator.run(), name="console-alerts"),
                 asyncio.create_task(self._expire(), name="console-commands"),
                 asyncio.create_task(self._announce(), name="console-started")]
        try:
            await self._server.serve(sockets=[self._sock])  # type: ignore[list-item]
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _announce(self) -> None:
        while self._server is not None and not self._server.started:
            await asyncio.sleep(0.02)  # uvicorn has no started event to await
        self._started.set()

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            try:
                await self.desk.expire()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("console: could not mark unanswered commands")

    def _from_worker(self, change: FleetChange) -> None:
        """A fleet listener: any thread (the worker's, or the loop's own) -> the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._changed, change)

    def _changed(self, change: FleetChange) -> None:
        if change.commands:
            task = asyncio.ensure_future(self._answered(change.commands))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.broadcaster.publish(stores=change.stores)

    async def _answered(self, commands: list[dict[str, Any]]) -> None:
        try:
            await self.desk.answered(commands)
        except Exception:  # noqa: BLE001 - a page misses one row; the next load reads the table
            log.exception("console: could not read answered commands")

    def stop(self, timeout: float = 10.0) -> None:
        """End the streams, stop the server, close the database connection."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.broadcaster.close)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.db.close()
