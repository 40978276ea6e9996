"""Telling the hub again after a reconnect: a result the hub may have missed while the link was down.

Owns the loop that config_apply (``config/res``) and release (``update/res``) both run for as long as the agent
runs: each time the hub link says it is online again (``hub.state``, sync/link.py), their last result is sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def on_each_connect(sub: Any, resend: Callable[[], None]) -> None:
    """Call ``resend`` each time ``sub`` (a bus subscription to ``hub.state``) says the link is online, until
    cancelled; ``sub`` is closed at the end."""
    try:
        while True:
            event = await sub.get()
            if event.data.get("state") == "online":
                resend()
    finally:
        sub.close()
