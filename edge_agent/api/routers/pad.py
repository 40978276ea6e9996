"""``/pad``: the associate's web app (phone or tablet), static files served from this agent.

The shell (``/pad``), its scripts, style sheet, icons, web manifest, the
vendored barcode decoder (edge_agent/pad/static/) and its service worker
(``/pad/sw.js``, scoped to ``/pad``) need no token: they hold no data. Every
answer about the store comes from the API with the PAD's own token, which
the app got by pairing (``POST /v1/pair``) and sends in the Authorization
header only.

Only the files that ship are served: a name is looked up in the listing of
the package's static folder, never joined onto a path. Every answer carries
a Content-Security-Policy that lets the page talk to this agent alone and
run no inline script (``'wasm-unsafe-eval'`` lets the decoder's WebAssembly
compile; it allows no ``eval`` of script), ``Referrer-Policy: no-referrer``
and ``X-Content-Type-Options: nosniff``; the shell is ``no-store``, the
files are revalidated (``no-cache``) so an updated agent's app is taken at
once, and the service worker caches them for a PAD that loses the Wi-Fi.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response

from edge_agent.api.strict import StrictRoute

router = APIRouter(tags=["pad"], route_class=StrictRoute)

CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; media-src 'self' blob:; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_COMMON = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           # The camera for scanning, on this page only; nothing else a phone could lend a web page.
           "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"}
SHELL_HEADERS = {**_COMMON, "Cache-Control": "no-store"}
FILE_HEADERS = {**_COMMON, "Cache-Control": "no-cache"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".webmanifest": "application/manifest+json", ".png": "image/png", ".svg": "image/svg+xml",
         ".wasm": "application/wasm", "": "text/plain; charset=utf-8"}


def _root() -> Traversable:
    return resources.files("edge_agent.pad") / "static"


@cache
def files() -> dict[str, Traversable]:
    """Every file the app ships, by its path under static/ (read once, on first use)."""
    found: dict[str, Traversable] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif not entry.name.startswith("."):
                found[prefix + entry.name] = entry
    walk(_root(), "")
    return found


@cache
def content(name: str) -> tuple[bytes, str]:
    """A shipped file's bytes and its ETag, read once: they cannot change while the agent runs."""
    data = files()[name].read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _type(name: str) -> str:
    leaf = name.rsplit("/", 1)[-1]
    ext = leaf[leaf.rfind("."):] if "." in leaf else ""
    return TYPES.get(ext, "application/octet-stream")


@router.get("/pad", include_in_schema=False)
async def shell() -> Response:
    """The app's shell: pair it by opening /pad#pair=CODE (the code after #: never sent)."""
    return Response(content("index.html")[0], media_type=TYPES[".html"], headers=SHELL_HEADERS)


@router.get("/pad/sw.js", include_in_schema=False)
async def service_worker() -> Response:
    """The service worker, served from /pad/ so that it may control /pad and /pad/static/ (and nothing else)."""
    headers = {**SHELL_HEADERS, "Service-Worker-Allowed": "/pad"}
    return Response(content("sw.js")[0], media_type=TYPES[".js"], headers=headers)


@router.get("/pad/static/{name:path}", include_in_schema=False)
async def static(request: Request, name: str) -> Response:
    """A file of the app (only those that ship: no path ever reaches the file system); ``no-cache`` with an
    ETag, so a phone revalidating its copy gets 304 instead of the file again (the decoder's wasm is 1 MB)."""
    if len(name) > 200 or name not in files():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    data, etag = content(name)
    headers = {**FILE_HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, media_type=_type(name), headers=headers)
