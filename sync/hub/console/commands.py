"""Remote actions from the hub's console: sent, recorded, and waited for.

A command goes out on ``hub/{store}/cmd`` and is answered on
``edge/{store}/cmd/res``; the worker records the answer and the fleet hands
it here, which tells the pages. A command still unanswered after
``timeout_s`` is marked ``timeout`` in the database and on the page, and the
broker drops it then too (MQTT message expiry), so a store that comes back
later does not carry out an action the console already gave up on.

What may be sent to which device, and with which arguments, is checked
before a command gets here, by the allow-list the agent checks again on
receipt (sync/console/commands.py): the agent refuses anything its driver
does not have, with the list of what it has.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sync.hub.console import history
from sync.hub.console.alerts import iso
from sync.hub.db import HubDB, Tx
from sync.topics import Command

DBRead = Callable[[Callable[[HubDB], Any]], Awaitable[Any]]
DBWrite = Callable[[Callable[[Tx], Any]], Awaitable[Any]]


class CommandDesk:
    """Sends commands, notices answers, times out the unanswered."""

    def __init__(self, read: DBRead, write: DBWrite, send: Callable[[str, Command, int], None],
                 timeout_s: float, on_change: Callable[[dict[str, Any]], None]):
        self._read, self._write, self._send = read, write, send
        self.timeout_s = timeout_s
        self._on_change = on_change
        self._pending: dict[str, float] = {}  # id -> monotonic deadline
        self.sent = self.answered_in_time = self.timed_out = 0

    @property
    def pending(self) -> int:
        """Commands waiting for their answer."""
        return len(self._pending)

    async def send(self, store: str, device: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Record and publish a command; its row (state ``sent``, with its ``deadline``).

        ConnectionError when the hub has no broker connection: nothing is recorded then.
        """
        cmd = Command(id=str(uuid.uuid4()), device=device, action=action, args=args)
        # Recorded before it is published: an answer faster than our insert must find the row.
        await self._write(lambda tx: tx.command_sent(cmd.id, store, device, action, json.dumps(args)))
        try:
            self._send(store, cmd, math.ceil(self.timeout_s))
        except ConnectionError as err:
            why = f"not sent: {err}"
            await self._write(lambda tx: tx.command_result(cmd.id, store, False, None, why))
            raise
        self._pending[cmd.id] = time.monotonic() + self.timeout_s
        self.sent += 1
        row = history.command_dict(await self._read(lambda db: db.command(cmd.id))) or {}
        deadline = datetime.now(timezone.utc) + timedelta(seconds=self.timeout_s)
        return {**row, "deadline": iso(deadline), "timeout_s": self.timeout_s}

    async def answered(self, answers: list[dict[str, Any]]) -> None:
        """Answers the worker stored (loop thread): tell the pages, with the whole row.

        The row, not just the answer: a command sent from ``edge-hub cmd`` (or another console)
        is new to the pages, and they show its action, device and time like their own.
        """
        for a in answers:
            if self._pending.pop(a["id"], None) is not None:
                self.answered_in_time += 1
            answer = {"id": a["id"], "store": a["store"], "state": "ok" if a["ok"] else "error",
                      "result": a.get("result"), "error": a.get("error")}
            row = history.command_dict(await self._read(lambda db, c=a["id"]: db.command(c))) or {}
            # Never an older state than the answer's: the row may be read before the worker's commit shows.
            self._on_change({**{k: v for k, v in row.items() if v is not None}, **answer})

    async def expire(self) -> int:
        """Mark every command past its deadline as timed out; how many were."""
        now = time.monotonic()
        due = [cid for cid, deadline in self._pending.items() if deadline <= now]
        n = 0
        for cid in due:
            self._pending.pop(cid, None)
            marked = await self._write(lambda tx, c=cid: history.mark_timeout(tx, c, self.timeout_s,
                                                                               datetime.now(timezone.utc)))
            if marked:  # else the answer came in between
                n += 1
                self.timed_out += 1
                row = history.command_dict(await self._read(lambda db, c=cid: db.command(c))) or {"id": cid}
                self._on_change(row)
        return n
