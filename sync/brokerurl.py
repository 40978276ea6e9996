"""What the agent's link and the reference hub share about reaching a broker:
the URL (``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``) and socket tuning."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class BrokerURLError(ValueError):
    """The broker URL is not ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``."""


DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """Where the broker is; credentials may ride in the URL (``mqtt://user:pass@host``)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The URL without the password, safe to print."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerURL:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``; BrokerURLError saying how to fix anything else."""
    shown = re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise BrokerURLError(f"broker URL {shown!r}: {err}; write mqtt://HOST:1883") from err
    if parts.scheme not in _DEFAULT_PORTS:
        raise BrokerURLError(f"broker URL {shown!r} must start with mqtt:// (or mqtts:// for TLS); write mqtt://HOST:1883")
    if not parts.hostname:
        raise BrokerURLError(f"broker URL {shown!r} has no host; write mqtt://HOST:1883")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerURLError(f"broker URL {shown!r} has a path or query; write only mqtt://HOST:PORT")
    return BrokerURL(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def tcp_no_delay(client: object, userdata: object, sock: object) -> None:
    """paho's ``on_socket_open``: set TCP_NODELAY, so that a small packet (an ack,
    a command result) does not wait ~40 ms for the peer's delayed ACK
    (measured with tests/sync/test_faults.py's clients)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass  # not a TCP socket (unix socket, websocket wrapper): nothing to tune
