"""Who may use the hub console: bearer tokens, from a file of hashes or one token in the environment.

The token file (``--console-tokens FILE``, or ``EDGE_HUB_CONSOLE_TOKENS``)
has one line per person or system, ``name:sha256-of-the-token`` (what
``edge-agent hash-token`` prints), ``#`` for comments: the tokens themselves
never sit on the hub's disk, and the name is who acknowledged an alert or
sent a command. ``EDGE_HUB_CONSOLE_TOKEN`` holds one plain token instead
(named ``console``), for a demo or a container's secret. Every API call,
the live stream and ``/metrics`` need ``Authorization: Bearer <token>``; the
page itself (HTML, JS, CSS, no data) does not, and asks for the token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request, status

from sync.hub.errors import ConsoleConfigError

_LINE = re.compile(r"^([A-Za-z0-9_.@-]{1,64}):([0-9a-f]{64})$")


def sha256(token: str) -> str:
    """The hex SHA-256 of a token, as the token file holds it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tokens:
    """Token hashes and whose they are."""

    names: dict[str, str]  # sha256 hex -> name

    def who(self, token: str) -> str | None:
        """The name of a token's holder, or None."""
        digest = sha256(token)
        for known, name in self.names.items():
            if hmac.compare_digest(known, digest):  # constant time: no timing hint about the hashes
                return name
        return None


def load_tokens(path: str | None, env_token: str | None) -> Tokens:
    """Tokens from a file and/or one plain token; ConsoleConfigError (FILE:LINE: ...) when wrong or none."""
    names: dict[str, str] = {}
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ConsoleConfigError(f"{path}: cannot read the console tokens: {err.strerror or err}") from err
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _LINE.match(line)
            if m is None:
                raise ConsoleConfigError(f"{path}:{n}: expected NAME:SHA256 (64 hex digits of the token's SHA-256, "
                                         "as `edge-agent hash-token` prints it)")
            names[m.group(2)] = m.group(1)
    if env_token:
        names[sha256(env_token)] = "console"
    if not names:
        raise ConsoleConfigError("the console needs at least one token: --console-tokens FILE (NAME:SHA256 lines) "
                                 "or EDGE_HUB_CONSOLE_TOKEN")
    return Tokens(names)


def staff(request: Request) -> str:
    """FastAPI dependency: the caller's name from its bearer token; 401 otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    tokens: Tokens = request.app.state.tokens
    name = tokens.who(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if name is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "missing or unknown token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return name
