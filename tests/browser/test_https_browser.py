"""The store console in a real headless Chromium over HTTPS and WSS (api.tls).

The browser trusts the agent's certificate by its key's SPKI hash alone
(``--ignore-certificate-errors-spki-list``; tests/browser/conftest.py), not by
ignoring certificate errors: a page from a server with another key is still
refused, which the last test shows.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from support.agent import TOKENS, AgentProcess
from support.tls import CertAuthority

pytestmark = pytest.mark.slow


@pytest.fixture
def tab(https_browser) -> Page:
    context = https_browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_the_store_console_works_over_https_and_wss(tab: Page, https_agent: AgentProcess, tmp_path: Path) -> None:
    urls: list[str] = []
    tab.on("request", lambda r: urls.append(r.url))
    tab.on("websocket", lambda ws: urls.append(ws.url))
    tab.goto(f"{https_agent.url}/console")
    tab.fill("#token", TOKENS["console"])
    tab.click("#login button[type=submit]")
    expect(tab.locator("#live")).to_have_text("live", timeout=30_000)  # the feed, over WSS
    expect(tab.locator('#devices tr[data-device="heartbeat-1"]')).to_have_count(1)
    expect(tab.locator("#devices tr[data-device=\"heartbeat-1\"] .state")).to_have_text("online", timeout=30_000)
    tab.wait_for_timeout(300)  # let the last frame paint: a screenshot, not a synchronisation
    tab.screenshot(path=str(tmp_path / "console-https.png"), full_page=True)
    assert urls and all(u.startswith(("https://", "wss://")) for u in urls), urls
    assert any(u.startswith(f"{https_agent.ws_url}/v1/events") for u in urls), urls
    assert tab.evaluate("window.isSecureContext") is True


def test_the_mirror_screen_streams_over_https(tab: Page, https_agent: AgentProcess, tmp_path: Path) -> None:
    tab.goto(f"{https_agent.url}/mirror?device=mirror-1#token={TOKENS['mirror']}")
    # naturalWidth is 0 until a JPEG of the MJPEG stream (fetched with a one-use ticket) has been decoded.
    tab.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=90_000)
    src = tab.evaluate("document.getElementById('live').src")
    assert src.startswith(f"{https_agent.url}/v1/mirror/mirror-1/stream?ticket="), src
    assert tab.evaluate("window.isSecureContext") is True  # what the screen's camera features need
    tab.screenshot(path=str(tmp_path / "mirror-https.png"))


def test_a_server_with_another_key_is_still_refused(tab: Page, tmp_path: Path) -> None:
    """Same names, same kind of certificate, another key: the pin does not cover it."""
    pair = CertAuthority(tmp_path / "ca").create().issue("impostor", "server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pair.cert, pair.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        listener.settimeout(30)
        try:
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(4096)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass  # the browser gave up on the certificate: what this test expects
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
        tab.goto(f"https://127.0.0.1:{port}/")
    thread.join(30)
