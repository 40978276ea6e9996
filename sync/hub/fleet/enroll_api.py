"""Enrollment over HTTP on the hub's server (``edge-hub run --http``): routes only; the rules live in enroll.py.

| call | who | what |
|---|---|---|
| ``POST /enroll`` | a store PC with a one-time code | ``{code, mqtt_csr, api_csr, hostname, addresses}`` -> 201 ``{store, broker, ca_pem, mqtt_cert_pem, api_cert_pem, api_ca_pem, devices_yaml}`` |
| ``POST /api/enrollments`` | console staff token | ``{store, devices_yaml, ttl_s}`` -> 201 with the code (shown once) |
| ``GET /api/enrollments?store=`` | console staff token | codes issued, used or expired (never the codes) |

Limits come before any work: a body over ``MAX_BODY`` is refused while it
is read (413), each field has a size, and an address that sent
``WRONG_CODE_LIMIT`` unknown codes within ``WRONG_CODE_WINDOW_S`` gets 429
until the window has passed, before its code is looked up. ``POST /enroll``
is only mounted with ``--enroll-ca``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from sync.hub.console.auth import staff
from sync.hub.fleet import enroll
from sync.hub.fleet.enroll_ca import MAX_CSR_BYTES, MAX_NAMES, EnrollmentCA

log = logging.getLogger("sync.hub.enroll")

MAX_BODY = 16 * 1024            # two CSRs (< 1 KiB each), a code, a host name and a few addresses
WRONG_CODE_LIMIT = 5
WRONG_CODE_WINDOW_S = 600.0
MAX_TRACKED = 10_000             # addresses remembered by the limiter at most (oldest forgotten first)

_STATUS = {enroll.CodeUnknown: 403, enroll.CodeUsed: 410, enroll.CodeExpired: 410, enroll.EnrollInvalid: 422,
           enroll.EnrollTooMany: 429}


class WrongCodes:
    """Per-address count of unknown codes in a sliding window, with an injectable monotonic clock."""

    def __init__(self, limit: int = WRONG_CODE_LIMIT, window_s: float = WRONG_CODE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        q = self._seen.get(address, deque())
        cutoff = self.clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        return q

    def check(self, address: str) -> None:
        """EnrollTooMany when ``address`` used up its wrong codes."""
        q = self._recent(address)
        if len(q) >= self.limit:
            wait = int(q[0] + self.window_s - self.clock()) + 1
            raise enroll.EnrollTooMany(f"too many wrong codes from {address}; try again in {wait} s", wait)

    def wrong(self, address: str) -> None:
        """Count one unknown code from ``address``."""
        q = self._recent(address)
        q.append(self.clock())
        self._seen[address] = q
        if len(self._seen) > MAX_TRACKED:
            self._seen.pop(next(iter(self._seen)))


@dataclass
class Enrollment:
    """What ``POST /enroll`` needs: the CA, the broker URL stores are given, the limiter, the wall clock."""

    ca: EnrollmentCA
    broker: str
    wrong_codes: WrongCodes = field(default_factory=WrongCodes)
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


class EnrollBody(BaseModel):
    """``POST /enroll``'s body."""

    code: str = Field(min_length=1, max_length=64)
    mqtt_csr: str = Field(min_length=1, max_length=MAX_CSR_BYTES)
    api_csr: str = Field(min_length=1, max_length=MAX_CSR_BYTES)
    hostname: str = Field(min_length=1, max_length=253)
    addresses: list[str] = Field(default_factory=list, max_length=MAX_NAMES)

    model_config = {"extra": "forbid"}


class IssueBody(BaseModel):
    """``POST /api/enrollments``'s body."""

    store: str = Field(min_length=1, max_length=64)
    devices_yaml: str = Field(min_length=1, max_length=enroll.MAX_DEVICES_YAML)
    ttl_s: int = Field(default=enroll.DEFAULT_TTL_S, ge=60, le=enroll.MAX_TTL_S)

    model_config = {"extra": "forbid"}


def _refused(err: enroll.EnrollError) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after_s)} if isinstance(err, enroll.EnrollTooMany) else None
    return JSONResponse({"detail": str(err)}, status_code=_STATUS.get(type(err), 400), headers=headers)


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"the body may have at most {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"the body may have at most {cap} bytes")
    return bytes(body)


def _validated(model: type[BaseModel], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors(include_url=False)]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "; ".join(problems)[:2000]) from None


public = APIRouter(tags=["enrollment"])
staff_router = APIRouter(prefix="/api", tags=["enrollment"])


@public.post("/enroll", status_code=201)
async def post_enroll(request: Request) -> Any:
    """A store PC redeems its one-time code: its two CSRs signed, its broker, CAs and first devices.yaml."""
    svc: Enrollment = request.app.state.enrollment
    source = request.client.host if request.client else "unknown"
    try:
        svc.wrong_codes.check(source)
    except enroll.EnrollTooMany as err:
        return _refused(err)
    body: EnrollBody = _validated(EnrollBody, await _read_capped(request, MAX_BODY))
    req = enroll.EnrollRequest(body.code, body.mqtt_csr, body.api_csr, body.hostname, body.addresses)
    db = request.app.state.console.db
    now = svc.now()
    try:
        answer = await db.write(lambda tx: enroll.redeem(tx, svc.ca, svc.broker, req, source=source, now=now))
    except enroll.CodeUnknown as err:
        svc.wrong_codes.wrong(source)
        log.warning("enrollment: unknown code from %s", source)
        return _refused(err)
    except enroll.EnrollError as err:
        log.warning("enrollment refused from %s: %s", source, err)
        return _refused(err)
    log.info("enrollment: store %s enrolled from %s (host %s)", answer["store"], source, body.hostname)
    return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})


@staff_router.post("/enrollments", status_code=201)
async def post_enrollment(request: Request, who: str = Depends(staff)) -> Any:
    """Issue a one-time code for a store (shown in this answer only)."""
    body: IssueBody = _validated(IssueBody, await _read_capped(request, enroll.MAX_DEVICES_YAML + 4096))
    now = datetime.now(timezone.utc)
    try:
        issued = await request.app.state.console.db.write(
            lambda tx: enroll.issue(tx, body.store, body.devices_yaml, ttl_s=body.ttl_s, by=who, now=now))
    except enroll.EnrollError as err:
        return _refused(err)
    log.info("enrollment: %s issued a code for store %s until %s", who, issued.store, issued.expires_at)
    return JSONResponse({"store": issued.store, "code": issued.code, "expires_at": issued.expires_at,
                         "issued_by": issued.issued_by}, status_code=201, headers={"Cache-Control": "no-store"})


@staff_router.get("/enrollments", dependencies=[Depends(staff)])
async def get_enrollments(request: Request, store: str | None = None) -> list[dict[str, Any]]:
    """Codes issued, newest first, with their state (never the codes)."""
    now = datetime.now(timezone.utc)
    return await request.app.state.console.db.read(lambda db: enroll.listing(db, store, now=now))


def mount(app: Any, enrollment: Enrollment | None) -> None:
    """Add the staff routes, and ``POST /enroll`` when the hub has an enrollment CA."""
    app.include_router(staff_router)
    if enrollment is not None:
        app.state.enrollment = enrollment
        app.include_router(public)

