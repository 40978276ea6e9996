"""Bearer tokens checked against ``token_sha256`` of devices.yaml, with roles.

401 when the token is missing or unknown, 403 when its client's role may not
make the call. The token itself never sits in the file, only its SHA-256.
"""

from __future__ import annotations

import hashlib

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edge_agent.config import ClientConfig, Role

_bearer = HTTPBearer(auto_error=False, description="a client token from devices.yaml api.clients")

ALL_ROLES = frozenset(Role)


def client_for(request: HTTPConnection, token: str) -> ClientConfig | None:
    """The client whose token hashes to ``token_sha256``, if any."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    return request.app.state.clients.get(digest)


def require(*roles: Role):
    """A dependency that admits only clients with one of ``roles``."""
    allowed = frozenset(roles) or ALL_ROLES

    async def check(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> ClientConfig:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        client = client_for(request, creds.credentials)
        if client is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown token", headers={"WWW-Authenticate": "Bearer"}
            )
        if client.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {client.role.value!r} may not do this; allowed: {', '.join(sorted(r.value for r in allowed))}",
            )
        return client

    return check
