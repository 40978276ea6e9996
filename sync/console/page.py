"""The console page's HTML shell and its static files, one front end for the hub and the agent.

The shell (``static/index.html``) holds no data: the server fills in where
the API lives, where the static files are and which mode it is in (``hub``:
every store; ``store``: the agent's own), and the same JS does the rest.
``PAGE_HEADERS`` go with the shell on both; ``static_file`` is the only way
from a requested name to a file (nothing else that a request names ever
reaches the file system).
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

STATIC = Path(__file__).with_name("static")

# The page loads only its own scripts and talks only to its own origin (the agent's
# live feed is a same-origin WebSocket); the timeline's bars are inline styles.
# No framing: the buttons acknowledge alerts and send commands (clickjacking).
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@lru_cache(maxsize=4)
def page(mode: str, api_base: str, static_base: str, title: str) -> str:
    """The console's HTML shell for one mode (``hub`` or ``store``)."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    for key, value in (("MODE", mode), ("API", api_base), ("STATIC", static_base), ("TITLE", title)):
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text


@lru_cache(maxsize=1)
def _files() -> dict[str, Path]:
    return {p.name: p for p in STATIC.iterdir() if p.is_file()}


def static_file(name: str) -> Path | None:
    """The shipped static file called ``name`` (a bare file name, looked up, never joined), or None."""
    return _files().get(name)
