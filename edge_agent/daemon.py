"""``edge-agent run``: serve the API with the agent inside, speak sd_notify,
feed the watchdog while healthy, and exit 0 within 10 s of SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import signal
import socket
import sys
import time
from urllib.parse import unquote_plus
from collections.abc import Generator
from pathlib import Path

import uvicorn

from edge_agent.api import limits
from edge_agent.api.app import create_app
from edge_agent.config import AgentConfig
from edge_agent.errors import StoreError
from edge_agent.store.db import lock_data_dir
from edge_agent.sdnotify import Notifier, watchdog_interval

log = logging.getLogger("edge_agent")

# How late the loop may wake before the watchdog stops being fed.
MAX_LOOP_LAG = 5.0
# uvicorn's share of the 10 s SIGTERM budget; the agent's stop gets the rest.
GRACEFUL_HTTP_SECONDS = 3
# Credentials a log line could carry: a token or ticket in a URL's query string (a careless client's
# ?token=, which the API refuses, is still in the request line uvicorn logs), and at debug the WebSocket
# handshake's headers, which the websockets library logs one by one through uvicorn's logger
# (``authorization: Bearer ...``, ``sec-websocket-protocol: ...``). A Sec-WebSocket-Protocol line is blanked
# whole but for a leading "bearer, ", whatever it holds: a client may split "bearer" and its token over two
# headers, one line each.
_SECRET_PARAMS = frozenset({"token", "access_token", "ticket"})
_QUERY_PARAM = re.compile(r"([?&])([^=&\s\"'#]+)=([^&\s\"'#]*)")
_SECRETS = (
    (re.compile(r"(?i)(authorization[\"']?\s*[:=,]\s*[\"']?(?:bearer|basic)\s+)[^\s\"',]+"), r"\1***"),
    (re.compile(r"(?i)(sec-websocket-protocol[\"']?\s*[:=,]\s*(?:b?[\"'])?(?:bearer\s*,\s*)?)[^\r\n\"']*"), r"\1***"),
)


def _blank_param(match: re.Match[str]) -> str:
    # By the name as the server decodes it: ?%74oken= is ?token= to Starlette, and in clear in the request line.
    name = unquote_plus(match.group(2)).strip().lower()
    return f"{match.group(1)}{match.group(2)}=***" if name in _SECRET_PARAMS else match.group(0)


def redact(text: str) -> str:
    """``text`` with every credential blanked: a token or ticket parameter in a URL, a bearer header."""
    if "=" in text:
        text = _QUERY_PARAM.sub(_blank_param, text)
    for pattern, blank in _SECRETS:
        text = pattern.sub(blank, text)
    return text


class RedactTokens(logging.Filter):
    """Blanks credentials (``_SECRETS``) in a log record's message before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is the handler's to report
            return True
        clean = redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


def _redact_uvicorn_logs() -> None:
    """Keep credentials out of every line: uvicorn's loggers (uvicorn.Config sets up handlers of their own)
    and every handler of the root logger, which all the agent's other loggers reach."""
    handlers = [h for name in ("uvicorn", "uvicorn.error", "uvicorn.access") for h in logging.getLogger(name).handlers]
    for target in [*handlers, *logging.getLogger().handlers,
                   logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access")]:
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())


WS_MAX_MESSAGE = 64 * 1024


class _Server(uvicorn.Server):
    """uvicorn, minus its signal capture (which re-raises SIGTERM after
    shutdown and so turns a clean stop into exit -15), plus READY=1."""

    def __init__(self, config: uvicorn.Config, notifier: Notifier):
        super().__init__(config)
        self.notifier = notifier
        self.signalled = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        # Named for what arrived: under systemd or `make run` that is SIGTERM, whoever pressed Ctrl-C.
        log.info("asked to stop (%s): finishing in-flight work", signal.Signals(sig).name)
        self.notifier.stopping()
        self.signalled = True
        self.should_exit = True

    async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        await super().startup(sockets)
        if not self.should_exit:
            # What start-up made (modules, app, agent) lives until the end: keep it out of the
            # collector's full passes, which otherwise stopped everything for up to 130 ms at
            # checkout speed (bench/bench_checkout.py).
            gc.freeze()
            self.notifier.ready()
            self.notifier.status("serving")


