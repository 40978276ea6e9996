"""Log a recurring problem once, not once per occurrence.

A device that fails every second, or a hub that sends the same bad payload
ten thousand times, must leave one line per problem in the journal, plus a
reminder now and then with how often it happened meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable


class LogOnce:
    """``warning(key, msg, *args)`` logs the first time a key is seen, then at most every ``every_s``."""

    def __init__(self, logger: logging.Logger, every_s: float = 600.0, max_keys: int = 1000):
        self.logger = logger
        self.every_s = every_s
        self.max_keys = max_keys
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        """Log at WARNING unless ``key`` was logged recently; True if it was logged."""
        return self._log(logging.WARNING, key, msg, *args)

    def error(self, key: Hashable, msg: str, *args: object) -> bool:
        """Log at ERROR unless ``key`` was logged recently; True if it was logged."""
        return self._log(logging.ERROR, key, msg, *args)

    def _log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.every_s:
            self._seen[key] = (last, suppressed + 1)
            return False
        if len(self._seen) >= self.max_keys and key not in self._seen:
            self._seen.pop(next(iter(self._seen)))
        self._seen[key] = (now, 0)
        if suppressed:
            msg += " (%d more like this since the last report)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args)
        return True
