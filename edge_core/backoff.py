"""The one retry delay: capped exponential backoff with jitter.

The supervisor waits it between attempts to open a failed device
(edge_agent/supervisor.py); a shelf-label device's pusher waits it after
failed pushes (edge_agent/labels/pusher.py). Anything else that retries
takes it from here instead of writing its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: ``initial * 2**n``, never above ``cap`` seconds."""

    initial: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), jittered by +-``jitter``."""
        base = min(self.cap, self.initial * (2 ** min(max(attempt, 0), 30)))
        # Jitter spreads the retries of many devices that failed together (a
        # power cut); the cap still holds, so at the cap jitter only shortens.
        return max(0.0, min(self.cap, base * (1 + random.uniform(-self.jitter, self.jitter))))
