"""``/v1/sessions/{station}``: a kiosk's current session (the member attached to it) and its basket.

``DELETE /v1/sessions/{station}`` is the kiosk's "new customer" button: it
ends the session (edge_agent/sessions.py), so the next customer finds no
member, no points and no basket of the one before.

Each route checks who may address which station, then calls one flow of
edge_agent/usecases/basket.py and returns what it gives; the flows' errors
(no kiosk 404, an unknown product 422, more than the store has 409) are
mapped in edge_agent/api/errors.py.

A kiosk reads, changes and ends only its own session. Associates and admins may
change any kiosk's basket (helping a customer). A mirror's screen may put
lines into the basket of the kiosk its ``mirror.camera`` device names with
``kiosk:``, and into no other: the customer tries a product on at the
counter and pays for it at the counter's kiosk.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from drivers.mirror.config import MirrorConfig
from edge_agent import sessions
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.catalog import ItemIn
from edge_agent.config import ClientConfig, Role
from edge_agent.usecases import basket

router = APIRouter(tags=["sessions"], route_class=StrictRoute)
Station = Annotated[str, Path(min_length=1, max_length=64)]


def _own(client: ClientConfig, station: str, what: str) -> None:
    """403 for a kiosk that is not ``station``."""
    if client.role == Role.KIOSK and station != client.name:
        raise HTTPException(403, f"a kiosk {what} only its own session ({client.name!r})")


def mirror_for(request: Request, client: ClientConfig, station: str) -> MirrorConfig | None:
    """The enabled mirror whose screen is ``client`` and whose ``kiosk`` is ``station``, if any."""
    for device in request.app.state.agent.config.devices:
        if (isinstance(device, MirrorConfig) and device.enabled and device.station == client.name
                and device.kiosk == station):
            return device
    return None


@router.get("/v1/sessions/{station}")
async def get_session(
    request: Request,
    station: Station,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """The station's session: member and basket, each line with its name and the catalog's current unit price."""
    _own(client, station, "reads")
    agent = request.app.state.agent
    session = await basket.view(agent, station)
    if client.role != Role.KIOSK:
        # Staff looking at a customer's session read her data (edge_agent/privacy.py); the kiosk showing
        # the customer her own session does not.
        agent.privacy.access.record(client.name, client.role, session.session.member_id,
                                    "GET /v1/sessions/{station}")
    return session.as_dict()


@router.delete("/v1/sessions/{station}")
async def end_session(
    request: Request,
    station: Station,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """End the kiosk's session ("new customer"): member detached, basket emptied; idempotent.

    ``ended`` is what ``session.ended`` says (``session_id, reason, left,
    items``), or null when there was no session to end.
    """
    _own(client, station, "ends")
    return (await basket.end_session(request.app.state.agent, station)).as_dict()


@router.post("/v1/sessions/{station}/basket", status_code=201)
async def add_to_basket(
    body: ItemIn,
    request: Request,
    station: Station,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN, Role.MIRROR)),
) -> dict:
    """Put a product in the kiosk's basket (``code`` or ``sku``, ``qty``); 422 unknown product, 409 beyond store stock."""
    _own(client, station, "changes")
    source = client.name
    if client.role == Role.MIRROR:
        mirror = mirror_for(request, client, station)
        if mirror is None:
            raise HTTPException(403, f"only the screen of a mirror whose devices.yaml kiosk is {station!r} "
                                     "may add to its basket")
        source = mirror.id
    session = await basket.add_line(request.app.state.agent, station, body, source)
    if client.role == Role.MIRROR:
        # A public screen: what it put there itself, never who is signed in at the kiosk or what else they buy.
        return {"station": station, "basket": sessions.lines_dict(session.session.lines_from(source))}
    return session.as_dict()


@router.delete("/v1/sessions/{station}/basket")
async def clear_basket(
    request: Request,
    station: Station,
    client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN)),
) -> dict:
    """Empty the kiosk's basket (the customer starts over); the member stays attached."""
    _own(client, station, "changes")
    return (await basket.clear(request.app.state.agent, station)).as_dict()
