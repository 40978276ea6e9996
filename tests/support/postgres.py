"""A throwaway PostgreSQL server for tests: initdb into a temp dir, a free
loopback port, started as a subprocess and stopped by its PID.

PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user that Debian's package creates (``make test`` installs it).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from support.agent import free_port


def _bindir() -> Path:
    found = shutil.which("pg_ctl") or shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `apt-get install postgresql` (make test does it as root)")
    return Path(versions[-1])


class Postgres:
    """One server; ``database()`` makes a fresh empty database and returns its URL."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True)

    def start(self, timeout: float = 30.0) -> "Postgres":
        """initdb and start; returns once the server accepts connections."""
        import psycopg

        bindir = _bindir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        data, sock = self.workdir / "data", self.workdir / "sock"
        sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.workdir, "postgres")
            shutil.chown(sock, "postgres")
            # Every parent must be traversable by postgres.
            for parent in self.workdir.parents:
                if str(parent).startswith("/tmp/") or parent == Path("/tmp"):
                    os.chmod(parent, os.stat(parent).st_mode | 0o711)
        self._run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres",
                  "--encoding=UTF8", "--no-sync")
        self.log = open(self.workdir / "postgres.log", "ab")
        self.data = data
        self.proc = subprocess.Popen(
            [*self._as, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=1).close()
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{(self.workdir / 'postgres.log').read_text()}")
                time.sleep(0.05)

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """Create a fresh, empty database and return its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            # The postmaster's own PID: runuser does not forward signals.
            pidfile = self.workdir / "data" / "postmaster.pid"
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()
