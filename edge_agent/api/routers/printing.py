"""``POST /v1/print`` (a test page) and the print queue for staff: ``GET /v1/print/jobs``, retry.

202 means the job is on disk (CONTRACT section 3): it prints when the
printer can, after a restart if need be; ``GET /v1/print/jobs/{id}`` says
how far it got.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from drivers.base import DEVICE_ID_PATTERN
from drivers.printer.config import PrinterConfig
from drivers.printer.spool import JobState
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute
from edge_agent.config import Role
from edge_agent.printing import NotRetryable, UnknownJob

router = APIRouter(tags=["printing"], route_class=StrictRoute)
_STAFF = Depends(require(Role.ASSOCIATE, Role.CONSOLE, Role.ADMIN))


class PrintRequest(BaseModel):
    """Body of ``POST /v1/print``."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, max_length=64, description="the printer's id in devices.yaml")


class PrintJob(BaseModel):
    """A print job as staff see it (the document's data is not shown)."""

    id: str
    device: str
    kind: str
    state: JobState
    reprint: bool
    attempts: int
    replaced: int = Field(description="characters the printer's code pages lack, printed as '?'")
    reason: str | None
    ref: str | None = Field(description="what it is of: the sale id of a receipt")
    created_at: str
    started_at: str | None
    finished_at: str | None


def _printer(request: Request, device: str) -> PrinterConfig:
    """The enabled printer ``device``; 404 if there is no such device, 422 if it cannot print."""
    config = next((d for d in request.app.state.agent.config.devices if d.id == device), None)
    if config is None:
        raise HTTPException(404, f"no device {device!r} in this store")
    if not isinstance(config, PrinterConfig):
        raise HTTPException(422, f"device {device!r} is a {config.kind}, not a printer; "
                                 "name a printer.escpos device")
    if not config.enabled:
        raise HTTPException(422, f"printer {device!r} is disabled in devices.yaml (enabled: false)")
    return config


@router.post("/v1/print", status_code=202, response_model=PrintJob,
             dependencies=[Depends(require(Role.ADMIN, Role.CONSOLE))])
async def print_test_page(body: PrintRequest, request: Request, response: Response) -> dict:
    """Queue a test page on a printer; 202 once the job is on disk."""
    printer = _printer(request, body.device)
    job = await request.app.state.agent.printing.submit(printer.id, "test_page", {"device_id": printer.id})
    response.headers["Location"] = f"/v1/print/jobs/{job.id}"
    return job.as_dict()


@router.get("/v1/print/jobs", response_model=list[PrintJob], dependencies=[_STAFF])
async def list_jobs(
    request: Request,
    device: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    """Print jobs, newest first; filter by printer and by state."""
    jobs = await request.app.state.agent.printing.jobs(device, state, limit)
    return [j.as_dict() for j in jobs]


@router.get("/v1/print/jobs/{job_id}", response_model=PrintJob, dependencies=[_STAFF])
async def get_job(job_id: str, request: Request) -> dict:
    """One print job."""
    try:
        return (await request.app.state.agent.printing.job(job_id)).as_dict()
    except UnknownJob as err:
        raise HTTPException(404, str(err)) from err


@router.post("/v1/print/jobs/{job_id}/retry", status_code=202, response_model=PrintJob, dependencies=[_STAFF])
async def retry_job(job_id: str, request: Request) -> dict:
    """A failed job back in the queue; it prints marked REPRINT if it had started before."""
    try:
        return (await request.app.state.agent.printing.retry(job_id)).as_dict()
    except UnknownJob as err:
        raise HTTPException(404, str(err)) from err
    except NotRetryable as err:
        raise HTTPException(409, str(err)) from err
