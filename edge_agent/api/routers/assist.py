"""``/v1/assist``: a kiosk calls for help; the associates on duty are told until one takes it.

The help desk itself is edge_agent/assist.py (``Desk``): this router parses,
calls it and returns the request; its refusals (NotFound, Conflict,
Forbidden) become 404, 409 and 403 in edge_agent/api/errors.py.

| call | who |
|---|---|
| ``POST /v1/assist`` | the kiosk asking (201 new, 200 the one it has) |
| ``GET /v1/assist`` | associates, admins: open and taken requests, oldest first |
| ``GET /v1/assist/{id}`` | the kiosk that asked, associates, admins |
| ``POST /v1/assist/{id}/take`` | an associate |
| ``POST /v1/assist/{id}/done`` | the associate who took it, or the kiosk |
| ``DELETE /v1/assist/{id}`` | the kiosk that asked (cancel) |
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.assist import NOTE_MAX, Desk, HelpReason, note_refusal
from edge_agent.config import ClientConfig, Role

router = APIRouter(tags=["assist"], route_class=StrictRoute)
AssistId = Annotated[str, Path(min_length=1, max_length=64)]


class AssistIn(BaseModel):
    """Body of ``POST /v1/assist``."""

    model_config = ConfigDict(extra="forbid")

    reason: HelpReason = Field(description="age_check, item_wont_scan, payment_problem or other")
    note: str | None = Field(default=None, max_length=NOTE_MAX,
                             description=f"shown to the associates, at most {NOTE_MAX} characters of visible "
                                         "text (no Unicode Cc, Cf, Zl, Zp)")

    @field_validator("note")
    @classmethod
    def _visible(cls, note: str | None) -> str | None:
        # Printable text only: the note is shown on associates' wrists (edge_agent/assist.py note_refusal).
        if note is not None and (why := note_refusal(note)) is not None:
            raise ValueError(why)
        return note


def _desk(request: Request) -> Desk:
    return request.app.state.agent.assist


@router.post("/v1/assist", status_code=201,
             responses={200: {"description": "the kiosk already has a request that is not closed: that one"}})
async def ask(body: AssistIn, request: Request, response: Response,
              client: ClientConfig = Depends(require(Role.KIOSK))) -> dict:
    """Call for help; ``on_duty`` 0 means nobody will see it (send the customer to the counter)."""
    desk = _desk(request)
    made, new = desk.ask(client.name, body.reason, (body.note or "").strip() or None)
    if not new:
        response.status_code = 200
    return desk.view(made)


@router.get("/v1/assist")
async def listing(request: Request, client: ClientConfig = Depends(require(Role.ASSOCIATE, Role.ADMIN))) -> list[dict]:
    """The open and taken requests, oldest first."""
    desk = _desk(request)
    return [desk.view(r) for r in desk.listing()]


@router.get("/v1/assist/{assist_id}", responses={404: {"description": "no such request (or not this kiosk's)"}})
async def one(assist_id: AssistId, request: Request,
              client: ClientConfig = Depends(require(Role.KIOSK, Role.ASSOCIATE, Role.ADMIN))) -> dict:
    """One request; a kiosk sees only its own."""
    desk = _desk(request)
    return desk.view(desk.get(assist_id, client.name, client.role))


@router.post("/v1/assist/{assist_id}/take",
             responses={404: {"description": "no such request"}, 409: {"description": "taken by someone else, or closed"}})
async def take(assist_id: AssistId, request: Request, client: ClientConfig = Depends(require(Role.ASSOCIATE))) -> dict:
    """Take the request (the same associate again: 200, nothing changes)."""
    desk = _desk(request)
    return desk.view(desk.take(assist_id, client.name))


@router.post("/v1/assist/{assist_id}/done",
             responses={403: {"description": "an associate who did not take it"}, 404: {"description": "no such request"},
                        409: {"description": "not taken yet, or cancelled"}})
async def done(assist_id: AssistId, request: Request,
               client: ClientConfig = Depends(require(Role.ASSOCIATE, Role.KIOSK))) -> dict:
    """The help was given: state ``done``."""
    desk = _desk(request)
    return desk.view(desk.done(assist_id, client.name, client.role))


@router.delete("/v1/assist/{assist_id}",
               responses={404: {"description": "no such request of this kiosk"}, 409: {"description": "done already"}})
async def cancel(assist_id: AssistId, request: Request, client: ClientConfig = Depends(require(Role.KIOSK))) -> dict:
    """The kiosk takes its call back: state ``cancelled``."""
    desk = _desk(request)
    return desk.view(desk.cancel(assist_id, client.name))
