"""What ``make run`` gives a phone to trust: the demo CA's certificate on plain HTTP, and its fingerprint.

A phone must trust the demo's CA before the PAD's camera works (a camera
needs HTTPS; the pairing QR is edge_agent/qrcodes.py's): ``CaServer``
serves that CA's certificate, DER, public and nothing else, on plain HTTP
at ``/ca.crt``, for the demo only (the agent itself never serves it).
``fingerprint`` is what the banner prints so that the user checks on the
phone that the file is the one this PC made.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

def ca_der(ca: Path) -> bytes:
    """The CA certificate at ``ca`` (PEM) as DER, the form phones install."""
    return ssl.PEM_cert_to_DER_cert(ca.read_text(encoding="ascii"))


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate as phones show it: colon-separated upper-case hex."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


MAX_REQUEST = 4096  # bytes of request line and headers: a GET for one file needs far less
READ_TIMEOUT = 5.0  # seconds a client has to send its request
MAX_CLIENTS = 8  # connections served at once; more are closed unanswered


class CaServer:
    """The demo CA's certificate on plain HTTP: ``GET /ca.crt`` (``HEAD`` too); everything else 404/405/400.

    Constructed with the DER bytes and where to listen; ``start()`` binds, ``stop()`` closes."""

    PATH = "/ca.crt"

    def __init__(self, der: bytes, host: str, port: int) -> None:
        self.der = der
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._busy = asyncio.Semaphore(MAX_CLIENTS)

    async def start(self) -> None:
        """Listen (OSError if the port is taken); ``port`` 0 takes a free one, read back into ``port``."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_REQUEST)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening (a request being served ends within READ_TIMEOUT)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._busy.locked():
            writer.close()
            return
        async with self._busy:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
                writer.write(self._answer(head))
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                writer.write(_response(431, "text/plain", b"request too large\n"))
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response(400, "text/plain", b"not an HTTP request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != self.PATH.encode():
            return _response(404, "text/plain", f"only {self.PATH} is here: the demo CA's certificate\n".encode())
        if method not in (b"GET", b"HEAD"):
            return _response(405, "text/plain", b"GET only\n", allow=True)
        body = _response(200, "application/x-x509-ca-cert", self.der, attachment="edge-demo-ca.crt")
        if method == b"HEAD":
            return body[:body.index(b"\r\n\r\n") + 4]
        log.info("demo CA: certificate sent")
        return body


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}


def _response(status: int, kind: str, body: bytes, *, attachment: str | None = None, allow: bool = False) -> bytes:
    headers = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {kind}", f"Content-Length: {len(body)}",
               "Connection: close", "Cache-Control: no-store"]
    if attachment is not None:
        headers.append(f'Content-Disposition: attachment; filename="{attachment}"')
    if allow:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body
