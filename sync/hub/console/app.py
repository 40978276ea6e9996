"""The hub console's FastAPI app: the page, its static files, the API (api.py) and ``/metrics``.

The page is one HTML shell shared with the agent's ``/console`` (sync/console/page.py):
the server fills in where the API lives and which mode it is in; the same JS
draws a fleet of a thousand stores here and a single store on the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Depends, FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from sync.console.page import PAGE_HEADERS, STATIC, page
from sync.hub.console import api, metrics
from sync.hub.console.auth import Tokens, staff
from sync.hub.console.commands import CommandDesk
from sync.hub.console.dbthread import DBThread
from sync.hub.console.evaluator import Evaluator
from sync.hub.console.fleet import Fleet
from sync.console.rules import RuleSet
from sync.hub.console.stream import Broadcaster
from sync.hub.fleet import enroll_api, releases

@dataclass
class Console:
    """Everything the console's routes use."""

    version: str
    fleet: Fleet
    db: DBThread
    rules: RuleSet
    evaluator: Evaluator
    desk: CommandDesk
    broadcaster: Broadcaster
    tokens: Tokens
    stats: Callable[[], Any]
    connected: Callable[[], bool]
    enrollment: Any = None  # sync.hub.fleet.enroll_api.Enrollment with --enroll-ca: POST /enroll is mounted
    releases: Any = None  # a Path with --releases: GET /releases/{version}/{name} is mounted

    def metric_parts(self) -> dict[str, Any]:
        """What /metrics reads."""
        return {"stats": self.stats(), "connected": self.connected(), "fleet": self.fleet,
                "evaluator": self.evaluator, "broadcaster": self.broadcaster, "desk": self.desk}


def create_app(console: Console) -> FastAPI:
    """The console app for one hub process."""
    app = FastAPI(title="edge-hub console", version=console.version, docs_url="/api/docs",
                  openapi_url="/api/openapi.json", redoc_url=None)
    app.state.console = console
    app.state.tokens = console.tokens
    # The fleet of a thousand stores is ~600 KB of JSON, ~10x less gzipped: it matters
    # for store IT on a VPN. Starlette leaves the event stream uncompressed (it must flush).
    app.add_middleware(GZipMiddleware, minimum_size=4096)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(api.router)
    enroll_api.mount(app, console.enrollment)  # /api/enrollments (staff), and POST /enroll for store PCs
    releases.mount(app, console.releases)  # GET /releases/{version}/{name}: signed bundles for the stores

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        # No data in the shell: it asks for the token and then calls the API.
        return HTMLResponse(page("hub", "/api", "/static", "edge-hub console"), headers=PAGE_HEADERS)

    @app.get("/healthz", tags=["console"])
    async def healthz() -> dict[str, Any]:
        """Liveness for a load balancer: no token, no data beyond up/down."""
        return {"status": "ok", "broker": "connected" if console.connected() else "disconnected"}

    @app.get("/metrics", tags=["console"], dependencies=[Depends(staff)])
    async def get_metrics() -> Response:
        """Prometheus text format (bearer token, like every console call)."""
        return Response(metrics.render(console.metric_parts), media_type=CONTENT_TYPE_LATEST)

    return app
