"""systemd's sd_notify protocol without libsystemd: readiness, status and watchdog.

systemd hands a ``Type=notify`` service the path of a unix datagram socket in
``NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Each
datagram is newline-separated ``KEY=VALUE`` assignments; see sd_notify(3).
Outside systemd (a developer's shell, the tests) the variable is unset and
every call here is a no-op that returns False.

How the daemon uses it::

    notifier = Notifier()                 # reads NOTIFY_SOCKET once, here
    ...start the store, the drivers, the HTTP API...
    notifier.ready()                      # only once the API is listening

    interval = watchdog_interval()        # None: no WatchdogSec=, no task
    # A task pings every `interval` seconds, and only while the agent is
    # healthy: the ping comes from the event loop itself (so a blocked loop
    # stops the pings) and is skipped while the store's writer thread is
    # dead. systemd then kills and restarts a wedged agent after WatchdogSec
    # instead of leaving it half alive. Never ping from a separate thread:
    # that thread would keep pinging while the loop hangs.
    while True:
        if store_writer_alive():
            notifier.watchdog()
        await asyncio.sleep(interval)

    # On SIGTERM:
    notifier.stopping()                   # then drain and exit within 10 s

Long start-up work (a large migration) may call ``extend_timeout()`` so that
``TimeoutStartSec=`` does not kill it. Child processes (the mirror) should be
started without ``NOTIFY_SOCKET`` and ``WATCHDOG_*`` in their environment;
``NotifyAccess=main`` makes systemd ignore them anyway.

Sending never raises and never blocks: the socket is non-blocking, and a
failure is logged once when it starts and once when it recovers.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify states to the socket named by ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        # Read once: the daemon may later scrub its environment before
        # starting children, and the socket must not change under us.
        self.socket_name: str = env.get("NOTIFY_SOCKET", "")
        self._failing = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given (the agent runs under systemd)."""
        return bool(self.socket_name)

    def ready(self) -> bool:
        """Tell systemd start-up is complete; the watchdog starts counting now."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """Tell systemd the agent has begun shutting down."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """Tell systemd the agent is reloading its configuration; send ``ready()`` when done."""
        # MONOTONIC_USEC is required by Type=notify-reload (systemd 253+) and
        # ignored by older versions; time.monotonic_ns is CLOCK_MONOTONIC on Linux.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        # A newline would start a new assignment and could set another key.
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Ping the watchdog; call only while the agent is healthy."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start or stop timeout fires."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was sent."""
        if not self.socket_name:
            return False
        address = _address(self.socket_name)
        if address is None:
            self._failed("unsupported NOTIFY_SOCKET %r (want a path or @abstract name)", self.socket_name)
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Non-blocking: a full queue at systemd's end must not stall
                # the event loop; a lost ping is better than a frozen agent.
                sock.setblocking(False)
                sock.sendto(payload, address)
        except OSError as err:
            self._failed("sd_notify to %s failed: %s", self.socket_name, err)
            return False
        if self._failing:
            self._failing = False
            log.info("sd_notify to %s works again", self.socket_name)
        return True

    def _failed(self, message: str, *args: object) -> None:
        # Log when failures start, not on every watchdog ping after that.
        if self._failing:
            log.debug(message, *args)
        else:
            self._failing = True
            log.warning(message, *args)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None if no watchdog is asked of this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    # WATCHDOG_PID names the process the watchdog is for; a child that
    # inherited the variables (the mirror) must not ping.
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            log.warning("ignoring watchdog: WATCHDOG_PID=%r is not a pid", pid)
            return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring watchdog: WATCHDOG_USEC=%r is not an integer", usec)
        return None
    if value <= 0:
        return None
    # Half the timeout, as sd_watchdog_enabled(3) recommends: one late ping
    # (a slow fsync, a GC pause) does not get the agent killed.
    return value / 2 / 1_000_000


def _address(name: str) -> str | bytes | None:
    """The sendto address for a NOTIFY_SOCKET value, or None if unsupported."""
    if name.startswith("@"):
        # Abstract namespace: a leading NUL instead of '@', no terminator.
        return b"\0" + os.fsencode(name[1:])
    if name.startswith("/"):
        return name
    # systemd 254+ may also pass "vsock:CID:PORT", for VMs; not needed on a store PC.
    return None
