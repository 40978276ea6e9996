"""``WS /v1/events``: the live feed for associates, kiosks and consoles.

Authenticate with ``Authorization: Bearer <token>``, with the subprotocols
``["bearer", <token>]`` (the server answers ``bearer``), or, for browsers
(which can set neither header), with ``?ticket=<ticket>`` from
``POST /v1/tickets {"for": "events"}``: good once, for 30 s. ``?token=`` is
refused: a URL ends up in logs. The first message is
a hello with the feed's ``epoch`` and the last event id; then one JSON
message per event: ``{"id", "type", "time", "data"}``. Reconnect with
``?since=<last id seen>&epoch=<epoch>`` to get what was missed.

Close codes: 4401 unknown or missing token or ticket (or a token in the URL), 4403 a role without a feed,
4408 the client read too slowly (reconnect with ``since``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from edge_agent.api.limits import RateLimitedLog
from edge_agent.api.auth import TOKEN_IN_URL, Purpose, bearer, client_for, tickets
from edge_agent.api.strict import StrictRoute
from edge_agent.feed import ROLE_VIEW, Feed, message

router = APIRouter(tags=["events"], route_class=StrictRoute)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
# Sec-WebSocket-Protocol: bearer, <token>: for clients that can set no header but can name subprotocols.
BEARER_PROTOCOL = "bearer"


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


@router.websocket("/v1/events")
async def events(ws: WebSocket) -> None:
    """The live feed, filtered by the client's role."""
    if "token" in ws.query_params:
        await ws.accept()
        await _refuse(ws, CLOSE_UNAUTHORIZED, TOKEN_IN_URL)
        return
    token, subprotocol = _token(ws)
    ticket = ws.query_params.get("ticket")
    # A ticket is spent here, before the connection is accepted and uvicorn logs its URL.
    if token is not None:
        client = client_for(ws, token)
    elif ticket:
        client = tickets(ws).redeem(ticket, Purpose.EVENTS)
    else:
        client = None
    await ws.accept(subprotocol)
    if client is None:
        what = "unknown token" if token else "unknown, spent or expired ticket" if ticket else "no credential"
        await _refuse(ws, CLOSE_UNAUTHORIZED, f"{what}: send 'Authorization: Bearer <token>', or ?ticket= from "
                                              'POST /v1/tickets {"for": "events"}')
        return
    if client.role not in ROLE_VIEW:
        allowed = ", ".join(sorted(r.value for r in ROLE_VIEW))
        await _refuse(ws, CLOSE_FORBIDDEN, f"role {client.role.value!r} has no feed; allowed: {allowed}")
        return
    feed: Feed = ws.app.state.agent.feed
    since = _int_or_none(ws.query_params.get("since"))
    conn, hello = feed.connect(client.role, client.name, since, ws.query_params.get("epoch"))
    receiver = asyncio.create_task(_drain_incoming(ws))
    try:
        await ws.send_text(json.dumps(hello.as_dict()))
        while True:
            getter = asyncio.create_task(conn.queue.get())
            lag = asyncio.create_task(conn.lagging.wait())
            done, _ = await asyncio.wait({getter, lag, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
            lag.cancel()
            if getter in done:
                event = getter.result()
                await ws.send_text(json.dumps(message(event), default=str))
                conn.sent_id = event.id
                continue
            if receiver in done:
                return  # the client went away
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


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    # uvicorn has logged the handshake as "[accepted]" (a close code needs an accepted socket): say what happened,
    # once a minute per code.
    peer = ws.client.host if ws.client else "?"
    _refusals.warning(("feed", code), "feed: refused a connection from %s (close %d): %s", peer, code, reason)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(json.dumps({"type": "error", "detail": reason}))
        await ws.close(code, reason[:120])
