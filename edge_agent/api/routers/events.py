"""``WS /v1/events``: the live feed for associates, kiosks and consoles.

Authenticate with ``Authorization: Bearer <token>`` or, for browsers (which
cannot set headers on a WebSocket), ``?token=<token>``. The first message is
a hello with the feed's ``epoch`` and the last event id; then one JSON
message per event: ``{"id", "type", "time", "data"}``. Reconnect with
``?since=<last id seen>&epoch=<epoch>`` to get what was missed.

Close codes: 4401 unknown or missing token, 4403 a role without a feed,
4408 the client read too slowly (reconnect with ``since``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from edge_agent.api.auth import client_for
from edge_agent.api.strict import StrictRoute
from edge_agent.feed import ROLE_VIEW, Feed, message

router = APIRouter(tags=["events"], route_class=StrictRoute)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408


def _token(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return ws.query_params.get("token")


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
    await ws.accept()
    token = _token(ws)
    client = client_for(ws, token) if token else None
    if client is None:
        await _refuse(ws, CLOSE_UNAUTHORIZED, "missing or unknown token: send 'Authorization: Bearer <token>' "
                                              "or ?token=<token>")
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


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(json.dumps({"type": "error", "detail": reason}))
        await ws.close(code, reason[:120])
