"""Bearer tokens checked against ``token_sha256`` of devices.yaml and of paired devices, with roles; one-use
tickets for URLs.

401 when the token is missing or unknown (or its device was unpaired), 403
when its client's role may not make the call. The token itself never sits in
the file, only its SHA-256. A paired PAD or wristband (edge_agent/pairing.py)
is a client of role associate like one of devices.yaml, with its ``zones``;
every client this module hands out is an ``ApiClient`` (devices.yaml's have
no zones).

A token never goes in a URL: URLs end up in access logs, proxies and browser
history. A browser that must name its credential in one (an ``<img>`` cannot
send headers, nor can a ``WebSocket``) first asks ``POST /v1/tickets`` with
its bearer header for a ticket: random, good once, for one purpose (and
device), for ``TICKET_TTL_S`` seconds, bound to the client that asked. The
agent keeps only the ticket's SHA-256, in memory; a restart forgets them all.
A ticket is spent before the connection it opens is accepted, so the one an
access log may show is always spent.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edge_agent.config import ClientConfig, Role
from edge_agent.pairing import ApiClient, Pairing

# Long enough to open a connection on a slow Wi-Fi, short enough to be worthless in a log.
TICKET_TTL_S = 30.0
# A screen needs one at a time; a few more cover reconnects racing each other.
TICKETS_PER_CLIENT = 8
# What a client sees when it puts its token in a URL (within a WebSocket close reason's 123 bytes).
TOKEN_IN_URL = "a token in a URL is refused: send 'Authorization: Bearer', or ?ticket= from POST /v1/tickets"

_bearer = HTTPBearer(auto_error=False, description="a client token from devices.yaml api.clients")

ALL_ROLES = frozenset(Role)


# Why a token that names no client is refused, for a device that was paired and is no more.
UNPAIRED = "this device was unpaired: pair it again with a new code"


def _config_clients(conn: HTTPConnection) -> dict[str, ApiClient]:
    """devices.yaml's clients by token digest, as ApiClients (made once from ``app.state.clients``)."""
    state = conn.app.state
    source = state.clients
    cached = getattr(state, "api_clients", None)
    if cached is None or cached[0] is not source:
        cached = state.api_clients = (source, {h: ApiClient(**c.model_dump()) for h, c in source.items()})
    return cached[1]


def pairing_of(conn: HTTPConnection) -> Pairing | None:
    """The paired devices (edge_agent/api/routers/pairing.py loads them at start), if loaded."""
    return getattr(conn.app.state, "pairing", None)


def client_for(request: HTTPConnection, token: str) -> ApiClient | None:
    """The client whose token hashes to ``token_sha256``: one of devices.yaml, or a paired device not unpaired."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    found = _config_clients(request).get(digest)
    if found is None and (pairing := pairing_of(request)) is not None:
        found = pairing.client(digest)
    return found


def still_admitted(conn: HTTPConnection, client: ClientConfig) -> bool:
    """Whether ``client``, admitted a moment ago, still is: False for a paired device unpaired meanwhile (a
    connection registered after its unpairing closed the others would otherwise stay open)."""
    if not getattr(client, "paired", False):
        return True  # devices.yaml's clients change only with a restart
    pairing = pairing_of(conn)
    return pairing is not None and pairing.holds(client.token_sha256)


def refusal(conn: HTTPConnection, token: str) -> str:
    """Why ``token`` names no client: ``UNPAIRED`` for a device that was unpaired, else "unknown token"."""
    pairing = pairing_of(conn)
    if pairing is not None and pairing.unpaired(hashlib.sha256(token.encode()).hexdigest()) is not None:
        return UNPAIRED
    return "unknown token"


def require(*roles: Role):
    """A dependency that admits only clients with one of ``roles``."""
    allowed = frozenset(roles) or ALL_ROLES

    async def check(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> ApiClient:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        client = client_for(request, creds.credentials)
        if client is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, refusal(request, creds.credentials),
                                headers={"WWW-Authenticate": "Bearer"})
        if client.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {client.role.value!r} may not do this; allowed: {', '.join(sorted(r.value for r in allowed))}",
            )
        return client

    return check


class Purpose(str, Enum):
    """What a ticket opens."""

    EVENTS = "events"  # WS /v1/events
    STREAM = "stream"  # GET /v1/mirror/{device}/stream
    WRISTBAND = "wristband"  # WS /v1/wristband


@dataclass(frozen=True, slots=True)
class _Ticket:
    client: ClientConfig
    purpose: Purpose
    device: str | None
    expires: float


class TicketLimit(Exception):
    """The client holds as many unspent tickets as it may."""


class Tickets:
    """One-use, short-lived tickets, kept by their SHA-256, at most ``per_client`` unspent per client."""

    def __init__(self, ttl: float = TICKET_TTL_S, per_client: int = TICKETS_PER_CLIENT,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.per_client = per_client
        self._clock = clock
        self._by_hash: dict[str, _Ticket] = {}
        self._count: dict[str, int] = {}  # unspent tickets per client name

    def issue(self, client: ClientConfig, purpose: Purpose, device: str | None = None) -> str:
        """A new ticket for ``client``; TicketLimit when it already holds ``per_client`` unspent ones."""
        self._expire()
        if self._count.get(client.name, 0) >= self.per_client:
            raise TicketLimit(f"{client.name!r} holds {self.per_client} unspent tickets; use one or wait "
                              f"{self.ttl:.0f} s for them to expire")
        ticket = secrets.token_urlsafe(32)
        self._by_hash[_digest(ticket)] = _Ticket(client, purpose, device, self._clock() + self.ttl)
        self._count[client.name] = self._count.get(client.name, 0) + 1
        return ticket

    def redeem(self, ticket: str, purpose: Purpose, device: str | None = None) -> ClientConfig | None:
        """The client the ticket was issued to, if it is unspent, unexpired and for this purpose and device.

        The ticket is spent whatever the answer: a ticket tried for the wrong
        purpose is gone too.
        """
        found = self._by_hash.pop(_digest(ticket), None)
        if found is None:
            return None
        self._release(found.client.name)
        if found.expires <= self._clock() or found.purpose != purpose or found.device != device:
            return None
        return found.client

    def revoke(self, name: str) -> int:
        """Drop every unspent ticket of the client ``name`` (a device unpaired); how many there were."""
        dropped = [d for d, t in self._by_hash.items() if t.client.name == name]
        for d in dropped:
            self._release(self._by_hash.pop(d).client.name)
        return len(dropped)

    def outstanding(self, name: str) -> int:
        """Unspent, unexpired tickets of the client ``name``."""
        self._expire()
        return self._count.get(name, 0)

    def _expire(self) -> None:
        now = self._clock()
        for digest in [d for d, t in self._by_hash.items() if t.expires <= now]:
            self._release(self._by_hash.pop(digest).client.name)

    def _release(self, name: str) -> None:
        left = self._count.get(name, 0) - 1
        if left > 0:
            self._count[name] = left
        else:
            self._count.pop(name, None)


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def tickets(conn: HTTPConnection) -> Tickets:
    """The app's tickets, made on first use."""
    state = conn.app.state
    if getattr(state, "tickets", None) is None:
        state.tickets = Tickets()
    return state.tickets


def bearer(conn: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
