"""The FastAPI app: built in a lifespan that starts and stops the Agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from edge_agent import __version__
from edge_agent.agent import Agent
from edge_agent.api.routers import (devices, events, health, labels, metrics, mirror, printing, products, sales,
                                    sessions)
from edge_agent.api.routers import members, orders, returns, stock
from edge_agent.api.routers import assist, pad, pairing, tickets, wristband
from edge_agent.api import errors
from edge_agent.api.strict import StrictRoute
from edge_agent.api.limits import BodyLimit
from edge_agent.api.timing import RequestMetrics
from edge_agent.config import AgentConfig
from edge_agent.metrics import Metrics


def _readable(exc: RequestValidationError) -> JSONResponse:
    """422 with one sentence per problem, plus the structured list."""
    problems = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
        if e["type"] == "json_invalid":  # FastAPI's loc is the character's offset
            loc, msg = "body", f"not valid JSON at character {e['loc'][-1]}: {(e.get('ctx') or {}).get('error')}"
        else:
            msg = e["msg"]
        problems.append({"loc": loc, "msg": msg})
    message = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems)
    return JSONResponse({"detail": message, "errors": problems}, status_code=422)


def create_app(config: AgentConfig, data_dir: Path, agent: Agent | None = None,
               config_path: Path | None = None) -> FastAPI:
    """The local API for one store; the Agent starts with the app and stops with it.

    ``config_path``: the file ``config`` was read from, which a version from the hub replaces
    (edge_agent/config_apply.py)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_agent = agent or Agent(config, data_dir, config_path=config_path)
        await the_agent.start()
        app.state.agent = the_agent
        try:
            yield
        finally:
            await the_agent.stop()

    # /docs, /redoc and /openapi.json only where api.docs is on (the demo): they need no token.
    docs = config.api.docs
    app = FastAPI(
        title="Store-edge agent",
        version=__version__,
        description="Local API of one store: kiosks, wristbands, PADs, the mirror and consoles.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.clients = {c.token_sha256: c for c in config.api.clients}
    app.state.metrics = Metrics()
    from edge_agent.api.routers import console  # the store's own health console, /console

    routers = (health, devices, products, sales, printing, labels, sessions, events, metrics, mirror, console,
               returns, orders, stock, members, tickets, pairing, assist, wristband, pad)
    for module in routers:
        lax = [r.path for r in module.router.routes if isinstance(r, APIRoute) and not isinstance(r, StrictRoute)]
        if lax:  # a router made without route_class=StrictRoute would take duplicate JSON keys
            raise TypeError(f"{module.__name__}: routes {lax} are not StrictRoute; build the router with "
                            "APIRouter(..., route_class=StrictRoute)")
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _readable(exc)

    # The domain's errors and the store's failures become HTTP answers in one place (edge_agent/api/errors.py).
    errors.install(app)

    # Plain ASGI: a BaseHTTPMiddleware here cost about a fifth of a checkout's CPU (edge_agent/api/timing.py).
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    # Outermost: an oversized body is refused before anything else runs (edge_agent/api/limits.py).
    app.add_middleware(BodyLimit, max_body=config.api.max_body)

    return app
