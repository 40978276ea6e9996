"""The embedded broker as a child process, with LocalMosquitto's surface
(sync/localbroker.py): ``start()``, ``stop()``, ``url``, ``port``, ``log()``.

The launcher starts ``python -m sync.embedded_broker`` and stops it by its
PID. Unlike Mosquitto it keeps nothing across a restart: sessions, queued
messages and retained messages live in the process's memory only.
"""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from sync.localbroker import stop_process

_LISTENING = re.compile(r"^listening on (\S+):(\d+)$")


class EmbeddedBrokerProcess:
    """One ``python -m sync.embedded_broker`` on 127.0.0.1; ``stop()`` then ``start()`` keeps its port."""

    def __init__(self, workdir: Path | None = None, port: int | None = None):
        self.workdir = workdir
        self.port = port or 0  # 0: the child picks a free port and says which
        self.log_path = workdir / "embedded-broker.log" if workdir is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "EmbeddedBrokerProcess":
        """Spawn the broker; return once it printed its ``listening on`` line (it accepts connections)."""
        stderr: int | object = subprocess.DEVNULL
        if self.workdir is not None and self.log_path is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            stderr = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sync.embedded_broker", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,  # type: ignore[arg-type]
            )
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()  # type: ignore[attr-defined]
        line = self._first_line(timeout)
        match = _LISTENING.match(line)
        if match is None:
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"the embedded broker did not start (said {line!r}):\n{self.log()}")
        self.port = int(match.group(2))
        return self

    def _first_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop(signal.SIGKILL)
                    raise RuntimeError(f"the embedded broker did not listen within {timeout} s:\n{self.log()}")
                chunk = self.proc.stdout.read1(256)  # type: ignore[attr-defined]
                if not chunk:
                    code = self.proc.wait()
                    raise RuntimeError(f"the embedded broker exited with {code}:\n{self.log()}")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker by its PID (SIGKILL if SIGTERM has not ended it within 10 s)."""
        stop_process(self.proc, sig)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def log(self) -> str:
        """What the broker wrote to stderr so far (warnings only, by default)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
