"""The console's own database connection, used from one thread so the event loop never blocks on it.

The worker thread has its own connection; the console reads and writes
through this one (SQLite in WAL mode lets both read at once, and writes take
the same flock as the worker's: sync/hub/db.py). One thread, so the
connection is never used by two at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sync.hub.db import HubDB, Tx, open_db

T = TypeVar("T")


class DBThread:
    """``await db.read(fn)`` / ``await db.write(fn)`` run ``fn`` on the console's connection."""

    def __init__(self, url: str):
        self.url = url
        self.db: HubDB | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="console-db")

    def open(self) -> HubDB:
        """Connect (HubDBError if the database cannot be opened)."""
        self.db = self._pool.submit(open_db, self.url).result()
        return self.db

    async def read(self, fn: Callable[[HubDB], T]) -> T:
        """``fn(db)`` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self.db)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """``fn(tx)`` in one transaction on the database thread; committed when it returns."""
        def run() -> T:
            with self.db.transaction() as tx:  # type: ignore[union-attr]
                return fn(tx)
        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def close(self) -> None:
        """Close the connection and the thread."""
        if self.db is not None:
            self._pool.submit(self.db.close).result()
            self.db = None
        self._pool.shutdown(wait=True)
