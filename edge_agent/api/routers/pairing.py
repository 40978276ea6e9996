"""Pairing an associate's PAD or wristband with a one-time code: its own token, named, revocable.

| call | roles | what |
|---|---|---|
| ``POST /v1/pairing`` | admin | a code for the device ``name`` (with its ``zones``), its ``pair_url`` and QR |
| ``POST /v1/pair`` | none | the device sends the code and gets its token, once |
| ``GET /v1/paired`` | admin, console | every paired device, revoked ones too |
| ``DELETE /v1/paired/{name}`` | admin, console | unpair: its token is refused at once, its streams closed, its unused codes cancelled |

The rules (codes, tokens, limits) are edge_agent/pairing.py's; this router
parses, calls and answers. Only an admin makes codes: a code pairs a device
of role associate, which sees member ids in full, and the console role is
meant to see them masked; a console may list and unpair (which only takes
access away). Its lifespan loads the paired devices into
``app.state.pairing`` once the agent is up, where edge_agent/api/auth.py
finds them for every token check.

``pair_url`` is ``/pad`` on the scheme and host the request came in on, with
the code in the fragment (``#pair=...``), which no server or proxy sees; the
QR (SVG) encodes it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import qrcode
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from qrcode.image.svg import SvgPathImage

from edge_agent import pairing
from edge_agent.api.auth import require, tickets
from edge_agent.api.strict import StrictRoute
from edge_agent.config import Role

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the paired devices once the agent (and its store) is up: runs inside the app's own lifespan."""
    agent = app.state.agent
    config = agent.config
    service = pairing.Pairing(agent.store, (c.name for c in config.api.clients), config.store.timezone)
    await service.load()
    app.state.pairing = service
    try:
        yield
    finally:
        app.state.pairing = None


router = APIRouter(tags=["pairing"], route_class=StrictRoute, lifespan=lifespan)

# A code or a token in an answer: no cache of any browser or proxy keeps it.
NO_STORE = "no-store"
Zone = Annotated[str, StringConstraints(pattern=pairing.ZONE_PATTERN)]
# Host[:port] as a Host header may name it; anything else is not put in a URL.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


class PairingIn(BaseModel):
    """Body of ``POST /v1/pairing``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=pairing.NAME_PATTERN, description="the device's name: 1..32 of a-z, 0-9, '-'")
    zones: list[Zone] = Field(default_factory=list, max_length=pairing.MAX_ZONES,
                              description="the zones it serves (none: every zone)")


class PairingCode(BaseModel):
    """A pairing code, shown once: type it on the device or scan the QR."""

    code: str
    name: str
    zones: list[str]
    expires_at: str
    expires_in: int
    pair_url: str
    qr_svg: str


class PairIn(BaseModel):
    """Body of ``POST /v1/pair``."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=32, description="XXXX-XXXX; case, spaces and the dash ignored")


class StoreRef(BaseModel):
    """The store a device was paired with."""

    id: str
    name: str


class PairedOut(BaseModel):
    """The device's token, shown once, and who it is now."""

    token: str
    name: str
    role: str
    zones: list[str]
    store: StoreRef


class Device(BaseModel):
    """A paired device (a name paired again is listed once per device it was)."""

    name: str
    role: str
    zones: list[str]
    paired_at: str
    paired_by: str
    last_seen: str | None
    revoked_at: str | None
    revoked_by: str | None


class Unpaired(BaseModel):
    """What an unpairing did: the device as it is now (none: only codes cancelled) and the codes cancelled."""

    name: str
    role: str
    zones: list[str]
    paired_at: str | None
    paired_by: str | None
    last_seen: str | None
    revoked_at: str | None
    revoked_by: str | None
    codes_cancelled: int


def _service(request: Request) -> pairing.Pairing:
    service = getattr(request.app.state, "pairing", None)
    if service is None:
        raise HTTPException(503, "pairing is not ready yet; retry", headers={"Retry-After": "1"})
    return service


def pair_url(request: Request, code: str) -> str:
    """``/pad`` on the scheme and host the request came in on, the code in the fragment."""
    agent = request.app.state.agent
    scheme = "https" if agent.config.api.tls is not None else request.url.scheme
    host = request.headers.get("host", "")
    if len(host) > 255 or not _HOST.match(host):
        host = str(agent.config.api.listen)
    return f"{scheme}://{host}/pad#pair={code}"


def qr_svg(text: str) -> str:
    """``text`` as a QR code in SVG (one path)."""
    return qrcode.make(text, image_factory=SvgPathImage, border=2).to_string(encoding="unicode")


@router.post("/v1/pairing", status_code=201, response_model=PairingCode,
             responses={409: {"description": "a devices.yaml client's name, or a paired device not unpaired"}})
async def new_code(body: PairingIn, request: Request, response: Response,
                   client=Depends(require(Role.ADMIN))) -> PairingCode:
    """A one-use code for ten minutes that pairs the device ``name`` (admin only: it makes an associate)."""
    response.headers["Cache-Control"] = NO_STORE
    made = await _service(request).code(body.name, body.zones, client.name)
    url = pair_url(request, made.code)
    return PairingCode(code=made.code, name=made.name, zones=list(made.zones),
                       expires_at=made.expires_at.isoformat(), expires_in=made.ttl, pair_url=url, qr_svg=qr_svg(url))


@router.post("/v1/pair", status_code=201, response_model=PairedOut,
             responses={403: {"description": "an unknown, used or expired code"},
                        429: {"description": "too many wrong codes (Retry-After)"}})
async def pair(body: PairIn, request: Request, response: Response) -> PairedOut:
    """Spend a pairing code: the device's token, shown this once."""
    response.headers["Cache-Control"] = NO_STORE
    address = request.client.host if request.client else "?"
    done = await _service(request).pair(body.code, address)
    store = request.app.state.agent.config.store
    return PairedOut(token=done.token, name=done.client.name, role=done.client.role.value,
                     zones=list(done.client.zones), store=StoreRef(id=store.id, name=store.name))


@router.get("/v1/paired", response_model=list[Device])
async def paired(request: Request, _=Depends(require(Role.ADMIN, Role.CONSOLE))) -> list[dict]:
    """Every paired device, revoked ones too."""
    return await _service(request).devices()


@router.delete("/v1/paired/{name}", response_model=Unpaired,
               responses={404: {"description": "no such device, nor a code for that name"}})
async def unpair(name: str, request: Request, client=Depends(require(Role.ADMIN, Role.CONSOLE))) -> dict:
    """Unpair a device: its token is refused from now on, its open feed and wristband streams are closed, and
    the codes for its name not yet used are cancelled (``codes_cancelled``; a name with codes only: 200 too)."""
    device = await _service(request).revoke(name[:64], client.name)
    tickets(request).revoke(device["name"])
    request.app.state.agent.feed.close_client(device["name"])  # its feed and wristband connections, with 4401
    return device
