"""``POST /v1/tickets``: a one-use ticket for a URL that cannot carry a header.

A browser's ``WebSocket`` and an ``<img>`` cannot send ``Authorization``, and
a token in a URL ends up in logs, so ``WS /v1/events`` and
``GET /v1/mirror/{device}/stream`` refuse ``?token=``. The page asks here
with its bearer header and opens the URL with ``?ticket=<ticket>``: good
once, for ``expires_in`` seconds, for that purpose (and that mirror) and for
the client that asked (edge_agent/api/auth.py ``Tickets``).

| ``for`` | who may ask | then open |
|---|---|---|
| ``events`` | the roles with a feed: kiosk, associate, console, admin | ``WS /v1/events?ticket=...`` |
| ``stream`` (with ``device``) | the mirror's own screen | ``GET /v1/mirror/{device}/stream?ticket=...`` |
| ``wristband`` | associate, admin | ``WS /v1/wristband?ticket=...`` |

429 when the client already holds ``TICKETS_PER_CLIENT`` unspent tickets.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from drivers.base import DEVICE_ID_PATTERN
from edge_agent.api.auth import Purpose, TicketLimit, require, tickets
from edge_agent.api.routers import mirror
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.feed import ROLE_VIEW

router = APIRouter(tags=["tickets"], route_class=StrictRoute)

# Who may open the wristband stream: the staff who answer a kiosk's call.
WRISTBAND_ROLES = frozenset({Role.ASSOCIATE, Role.ADMIN})


class TicketRequest(BaseModel):
    """Body of ``POST /v1/tickets``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    purpose: Purpose = Field(alias="for", description="events: the live feed; stream: a mirror's picture; "
                                                       "wristband: the associate's compact stream")
    device: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)] | None = Field(
        default=None, description="the mirror, for 'stream' only")


class Ticket(BaseModel):
    """A one-use ticket: pass it as ``?ticket=`` within ``expires_in`` seconds."""

    model_config = ConfigDict(populate_by_name=True)

    ticket: str
    expires_in: int
    purpose: Purpose = Field(serialization_alias="for")
    device: str | None = None


@router.post("/v1/tickets", status_code=201, response_model=Ticket, response_model_by_alias=True,
             response_model_exclude_none=True,
             responses={403: {"description": "a role without a feed or wristband stream, or not the mirror's "
                                              "own screen"},
                        404: {"description": "no such mirror"},
                        429: {"description": "the client holds TICKETS_PER_CLIENT unspent tickets"}})
async def issue(body: TicketRequest, request: Request, client: ClientConfig = Depends(require())) -> Ticket:
    """A ticket for this client to open the live feed, the wristband stream or its mirror's stream once."""
    if body.purpose in (Purpose.EVENTS, Purpose.WRISTBAND):
        if body.device is not None:
            raise HTTPException(422, "device: only a 'stream' ticket names a device")
        if body.purpose == Purpose.EVENTS and client.role not in ROLE_VIEW:
            allowed = ", ".join(sorted(r.value for r in ROLE_VIEW))
            raise HTTPException(403, f"role {client.role.value!r} has no feed; allowed: {allowed}")
        if body.purpose == Purpose.WRISTBAND and client.role not in WRISTBAND_ROLES:
            allowed = ", ".join(sorted(r.value for r in WRISTBAND_ROLES))
            raise HTTPException(403, f"role {client.role.value!r} has no wristband stream; allowed: {allowed}")
    else:
        if body.device is None:
            raise HTTPException(422, "device: a 'stream' ticket names the mirror whose picture it opens")
        if client.role != Role.MIRROR:
            raise HTTPException(403, "the picture goes to the mirror's own screen alone (role 'mirror')")
        mirror.own_screen(request, body.device, client)
    store = tickets(request)
    try:
        ticket = store.issue(client, body.purpose, body.device)
    except TicketLimit as err:
        raise HTTPException(429, str(err), headers={"Retry-After": str(int(store.ttl))}) from err
    return Ticket(ticket=ticket, expires_in=int(store.ttl), purpose=body.purpose, device=body.device)
