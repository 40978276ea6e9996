"""sd_notify against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.sdnotify import Notifier, watchdog_interval


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Not tmp_path: sun_path holds only 108 bytes and pytest's paths can be longer.
    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        yield Path(d)


@pytest.fixture
def systemd(sock_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket playing systemd's notify socket, and its path."""
    path = str(sock_dir / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path


def pending(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``, without blocking."""
    sock.setblocking(False)
    got = []
    try:
        while True:
            got.append(sock.recv(4096))
    except BlockingIOError:
        return got


def test_each_state_is_one_exact_datagram(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready() is True
    assert sock.recv(4096) == b"READY=1"
    assert n.watchdog() is True
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("draining outbox: 12 events") is True
    assert sock.recv(4096) == b"STATUS=draining outbox: 12 events"
    assert n.stopping() is True
    assert sock.recv(4096) == b"STOPPING=1"
    assert n.extend_timeout(2.5) is True
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=2500000"
    assert pending(sock) == []


def test_reloading_carries_monotonic_time(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    assert Notifier(environ={"NOTIFY_SOCKET": path}).reloading() is True
    first, second = sock.recv(4096).split(b"\n")
    assert first == b"RELOADING=1"
    assert second.startswith(b"MONOTONIC_USEC=") and int(second.split(b"=")[1]) > 0


def test_status_newlines_cannot_inject_assignments(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    Notifier(environ={"NOTIFY_SOCKET": path}).status("printer offline\nREADY=1")
    assert sock.recv(4096) == b"STATUS=printer offline READY=1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_abstract_namespace_socket() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).ready() is True
        assert sock.recv(4096) == b"READY=1"


def test_environ_is_read_at_construction(systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = systemd
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert n.watchdog() is True
    assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_unset_socket_is_a_noop(systemd: tuple[socket.socket, str], environ: dict[str, str]) -> None:
    sock, _ = systemd
    n = Notifier(environ=environ)
    assert not n.enabled
    assert [n.ready(), n.watchdog(), n.status("x"), n.stopping()] == [False] * 4
    assert pending(sock) == []


def test_missing_socket_returns_false_and_logs_once(sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(environ={"NOTIFY_SOCKET": str(sock_dir / "absent")})
    with caplog.at_level(logging.DEBUG, logger="edge_agent.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "absent" in warnings[0].getMessage()


def test_recovery_is_logged_once(sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(sock_dir / "notify")
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.INFO, logger="edge_agent.sdnotify"):
        assert n.watchdog() is False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            assert n.watchdog() is True
            assert n.watchdog() is True
            assert pending(sock) == [b"WATCHDOG=1", b"WATCHDOG=1"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


def test_socket_closed_by_peer_returns_false(sock_dir: Path) -> None:
    path = str(sock_dir / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
    # The file is left behind with nobody listening: ECONNREFUSED.
    assert os.path.exists(path)
    assert Notifier(environ={"NOTIFY_SOCKET": path}).ready() is False


def test_not_a_socket_returns_false(sock_dir: Path) -> None:
    path = sock_dir / "plain-file"
    path.write_text("")
    assert Notifier(environ={"NOTIFY_SOCKET": str(path)}).ready() is False


@pytest.mark.parametrize("name", ["relative/notify", "vsock:2:1234"])
def test_unsupported_address_returns_false(name: str) -> None:
    assert Notifier(environ={"NOTIFY_SOCKET": name}).ready() is False


def test_full_queue_never_blocks(systemd: tuple[socket.socket, str]) -> None:
    sock, path = systemd
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    results: list[bool] = []

    def flood() -> None:
        # Nobody reads: the receiver's queue fills after a few hundred at most.
        for _ in range(5000):
            results.append(n.watchdog())

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "watchdog() blocked on a full notify socket"
    assert results[0] is True
    assert False in results


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "garbage"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "not-a-pid"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


def test_watchdog_interval_honours_pid() -> None:
    mine = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    other = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(mine) == 5.0
    assert watchdog_interval(other) is None


def test_watchdog_interval_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0
