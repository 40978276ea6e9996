"""The hub console takes its token in the ``Authorization`` header only: a token in a URL opens nothing.

The page reads the live stream with fetch and the header (sync/console/static/api.js
``liveHub``), so no URL of the hub's console ever carries a token; this holds the server to it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from support.agent import free_port
from support.hubprocess import HubProcess

TOKEN = "console-url-test-token"


def test_a_token_in_the_url_opens_nothing_on_the_hub_console(tmp_path: Path, mosquitto):
    (tmp_path / "tokens").write_text(f"li.wei:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    port = free_port()
    hub = HubProcess(mosquitto.url, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log")
    hub.args += ["--http", f"127.0.0.1:{port}", "--console-tokens", str(tmp_path / "tokens")]
    hub.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for path in ("/api/fleet", "/api/stream", "/metrics"):
                for query in (f"?token={TOKEN}", f"?access_token={TOKEN}", f"?ticket={TOKEN}"):
                    assert http.get(path + query).status_code == 401, path + query
            with http.stream("GET", "/api/stream", headers={"Authorization": f"Bearer {TOKEN}"}) as live:
                assert live.status_code == 200
                assert live.headers["content-type"].startswith("text/event-stream")
    finally:
        hub.stop()
    assert TOKEN not in (tmp_path / "hub.log").read_text(errors="replace")
