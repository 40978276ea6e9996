"""Request counts and latencies for ``/metrics``, as plain ASGI middleware.

Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) runs every
request through an anyio task group and memory streams: about a fifth of
the agent's CPU per request at checkout speed (bench/bench_checkout.py).
This does the same counting by wrapping ``send``.
"""

from __future__ import annotations

import time
from typing import Any

from edge_agent.metrics import Metrics


class RequestMetrics:
    """Counts each HTTP request by method, route and status and times it by route."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.http_latency.labels(path).observe(time.perf_counter() - started)
