"""Strict request bodies: one JSON parse for every route, refusing duplicate keys.

Python's ``json.loads`` keeps the last of two equal keys, so ``{"qty": 1,
"qty": 5}`` is a sale of 5 here and maybe of 1 in a proxy, a log reader or
the kiosk's own copy. Every router is built with ``route_class=StrictRoute``;
its requests parse their body with ``loads`` below, and a repeated key is a
422 naming the key before any handler, dependency or token check runs.

``member_problem`` is the other check that needs the store's config: a
``member_id`` must match the chain's ``loyalty.member_id_pattern``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute


class DuplicateKey(ValueError):
    """A JSON object names one key twice."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def loads(body: bytes | str) -> Any:
    """``json.loads`` that raises ``DuplicateKey`` for an object with a key twice."""
    return json.loads(body, object_pairs_hook=_no_duplicates)


def _shown(key: str) -> str:
    """The key for a message: quoted, at most 64 characters, no control characters."""
    text = json.dumps(key[:64])
    return text if len(key) <= 64 else text[:-1] + '..."'


class StrictRequest(Request):
    """A request whose ``json()`` refuses duplicate keys (a 422 that names the key)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = loads(body)
            except DuplicateKey as err:
                raise HTTPException(422, f"the JSON body has the key {_shown(err.key)} more than once; "
                                         "send each key once") from err
        return self._json


class StrictRoute(APIRoute):
    """The route class of every router of the local API: bodies are parsed by ``StrictRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictRequest(request.scope, request.receive))

        return strict


def member_problem(request: Request, member_id: str | None, where: str = "member_id") -> None:
    """422 when ``member_id`` is given and does not match the chain's ``loyalty.member_id_pattern``."""
    if member_id is None:
        return
    problem = request.app.state.agent.config.loyalty.member_id_problem(member_id)
    if problem is not None:
        raise HTTPException(422, f"{where}: {problem}")
