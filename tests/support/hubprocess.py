"""The reference hub, ``edge-hub run``, as a real subprocess for end-to-end tests.

Ready means subscribed: ``edge-hub run`` prints its "connected" line only
after the broker granted its subscriptions, and ``start()`` waits for that
line. The same client id across restarts resumes the hub's session at the
broker, which keeps the stores' batches while the hub is away.
(tests/sync/test_hub.py has its own copy of this class for the hub's own tests.)
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class HubProcess:
    """``edge-hub run --broker URL --db URL``; ``start()`` again after ``kill()`` or ``stop()``."""

    def __init__(self, broker_url: str, db_url: str, log_path: Path, client_id: str = "hub-1",
                 group: str = "hub", env: dict[str, str] | None = None):
        self.args = [sys.executable, "-m", "sync.hub", "run", "--broker", broker_url, "--db", db_url,
                     "--group", group, "--client-id", client_id]
        self.log_path = log_path
        self.extra_env = env or {}  # e.g. EDGE_HUB_CONSOLE_TOKEN for a hub run with --http
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    def start(self, timeout: float = 20.0) -> "HubProcess":
        """Spawn the hub; return once it is connected and subscribed."""
        self.lines = queue.Queue()
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env})
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        self.expect("edge-hub: connected", timeout)
        return self

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """The next stdout line starting with ``prefix``; fails on a timeout or an exit."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line from the hub within {timeout} s:\n{self.log()}") from None
            if line is None:
                raise AssertionError(f"hub exited ({self.proc.wait()}) before {prefix!r}:\n{self.log()}")
            if line.startswith(prefix):
                return line

    def expect_log(self, text: str, timeout: float, count: int = 1) -> None:
        """Wait for ``text`` to be ``count`` times in the hub's log, watching the file grow (no fixed sleep)."""
        deadline = time.monotonic() + timeout
        with self.log_path.open() as f:
            seen = ""
            while seen.count(text) < count:
                chunk = f.read()
                if chunk:
                    seen += chunk
                    continue
                assert time.monotonic() < deadline, f"no {text!r} in the log within {timeout} s:\n{seen}"
                threading.Event().wait(0.05)  # poll interval of a growing file, not a synchronization

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and the final stats line."""
        self.proc.send_signal(signal.SIGTERM)
        last = self.expect("edge-hub: stopped", 15)
        return self.proc.wait(10), last

    def kill(self) -> None:
        """SIGKILL: nothing after the last commit happens (no acks, no PUBACKs)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self.alive():
            self.kill()
