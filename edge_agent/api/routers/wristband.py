"""``WS /v1/wristband``: the compact stream for an associate's wristband (title, line, vibration, acknowledge).

Authenticate as for the feed (edge_agent/api/routers/events.py ``admit``):
``Authorization: Bearer <token>``, the subprotocols ``["bearer", <token>]``,
or ``?ticket=`` from ``POST /v1/tickets {"for": "wristband"}``; associates
and admins (an admin's band is told the calls, but is not on duty and its
ack takes none). The server says ``{"type": "hello", "name", "zones"}``, then
``notify`` and ``clear`` messages (edge_agent/wristband.py says which); the
band answers ``{"ack": "n-17"}`` (acknowledging a call for help takes it).

Limits: a message from the band is at most ``MAX_MESSAGE`` bytes (1009
otherwise), at most ``ACKS_PER_S`` a second on average with bursts of
``ACK_BURST`` (4429 otherwise); a band that reads too slowly is closed (4408)
rather than slowing anyone, as the feed closes a slow client. Close 4401
also when the device's access is revoked (``Feed.close_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from edge_agent.api.auth import Purpose, still_admitted
from edge_agent.api.routers.events import CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED, REVOKED, admit, next_out
from edge_agent.api.strict import StrictRoute
from edge_agent.config import Role
from edge_agent.wristband import Band, Bands

router = APIRouter(tags=["wristband"], route_class=StrictRoute)

ROLES = (Role.ASSOCIATE, Role.ADMIN)
MAX_MESSAGE = 256  # bytes: {"ack": "n-123456"} is 20
ACKS_PER_S = 5.0
ACK_BURST = 10.0
CLOSE_TOO_BIG = 1009
CLOSE_TOO_MANY = 4429


class _Bucket:
    """A token bucket: ``rate`` a second, ``burst`` at once."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@router.websocket("/v1/wristband")
async def wristband(ws: WebSocket) -> None:
    """The band's stream: notices and clears out, acks in."""
    client = await admit(ws, Purpose.WRISTBAND, ROLES, "wristband stream")
    if client is None:
        return
    bands: Bands = ws.app.state.agent.bands
    # An admin's band is told everything, but only associates are on duty and take calls by acknowledging.
    band, hello = bands.connect(client.name, getattr(client, "zones", ()) or (), on_duty=client.role == Role.ASSOCIATE)
    receiver = asyncio.create_task(_incoming(ws, bands, band))
    try:
        if not still_admitted(ws, client):  # unpaired during the handshake, before this connection was there
            await ws.close(CLOSE_UNAUTHORIZED, REVOKED)
            return
        await ws.send_text(json.dumps(hello))
        while True:
            what, notice = await next_out(band.queue, band.lagging, band.revoked, receiver)
            if what == "item":
                await ws.send_text(json.dumps(notice, ensure_ascii=False))
                continue
            if what == "left":
                code, reason = receiver.result()
                if code:
                    await ws.close(code, reason)
                return
            if what == "revoked":
                await ws.close(CLOSE_UNAUTHORIZED, REVOKED)
            else:
                await ws.close(CLOSE_TOO_SLOW, "too slow: reconnect (open calls for help are sent again)")
            return
    except (WebSocketDisconnect, RuntimeError):
        return  # closed under us
    finally:
        bands.disconnect(band)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await receiver


async def _incoming(ws: WebSocket, bands: Bands, band: Band) -> tuple[int, str]:
    """Read the band's acks until it leaves (0) or breaks a limit (the close code and reason)."""
    bucket = _Bucket(ACKS_PER_S, ACK_BURST)
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return 0, ""
        raw = msg.get("text")
        if raw is None:
            raw = (msg.get("bytes") or b"").decode("utf-8", "replace")
        if len(raw.encode()) > MAX_MESSAGE:
            return CLOSE_TOO_BIG, f"a message is at most {MAX_MESSAGE} bytes"
        if not bucket.take():
            return CLOSE_TOO_MANY, f"at most {ACKS_PER_S:g} acks a second"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        notice = body.get("ack") if isinstance(body, dict) else None
        if not isinstance(notice, str):
            band.offer({"type": "error", "detail": 'send {"ack": "<notice id>"}'})
            continue
        bands.ack(band, notice)
