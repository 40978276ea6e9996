"""Live updates for the console page: one Server-Sent Events stream per open page.

Changes are coalesced per client, not queued: each client keeps the set of
stores that changed since its last message (and the alerts and commands by
id), and one message carries them all, at most every ``coalesce_s``. So a
burst of a thousand snapshots is one message of a thousand summaries, and a
page that reads slowly gets fewer, bigger messages instead of a backlog;
memory per client is bounded by the number of stores. Everything here runs
on the console's event loop (server.py hands it the worker's changes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream


@dataclass(eq=False)
class _Client:
    stores: set[str] = field(default_factory=set)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __bool__(self) -> bool:
        return bool(self.stores or self.alerts or self.commands)


def sse(event: str, data: Any) -> str:
    """One SSE message."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


class Broadcaster:
    """Fan-out of changes to every connected page."""

    def __init__(self, coalesce_s: float = 0.25):
        self.coalesce_s = coalesce_s
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.messages = 0

    @property
    def clients(self) -> int:
        """Pages connected now."""
        return len(self._clients)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the streams run on."""
        self._loop = loop

    def publish(self, stores: Iterable[str] = (), alerts: Iterable[dict[str, Any]] = (),
                commands: Iterable[dict[str, Any]] = ()) -> None:
        """Mark what changed for every client (loop thread)."""
        stores, alerts, commands = set(stores), list(alerts), list(commands)
        if not (stores or alerts or commands):
            return
        for c in self._clients:
            c.stores |= stores
            c.alerts.update((a["id"], a) for a in alerts)
            for cmd in commands:
                c.commands[cmd["id"]] = {**c.commands.get(cmd["id"], {}), **cmd}
            c.wake.set()

    def close(self) -> None:
        """End every stream (the console is stopping)."""
        self._closing = True
        for c in self._clients:
            c.wake.set()

    async def events(self, hello: dict[str, Any],
                     summaries: Callable[[set[str]], list[dict[str, Any]]]) -> AsyncIterator[str]:
        """One page's stream: a hello, then ``update`` messages of changed store summaries, alerts, commands."""
        client = _Client()
        self._clients.add(client)
        try:
            yield "retry: 2000\n\n" + sse("hello", hello)
            while not self._closing:
                try:
                    await asyncio.wait_for(client.wake.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                # Let a burst gather: one message for everything that changes in this window.
                await asyncio.sleep(self.coalesce_s)
                client.wake.clear()
                if self._closing or not client:
                    continue
                stores, client.stores = client.stores, set()
                alerts, client.alerts = list(client.alerts.values()), {}
                commands, client.commands = list(client.commands.values()), {}
                self.messages += 1
                yield sse("update", {"stores": summaries(stores), "alerts": alerts, "commands": commands})
        finally:
            self._clients.discard(client)
