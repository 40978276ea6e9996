"""Test support: a real agent process, free ports, tokens for every role.

``agent_process`` starts ``edge-agent run`` as a real subprocess and waits for
its sd_notify ``READY=1`` on a unix socket the test owns: start-up is awaited
by the agent's own signal, never by sleeping.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from support.tls import CertAuthority, KeyPair

ROOT = Path(__file__).resolve().parents[2]
DEMO_CATALOG = ROOT / "demo" / "catalog.json"

# One token per role; the config holds only their hashes.
TOKENS = {
    "kiosk": "test-kiosk-token",
    "associate": "test-associate-token",
    "mirror": "test-mirror-token",
    "console": "test-console-token",
    "admin": "test-admin-token",
}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_dict(port: int, devices: list[dict] | None = None, store_id: str = "store-test",
                hub_url: str | None = None) -> dict:
    """A valid devices.yaml as a dict, with one client per role."""
    return {
        "store": {"id": store_id, "name": "Test Store", "timezone": "Asia/Shanghai", "currency": "CNY"},
        # Nothing listens there unless a test passes its own broker's url.
        "hub": {"url": hub_url or f"mqtt://127.0.0.1:{free_port()}"},
        "api": {
            "listen": f"127.0.0.1:{port}",
            # As in the demo: tests read the OpenAPI spec (the endpoint matrix, the fuzzer).
            "docs": True,
            "clients": [
                {"name": f"{role}-1", "role": role, "token_sha256": hashlib.sha256(tok.encode()).hexdigest()}
                for role, tok in TOKENS.items()
            ],
        },
        "devices": devices if devices is not None else [
            {"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.5}
        ],
    }


@dataclass(frozen=True)
class AgentTls:
    """A CA and the agent's server certificate (127.0.0.1 and localhost), for an agent on HTTPS.

    ``make_tls(dir)`` makes them with the openssl CLI; ``api_tls()`` is the
    ``api.tls`` section; ``context()`` is what a client trusts (only this CA),
    optionally presenting a client certificate for mutual TLS.
    """

    ca: CertAuthority
    server: KeyPair

    def api_tls(self, client_cert: str = "none", client_ca: Path | None = None) -> dict:
        """The ``api.tls`` section; ``client_ca`` defaults to this CA when client certificates are asked for."""
        section = {"cert_file": str(self.server.cert), "key_file": str(self.server.key)}
        if client_cert != "none":
            section |= {"client_cert": client_cert, "client_ca_file": str(client_ca or self.ca.cert)}
        return section

    def context(self, client: KeyPair | None = None) -> ssl.SSLContext:
        """A client context that trusts this CA alone, with ``client``'s certificate if given."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        return ctx


def make_tls(workdir: Path) -> AgentTls:
    """A fresh CA in ``workdir`` and a server certificate from it for 127.0.0.1 and localhost."""
    ca = CertAuthority(workdir).create()
    return AgentTls(ca, ca.issue("agent", "server"))


class AgentProcess:
    """``edge-agent run`` in a subprocess, with its own config, data dir and notify socket.

    With ``tls`` (``make_tls``) the agent serves HTTPS and WSS: ``api.tls`` is
    added to the config unless the test wrote its own, ``url`` is https://
    and ``client()`` trusts the test CA (and nothing else).
    """

    def __init__(self, workdir: Path, config: dict, env: dict[str, str] | None = None,
                 wrapper: list[str] | None = None, tls: AgentTls | None = None):
        self.workdir = workdir
        self.config = config
        self.config_path = workdir / "devices.yaml"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "agent.log"
        self.extra_env = env or {}
        self.wrapper = wrapper or []  # a command the agent runs under, e.g. umockdev-run ... --
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(config["api"]["listen"].rsplit(":", 1)[1])
        self.tls = tls
        if tls is not None:
            config["api"].setdefault("tls", tls.api_tls())
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if tls is not None else 'ws'}://127.0.0.1:{self.port}"
        self.notices: list[str] = []
        # AF_UNIX paths are limited to ~107 bytes: keep the socket in a short dir.
        self._sockdir = tempfile.mkdtemp(prefix="ea-", dir="/tmp")
        self.notify_path = os.path.join(self._sockdir, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.notify_path)

    def import_catalog(self, path: Path = DEMO_CATALOG) -> None:
        """Load a catalog file into the data dir with the real CLI."""
        subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "catalog-import", str(path), "--data-dir", str(self.data_dir)],
            check=True, capture_output=True,
        )

    def start(self, timeout: float = 90.0) -> "AgentProcess":
        """Spawn the agent and return once it has sent READY=1."""
        self.config_path.write_text(yaml.safe_dump(self.config, allow_unicode=True))
        self.notices.clear()  # a restart must not match the previous run's READY=1
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path, **self.extra_env}
        for key in ("EDGE_CONFIG", "EDGE_DATA_DIR", "EDGE_HUB_URL", "EDGE_API_LISTEN", "EDGE_STORE_ID"):
            if key not in self.extra_env:
                env.pop(key, None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "edge_agent.cli", "run", "--config", str(self.config_path),
             "--data-dir", str(self.data_dir)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        self.wait_notice("READY=1", timeout)
        return self

    def wait_notice(self, text: str, timeout: float = 30.0) -> str:
        """Block until the agent sends an sd_notify datagram containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for notice in self.notices:
                if text in notice:
                    return notice
            self._sock.settimeout(0.25)
            try:
                self.notices.append(self._sock.recv(4096).decode())
                continue
            except TimeoutError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode} before {text!r}:\n{self.log()}")
        raise AssertionError(f"no {text!r} from the agent within {timeout} s:\n{self.log()}")

    def client(self, role: str | None = None, **kwargs) -> httpx.Client:
        """An HTTP client for the agent, authenticated as ``role`` if given."""
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        if self.tls is not None:
            kwargs.setdefault("verify", self.tls.context(kwargs.pop("cert", None)))
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 10), **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind happens in the agent."""
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        """What the agent printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Kill the agent if still running and remove the socket."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._sock.close()
        try:
            os.unlink(self.notify_path)
            os.rmdir(self._sockdir)
        except OSError:
            pass


