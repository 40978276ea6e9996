"""Stopping asyncio tasks the one way every long-running part of the agent stops its own.

Imported by anything (it imports nothing of ours).
"""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel every task given (None is skipped), then wait for each to end; their cancellation is not an
    error here. All are cancelled before any is awaited, so they stop together."""
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
