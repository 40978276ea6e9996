"""Shelf labels: bind a label to a product, list labels, which ones show a wrong price, push one again.

An associate binds a label at the shelf by scanning the label's barcode (its
MAC) and then the product's: ``POST /v1/labels/bind``. The label is pushed at
once, ahead of any bulk update in progress. ``POST /v1/labels/{mac}/push``
pushes a label again, changed or not. The flows are edge_agent/usecases/labels.py;
this router parses, calls and returns, and their errors are mapped to HTTP
in edge_agent/api/errors.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import ClientConfig, Role
from edge_agent.labels import views
from edge_agent.usecases import labels as flows

router = APIRouter(tags=["labels"], route_class=StrictRoute)

_READ = Depends(require(Role.ASSOCIATE, Role.CONSOLE, Role.ADMIN))
_WRITE = Depends(require(Role.ASSOCIATE, Role.ADMIN))


class BindIn(BaseModel):
    """Body of ``POST /v1/labels/bind``."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=64, description="the label's MAC (its barcode), or a file key")
    code: str = Field(min_length=1, max_length=64, description="the product's barcode or SKU")
    device: str | None = Field(default=None, max_length=64,
                               description="the label device; needed only when several could hold the label")
    model: str | None = Field(default=None, max_length=64, description="label model; default: the device's, "
                                                                       "or the one of the tag's hardware type")
    zone: str | None = Field(default=None, max_length=32,
                             description="the shelf's zone (1-32 of letters, digits, space, - and _, starting with "
                                         "a letter or digit); null for none; left out: the zone the label had")


class ComplianceEntry(BaseModel):
    """A label that does not show what the checkout charges now."""

    mac: str
    device: str
    sku: str | None
    shown_price: str | None
    checkout_price: str | None
    since: str
    pushed_at: str | None
    confirmed_at: str | None
    reason: str


def _service(request: Request) -> Any:
    return request.app.state.agent.labels


@router.get("/v1/labels", dependencies=[_READ])
async def list_labels(request: Request, device: str | None = Query(default=None, max_length=64),
                      sku: str | None = Query(default=None, max_length=64)) -> list[dict[str, Any]]:
    """Every label: product, the price it shows, content hash, pushed and confirmed times, battery,
    last seen, compliant or not and why."""
    return await views.listing(_service(request), device=device, sku=sku)


@router.get("/v1/labels/compliance", response_model=list[ComplianceEntry], dependencies=[_READ])
async def compliance(request: Request) -> list[dict[str, Any]]:
    """Labels that do not show the checkout's price right now, and since when, the longest-wrong first."""
    return [e.as_dict() for e in await views.compliance(_service(request))]


@router.get("/v1/labels/{mac}", dependencies=[_READ])
async def get_label(request: Request, mac: str = Path(min_length=1, max_length=64)) -> dict[str, Any]:
    """One label."""
    return await views.one(_service(request), mac)


@router.post("/v1/labels/bind", dependencies=[_WRITE])
async def bind_label(request: Request, response: Response, body: BindIn) -> dict[str, Any]:
    """Bind a label to a product; 201 for a label seen for the first time, 200 for a re-bind."""
    svc = _service(request)
    zone = body.zone if "zone" in body.model_fields_set else flows.KEEP
    label, new = await flows.bind(svc, body.label, body.code, device=body.device, model=body.model, zone=zone)
    response.status_code = 201 if new else 200
    return await views.one(svc, label.mac)


@router.delete("/v1/labels/{mac}", dependencies=[_WRITE])
async def unbind_label(request: Request, mac: str = Path(min_length=1, max_length=64)) -> dict[str, Any]:
    """Unbind a label: it shows "not in use" and stays listed until bound again."""
    svc = _service(request)
    label = await flows.unbind(svc, mac)
    return await views.one(svc, label.mac)


@router.post("/v1/labels/{mac}/push", status_code=202)
async def push_label(request: Request, mac: str = Path(min_length=1, max_length=64),
                     client: ClientConfig = Depends(require(Role.ASSOCIATE, Role.ADMIN))) -> dict[str, Any]:
    """Draw and push a label again now, even if it should already show the right thing (a blank or wrong
    label at the shelf); 202 with the label and ``repush``: ``queued``, or ``cooldown`` / ``already_pushing``
    with ``retry_after`` (s) when it was pushed again moments ago; 429 past 30 a minute for one client."""
    svc = _service(request)
    done = await flows.repush_label(svc, mac, client=client.name)
    return {**await views.one(svc, done.label.mac), "repush": done.repush, "retry_after": done.retry_after}