async def _feed_watchdog(server: _Server, notifier: Notifier, interval: float) -> None:
    """Ping systemd only while the loop is responsive and the store writer lives."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(interval)
        lag = time.monotonic() - before - interval
        agent = getattr(server.config.app.state, "agent", None)  # type: ignore[union-attr]
        healthy = lag < MAX_LOOP_LAG and (agent is None or agent.store.writer_alive)
        if healthy:
            notifier.watchdog()
        else:
            log.error("not feeding the watchdog: loop lag %.1f s, store writer alive: %s",
                      lag, agent.store.writer_alive if agent else "n/a")


def _bind(config: AgentConfig) -> socket.socket:
    """Bind the API's socket before anything starts, so a taken port fails fast."""
    host, port = config.api.listen.host, config.api.listen.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise SystemExit(
            f"cannot listen on {config.api.listen} (api.listen): {err.strerror}; "
            "stop whatever uses it or choose another port"
        ) from err
    sock.set_inheritable(True)
    return sock


async def _serve(config: AgentConfig, data_dir: Path, log_level: str, config_path: Path | None) -> None:
    sock = _bind(config)
    try:
        lock_data_dir(data_dir)  # held until the process ends: no drain, no second agent on it
    except StoreError as err:
        sock.close()
        raise SystemExit(f"{err}; not starting") from err
    tls_context = None
    if config.api.tls is not None:
        from edge_agent.tls import TlsFileError, server_context

        try:
            tls_context = server_context(config.api.tls)
        except TlsFileError as err:
            sock.close()
            # Never plain HTTP instead: the tokens and member tags would cross the Wi-Fi in clear.
            raise SystemExit(f"{err}; not starting (edge-agent check says more)") from err
    notifier = Notifier()
    app = create_app(config, data_dir, config_path=config_path)
    limits.quiet_loop_errors(asyncio.get_running_loop())
    api = config.api
    files = limits.raise_file_limit()
    cap = limits.connection_cap(api.max_connections, files)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.api.listen.host,
            port=config.api.listen.port,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_graceful_shutdown=GRACEFUL_HTTP_SECONDS,
            lifespan="on",
            # The agent is no proxy's backend: a client's X-Forwarded-For (even from 127.0.0.1) is not its
            # address, which the pairing limits and the log use.
            proxy_headers=False,
            # A whole request head within header_timeout, connections capped in all and per address:
            # slow or piled-up sockets cannot take the API from the kiosks (edge_agent/api/limits.py).
            # With api.tls the protocol does the handshake too, within header_timeout and under the caps.
            http=limits.guarded_protocol(api.header_timeout, cap, api.max_connections_per_client, tls_context,
                                         max_body=api.max_body),
            timeout_keep_alive=5,
            # A WebSocket message larger than this is refused (close 1009) before it is read into memory:
            # clients of the feed and the wristband stream send a few bytes (an ack), never more.
            ws_max_size=WS_MAX_MESSAGE,
            # asyncio accepts up to ``backlog`` sockets in a row before a protocol sees any: the burst
            # must fit in the files the connection cap leaves, or a flood meets EMFILE first.
            backlog=limits.accept_backlog(files, cap),
        ),
        notifier,
    )
    _redact_uvicorn_logs()
    scheme = "https" if tls_context is not None else "http"
    log.info("API on %s://%s%s", scheme, config.api.listen,
             f" (client certificates: {api.tls.client_cert.value})" if api.tls is not None else " (no TLS: api.tls)")
    watchdog = None
    interval = watchdog_interval()
    if interval:
        watchdog = asyncio.create_task(_feed_watchdog(server, notifier, interval))
    try:
        await server.serve(sockets=[sock])
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if not server.started and not server.signalled:
        raise SystemExit(f"the agent did not start (see the error above); API was to listen on {config.api.listen}")


def run(config: AgentConfig, data_dir: Path, log_level: str = "info", config_path: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop. ``config_path``: the file ``config`` came from (a version
    from the hub replaces it); a version that needs a restart ends the process with 75 (Agent.stop)."""
    # force: python-escpos calls logging.basicConfig() when it is imported
    # (escpos/capabilities.py), which would make this call do nothing.
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    # httpx logs every request at INFO: an access point polled twice a second would be most of the log.
    # max: a logger's own level, not the root's, decides what it passes on (at "error", stay at error).
    quiet = logging.NOTSET if log_level == "debug" else max(logging.WARNING, logging.getLevelName(log_level.upper()))
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)
    try:
        asyncio.run(_serve(config, data_dir, log_level, config_path))
    except SystemExit as err:
        # uvicorn exits with a bare status code when the lifespan start fails;
        # the cause was logged above it.
        log.error("%s", "the agent did not start; see the error above" if isinstance(err.code, int) else err)
        return 1
    return 0
