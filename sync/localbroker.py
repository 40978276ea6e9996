"""A local Mosquitto process: the demo store's hub broker, and the one the
tests and benchmarks start on a free loopback port and stop by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    """Path of the mosquitto binary, or None (Debian's package puts it in /usr/sbin)."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, log: Callable[[], str]) -> None:
    """Return once ``port`` on loopback accepts connections; RuntimeError if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {proc.returncode}{_said(log())}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {port} within {timeout:g} s{_said(log())}") from None
            time.sleep(0.02)


def _said(log: str) -> str:
    """The broker's log, to follow an error message."""
    return f"; its log:\n{log.rstrip()}" if log.strip() else " (its log is empty)"


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Signal ``proc`` by its PID and wait; SIGKILL if it has not gone within 10 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class LocalMosquitto:
    """One broker process on 127.0.0.1; ``stop()`` then ``start()`` keeps its port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = ""):
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.conf_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "LocalMosquitto":
        """Start the broker and return once it accepts TCP connections."""
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # As root, mosquitto switches to the `mosquitto` user, which cannot
        # write our persistence dir or log: stay who we are.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf_path.write_text(
            user
            + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # Stores buffer downlink for days; a benchmark floods uplink.
            "max_queued_messages 1000000\n"
            "max_inflight_messages 0\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"log_dest file {self.log_path}\n"
            + self.extra_conf
        )
        self.proc = subprocess.Popen([binary, "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_listening(self.proc, self.port, timeout, self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker by its PID (SIGTERM saves its persistence; SIGKILL does not)."""
        stop_process(self.proc, sig)
        self.proc = None

    def log(self) -> str:
        """The broker's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
