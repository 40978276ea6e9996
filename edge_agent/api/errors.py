"""The one place where the domain's errors become HTTP answers.

Flows raise the kinds of edge_agent/errors.py (NotFound, Conflict, ...);
routers let them through; this module maps each kind to its status and
answers ``{"detail": str(err)}``, the message the flow wrote. ``install``
registers the handlers on the app (edge_agent/api/app.py).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from edge_agent.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, StoreError, TooMany, Unavailable

# A flow's error names its kind first among its bases, so the first kind in its MRO is the one it means.
STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Forbidden: 403,
    Unavailable: 503,
    TooMany: 429,
}


def status_of(err: DomainError) -> int:
    """The HTTP status of ``err``'s kind (422 for a DomainError of no kind)."""
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 422


def answer(err: DomainError) -> JSONResponse:
    """The response for ``err``: its kind's status, its message, ``Retry-After`` when it says when."""
    retry = getattr(err, "retry_after", None)
    headers = {"Retry-After": str(retry)} if retry else None
    return JSONResponse({"detail": str(err)}, status_code=status_of(err), headers=headers)


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return answer(exc)


async def _store(_: Request, exc: Exception) -> JSONResponse:
    # Nothing was kept: the client may retry with the same idempotency key.
    return JSONResponse({"detail": f"not saved, retry: {exc}"}, status_code=503, headers={"Retry-After": "1"})


def install(app: FastAPI) -> None:
    """Register the handlers: every domain error and the store's failures."""
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(StoreError, _store)
