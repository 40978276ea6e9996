"""``WS /v1/events``: the live feed for associates, kiosks and consoles.

Authenticate with ``Authorization: Bearer <token>``, with the subprotocols
``["bearer", <token>]`` (the server answers ``bearer``), or, for browsers
(which can set neither header), with ``?ticket=<ticket>`` from
``POST /v1/tickets {"for": "events"}``: good once, for 30 s. ``?token=`` is
refused: a URL ends up in logs. The first message is
a hello with the feed's ``epoch`` and the last event id; then one JSON
message per event: ``{"id", "type", "time", "data"}``. Reconnect with
``?since=<last id seen>&epoch=<epoch>`` to get what was missed.

Close codes: 4401 unknown or missing token or ticket (or a token in the URL), or the device's access revoked
(``Feed.close_client``), 4403 a role without a feed, 4408 the client read too slowly (reconnect with ``since``).
An associate connected here is on duty for a kiosk's call for help (edge_agent/assist.py). ``admit`` is the
authentication the wristband stream shares.
"""

from __future__ import annotations

from typing import Any

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from edge_agent.api.limits import RateLimitedLog
from edge_agent.api.auth import TOKEN_IN_URL, Purpose, bearer, client_for, refusal, still_admitted, tickets
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.feed import ROLE_VIEW, Feed, message

router = APIRouter(tags=["events"], route_class=StrictRoute)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
# Sec-WebSocket-Protocol: bearer, <token>: for clients that can set no header but can name subprotocols.
BEARER_PROTOCOL = "bearer"
# The subprotocols in two or more headers (a token alone on a line of its own, logged as such at debug).
SPLIT_PROTOCOLS = "send the subprotocols in one Sec-WebSocket-Protocol header: 'bearer, <token>'"
REVOKED = "this device's access was revoked"


def _token(ws: WebSocket) -> tuple[str | None, str | None]:
    """The bearer token of the header or the subprotocols, and the subprotocol to answer with."""
    offered = ws.scope.get("subprotocols") or []
    if len(offered) == 2 and offered[0].lower() == BEARER_PROTOCOL:
        return offered[1], offered[0]
    return bearer(ws), None


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return -1  # not an id we gave out: the client missed events


async def admit(ws: WebSocket, purpose: Purpose, roles: Iterable[Role], what: str) -> ClientConfig | None:
    """Authenticate a WebSocket as the feed does and accept it; the client, or None once refused and closed.

    A token in the header or the subprotocols, or a one-use ticket for ``purpose``
    (spent before the connection is accepted and uvicorn logs its URL); 4401
    without one, or with subprotocols split over two headers, 4403 for a role
    not among ``roles``. Once the caller has registered the connection, it
    asks ``still_admitted`` again: an unpairing that came during the
    handshake closed the device's connections before this one was there.
    """
    if "token" in ws.query_params:
        await ws.accept()
        await _refuse(ws, CLOSE_UNAUTHORIZED, TOKEN_IN_URL, what)
        return None
    if len(ws.headers.getlist("sec-websocket-protocol")) > 1:
        await ws.accept()
        await _refuse(ws, CLOSE_UNAUTHORIZED, SPLIT_PROTOCOLS, what)
        return None
    token, subprotocol = _token(ws)
    ticket = ws.query_params.get("ticket")
    if token is not None:
        client = client_for(ws, token)
    elif ticket:
        client = tickets(ws).redeem(ticket, purpose)
    else:
        client = None
    await ws.accept(subprotocol)
    if client is None:
        why = refusal(ws, token) if token else "unknown, spent or expired ticket" if ticket else "no credential"
        await _refuse(ws, CLOSE_UNAUTHORIZED, f"{why}: send 'Authorization: Bearer <token>', or ?ticket= from "
                                              f'POST /v1/tickets {{"for": "{purpose.value}"}}', what)
        return None
    allowed = frozenset(roles)
    if client.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        await _refuse(ws, CLOSE_FORBIDDEN, f"role {client.role.value!r} has no {what}; allowed: {names}", what)
        return None
    return client


async def next_out(queue: asyncio.Queue, lagging: asyncio.Event, revoked: asyncio.Event,
                   receiver: asyncio.Task) -> tuple[str, Any]:
    """What comes first for a stream's connection (the feed's, a wristband's): ``("item", x)`` from its queue,
    ``("left", None)`` once its receiver ended (the client went away or broke a limit), ``("revoked", None)``
    (unpaired: before anything still queued, which an unpaired device must not get) or ``("lagging", None)``
    (its queue overflowed: what is queued is still sent)."""
    if revoked.is_set():
        return "revoked", None
    if not queue.empty():  # the common case under load: no task to make
        return "item", queue.get_nowait()
    getter = asyncio.create_task(queue.get())
    lag = asyncio.create_task(lagging.wait())
    gone = asyncio.create_task(revoked.wait())
    done, _ = await asyncio.wait({getter, lag, gone, receiver}, return_when=asyncio.FIRST_COMPLETED)
    if getter not in done:
        getter.cancel()
    lag.cancel()
    gone.cancel()
    if getter in done:
        return "item", getter.result()
    if receiver in done:
        return "left", None
    return ("revoked", None) if revoked.is_set() else ("lagging", None)


@router.websocket("/v1/events")
async def events(ws: WebSocket) -> None:
    """The live feed, filtered by the client's role."""
    client = await admit(ws, Purpose.EVENTS, ROLE_VIEW, "feed")
    if client is None:
        return
    agent = ws.app.state.agent
    feed: Feed = agent.feed
    since = _int_or_none(ws.query_params.get("since"))
    conn, hello = feed.connect(client.role, client.name, since, ws.query_params.get("epoch"))
    on_duty = client.role == Role.ASSOCIATE  # an associate watching the feed sees a kiosk's call for help
    if on_duty:
        agent.assist.join(client.name)
    receiver = asyncio.create_task(_drain_incoming(ws))
    try:
        if not still_admitted(ws, client):  # unpaired during the handshake, before this connection was there
            await ws.close(CLOSE_UNAUTHORIZED, REVOKED)
            return
        await ws.send_text(json.dumps(hello.as_dict()))
        while True:
            what, event = await next_out(conn.queue, conn.lagging, conn.revoked, receiver)
            if what == "item":
                await ws.send_text(json.dumps(message(event), default=str))
                conn.sent_id = event.id
                continue
            if what == "left":
                return  # the client went away
            if what == "revoked":
                await ws.close(CLOSE_UNAUTHORIZED, REVOKED)
                return
            while not conn.queue.empty():  # send what was queued before the queue overflowed
                event = conn.queue.get_nowait()
                await ws.send_text(json.dumps(message(event), default=str))
                conn.sent_id = event.id
            await ws.close(CLOSE_TOO_SLOW, f"too slow: reconnect with since={conn.sent_id}&epoch={feed.epoch}")
            return
    except (WebSocketDisconnect, RuntimeError):
        return  # closed under us
    finally:
        feed.disconnect(conn)
        if on_duty:
            agent.assist.leave(client.name)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await receiver


async def _drain_incoming(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it leaves."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


_refusals = RateLimitedLog(logging.getLogger("edge_agent.api.events"))


async def _refuse(ws: WebSocket, code: int, reason: str, what: str = "feed") -> None:
    # uvicorn has logged the handshake as "[accepted]" (a close code needs an accepted socket): say what happened,
    # once a minute per code.
    peer = ws.client.host if ws.client else "?"
    _refusals.warning((what, code), "%s: refused a connection from %s (close %d): %s", what, peer, code, reason)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(json.dumps({"type": "error", "detail": reason}))
        await ws.close(code, reason[:120])
