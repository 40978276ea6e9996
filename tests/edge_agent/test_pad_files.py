"""/pad's files: read once, sent with an ETag, and 304 to a client whose copy is current."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from edge_agent.api.routers import pad


def _client() -> TestClient:
    app = FastAPI()
    app.include_router(pad.router)
    return TestClient(app)


def test_a_file_has_an_etag_and_a_current_copy_gets_304():
    with _client() as http:
        name = next(n for n in pad.files() if n.endswith(".wasm"))
        first = http.get(f"/pad/static/{name}")
        assert first.status_code == 200 and len(first.content) > 100_000
        etag = first.headers["etag"]
        again = http.get(f"/pad/static/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        stale = http.get(f"/pad/static/{name}", headers={"If-None-Match": '"other"'})
        assert stale.status_code == 200 and stale.content == first.content
        assert http.get("/pad/static/../pad.js").status_code == 404
        assert "no-store" in http.get("/pad").headers["cache-control"]  # the shell is never kept
