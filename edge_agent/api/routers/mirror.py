"""The try-on mirror: its screen (``GET /mirror``), its products, look, stream, basket and sessions.

The mirror's screen is an API client with role ``mirror``, bound to its
``mirror.camera`` device by the device's ``station``; it may use only that
mirror. Associates and admins may use every mirror (to help a customer), but
the camera stream goes to the mirror's own screen alone.

"Add to basket" (channel ``store``) puts the product in the session basket
of the mirror's kiosk when the device has ``kiosk:`` (the customer pays
there, edge_agent/sessions.py), and otherwise in the mirror's own basket,
which kiosks and associates read, check out and clear. "Order online"
(``POST .../order``) places a pickup order for this store from online stock
(edge_agent/orders.py). The try-on session records both.

The routes check who may use which mirror (the mirror's own screen, staff),
then call one flow of edge_agent/usecases/tryon.py, which holds the rules
(what is offered, one product of each kind and the layers' order, the
stock a basket may take, try-on products only on an order); their errors
are mapped in edge_agent/api/errors.py.

The stream is relayed byte for byte from the mirror process's socket: the
agent never decodes, keeps or logs a frame, and tells the browser not to
store one (``Cache-Control: no-store``). The relay stays here: it is
transport (a socket's bytes into a streaming response, and 503 while the
mirror has no socket), with no rule of the store's in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from ar_mirror.products import Offer
from ar_mirror.stream import CONTENT_TYPE
from drivers.base import DEVICE_ID_PATTERN, DeviceState
from drivers.mirror.driver import MirrorCamera
from edge_agent import orders
from edge_agent.api.auth import TOKEN_IN_URL, Purpose, bearer, client_for, require, tickets
from edge_agent.api.strict import StrictRoute, member_problem
from edge_agent.config import ClientConfig, Role
from edge_agent.usecases import tryon

router = APIRouter(tags=["mirror"], route_class=StrictRoute)

PRIVACY = ("Your picture stays in this mirror: it is not recorded, stored or sent anywhere, "
           "and it is gone the moment you step away.")
_STATIC = {"mirror.js": "text/javascript; charset=utf-8", "mirror.css": "text/css; charset=utf-8"}
# The page may talk to this agent only: nothing it shows can be sent elsewhere.
_PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}
# Read size of the stream relay: a few frames' headers and a good part of a JPEG.
_RELAY_CHUNK = 256 * 1024

DeviceId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
_USE = Depends(require(Role.MIRROR, Role.ASSOCIATE, Role.ADMIN))
_BASKET = Depends(require(Role.MIRROR, Role.ASSOCIATE, Role.ADMIN, Role.KIOSK))


class LookRequest(BaseModel):
    """Body of ``PUT /v1/mirror/{device}/look``: the products to try on, one per kind."""

    model_config = ConfigDict(extra="forbid")

    skus: list[str] = Field(default_factory=list, max_length=6)
    compare: StrictFloat = Field(default=0.0, ge=0, le=1, description="fraction of the picture shown without them")
    compare_side: Literal["left", "right"] = "left"


class BasketRequest(BaseModel):
    """Body of ``POST /v1/mirror/{device}/basket``."""

    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    qty: StrictInt = Field(default=1, ge=1, le=10)
    channel: Literal["store", "online"] = Field(default="store", description="take it here, or order it online")


def _static(name: str) -> bytes:
    return (resources.files("ar_mirror") / "static" / name).read_bytes()


@router.get("/mirror", include_in_schema=False)
async def page() -> Response:
    """The mirror's screen; open it as /mirror?device=<id>#token=<the mirror's token> (after #: never sent)."""
    return Response(_static("mirror.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/mirror/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    """The page's script and style sheet."""
    if name not in _STATIC:
        raise HTTPException(404, f"no file {name!r}")
    return Response(_static(name), media_type=_STATIC[name], headers=_PAGE_HEADERS)


def _mirror(request: Request, device: str, client: ClientConfig, *, own: bool = False) -> MirrorCamera:
    """The mirror ``device``; 404 if there is none, 403 for another mirror's screen (or, with ``own``, anyone else)."""
    supervisor = request.app.state.agent.supervisor
    driver = supervisor.owners[device].driver if device in supervisor.owners else None
    if not isinstance(driver, MirrorCamera):
        raise HTTPException(404, f"no mirror {device!r} in this store (a mirror.camera device, enabled)")
    mine = client.role == Role.MIRROR and client.name == driver.cfg.station
    if (client.role == Role.MIRROR or own) and not mine:
        raise HTTPException(403, f"only the mirror's own screen ({driver.cfg.station!r}) may do this")
    return driver


@router.get("/v1/mirror")
async def list_mirrors(request: Request, client: ClientConfig = _USE) -> list[dict]:
    """The mirrors this client may use, with their state."""
    out = []
    for owner in request.app.state.agent.supervisor.owners.values():
        driver = owner.driver
        if isinstance(driver, MirrorCamera) and (client.role != Role.MIRROR or client.name == driver.cfg.station):
            snap = owner.snapshot
            out.append({"id": snap.id, "name": driver.cfg.name, "station": driver.cfg.station,
                        "state": snap.state.value})
    return out


@router.get("/v1/mirror/{device}")
async def status(request: Request, device: DeviceId, client: ClientConfig = _USE) -> dict:
    """The mirror's state, someone's presence, the view (face or body), the look, the session and the basket;
    in body view, each garment's suggested size (an estimate)."""
    driver = _mirror(request, device, client)
    snap = request.app.state.agent.supervisor.owners[device].snapshot
    stats = driver.stats
    return {
        "device": device, "state": snap.state.value, "since": snap.since.isoformat(), "last_error": snap.last_error,
        "station": driver.cfg.station, "mirror": driver.cfg.mirror,
        "face": bool(stats and stats.face), "fps": stats.fps if stats else 0.0,
        **tryon.fitting(driver),
        "look": {"skus": [layer.sku for layer in driver.look.layers], "compare": driver.look.compare,
                 "compare_side": driver.look.compare_side},
        "session": driver.sessions.summary(), "basket": tryon.basket(request.app.state.agent, driver, client),
        "kiosk": driver.cfg.kiosk,
        "privacy": PRIVACY,
        # Whether the caller is this mirror's own screen, the one client the stream goes to: the page
        # tells staff it was opened with the wrong token instead of showing a picture that cannot load.
        "screen": client.role == Role.MIRROR,
    }


@router.get("/v1/mirror/{device}/products", response_model=list[Offer])
async def list_products(request: Request, device: DeviceId, client: ClientConfig = _USE) -> list[Offer]:
    """Try-on products the store has in stock or can order online, with price and stock."""
    driver = _mirror(request, device, client)
    return list((await tryon.offers(request.app.state.agent, driver)).values())


@router.put("/v1/mirror/{device}/look")
async def put_look(body: LookRequest, request: Request, device: DeviceId, client: ClientConfig = _USE) -> dict:
    """Try these products on, one of each kind; ``compare`` shows part of the picture without them."""
    driver = _mirror(request, device, client)
    look = await tryon.set_look(request.app.state.agent, driver, body.skus, body.compare, body.compare_side)
    return {"skus": [layer.sku for layer in look.layers], "compare": look.compare, "compare_side": look.compare_side}


def own_screen(request: Request, device: str, client: ClientConfig) -> MirrorCamera:
    """The mirror ``device`` if ``client`` is its own screen; 404 or 403 otherwise."""
    return _mirror(request, device, client, own=True)


def _stream_client(request: Request, device: str, ticket: str | None) -> ClientConfig:
    """The caller, by bearer header or a one-use ``?ticket=`` (an <img> cannot send headers); never ``?token=``."""
    if "token" in request.query_params:
        raise HTTPException(401, TOKEN_IN_URL, headers={"WWW-Authenticate": "Bearer"})
    token = bearer(request)
    if token is not None:
        client = client_for(request, token)
    elif ticket:
        client = tickets(request).redeem(ticket, Purpose.STREAM, device)
    else:
        client = None
    if client is None:
        what = "unknown token" if token else "unknown, spent or expired ticket" if ticket else "no credential"
        raise HTTPException(401, f"{what}: send 'Authorization: Bearer <token>', or ?ticket= from "
                                 "POST /v1/tickets {\"for\": \"stream\", \"device\": ...}",
                            headers={"WWW-Authenticate": "Bearer"})
    return client


@router.get("/v1/mirror/{device}/stream", response_class=StreamingResponse,
            responses={200: {"content": {"multipart/x-mixed-replace": {}}}})
async def stream(request: Request, device: DeviceId,
                 ticket: str | None = Query(default=None, max_length=64,
                                            description="one-use, from POST /v1/tickets")) -> StreamingResponse:
    """The live picture (MJPEG) for the mirror's own screen; 503 while the mirror is not running."""
    driver = own_screen(request, device, _stream_client(request, device, ticket))
    name = driver.stream_name
    state = request.app.state.agent.supervisor.owners[device].snapshot.state
    if name is None or state not in (DeviceState.ONLINE, DeviceState.BUSY):
        raise HTTPException(503, f"the mirror is {state.value}; try again in a moment", headers={"Retry-After": "1"})
    try:
        reader, writer = await asyncio.open_unix_connection("\0" + name)
    except OSError as err:
        raise HTTPException(503, "the mirror is restarting; try again in a moment",
                            headers={"Retry-After": "1"}) from err

    async def relay() -> AsyncIterator[bytes]:
        try:
            while chunk := await reader.read(_RELAY_CHUNK):
                yield chunk
        finally:
            writer.close()

    return StreamingResponse(relay(), media_type=CONTENT_TYPE,
                             headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@router.get("/v1/mirror/{device}/basket")
async def get_basket(request: Request, device: DeviceId, client: ClientConfig = _BASKET) -> dict:
    """What the customer put in the basket at this mirror (and, with ``kiosk:``, in that kiosk's from here)."""
    return tryon.basket(request.app.state.agent, _mirror(request, device, client), client)


@router.post("/v1/mirror/{device}/basket", status_code=201)
async def add_to_basket(body: BasketRequest, request: Request, device: DeviceId, client: ClientConfig = _USE) -> dict:
    """Add a product to take in the store (``store``: to the kiosk's basket when the mirror has ``kiosk:``)
    or to order online (``online``, a wish kept in the mirror's basket); 409 beyond the stock."""
    driver = _mirror(request, device, client)
    agent = request.app.state.agent
    await tryon.add_to_basket(agent, driver, body.sku, body.qty, body.channel)
    return tryon.basket(agent, driver, client)


@router.delete("/v1/mirror/{device}/basket")
async def clear_basket(request: Request, device: DeviceId, client: ClientConfig = _BASKET) -> dict:
    """Empty the mirror's own basket (checked out at a kiosk, or the customer starts over)."""
    driver = _mirror(request, device, client)
    driver.clear_basket()  # the driver owns the mirror's basket and says so (mirror.basket)
    return tryon.basket(request.app.state.agent, driver, client)


@router.post("/v1/mirror/{device}/order", status_code=201)
async def place_order(body: orders.OrderIn, request: Request, response: Response, device: DeviceId,
                      client: ClientConfig = _USE) -> dict:
    """The screen's "Order online": a pickup order for this store of try-on products, from online stock.

    As ``POST /v1/orders`` (201 with ``order_id``, ``pickup_code``, lines,
    total; 409 beyond online stock or for a reused ``client_order_id``), for
    try-on products only (422 for others); the try-on session records it.
    """
    driver = _mirror(request, device, client)
    if body.member_id is not None and client.role == Role.MIRROR:
        # A public screen cannot tell who stands in front of it: it names no member.
        raise HTTPException(422, "the mirror's screen orders without member_id; a member's order is placed at "
                                 "the kiosk after scanning their card, or by an associate")
    member_problem(request, body.member_id)
    placed = await tryon.order_online(request.app.state.agent, driver, body, client)
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if placed.job is not None:
        response.headers["Print-Job"] = placed.job.id
    return placed.order


@router.post("/v1/mirror/{device}/session/end")
async def end_session(request: Request, device: DeviceId, client: ClientConfig = _USE) -> dict:
    """End the try-on session now (the customer tapped "done"); what it recorded, if anything."""
    return {"ended": _mirror(request, device, client).end_session("done")}
