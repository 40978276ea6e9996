"""The alert loop: every ``evaluate_every_s``, judge every store by the rules and write what changed.

One pass reads the raised device alerts and the open identity issues from
the database (any hub worker may have stored them), evaluates the rules over the fleet in memory, and in
one transaction compares the result with the live alerts and writes the
difference (alerts.py). The pages are told which alerts changed. A database
error skips the pass and is logged once until a pass succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable

from sync.hub.console import alerts, history
from sync.hub.console.dbthread import DBThread
from sync.hub.console.fleet import Fleet
from sync.console.rules import RuleEngine, RuleSet
from sync.hub.errors import HubDBError

log = logging.getLogger("sync.hub.console")
PRUNE_EVERY_S = 3600.0


class Evaluator:
    """Runs the rules over the fleet and keeps the alerts table in step."""

    def __init__(self, rules: RuleSet, fleet: Fleet, db: DBThread,
                 on_change: Callable[[list[dict[str, Any]]], None]):
        self.rules = rules
        self.engine = RuleEngine(rules)
        self.fleet = fleet
        self.db = db
        self._on_change = on_change
        self.passes = 0
        self.failed_passes = 0
        self.last_pass_s = 0.0
        self.open: Counter[tuple[str, str, str]] = Counter()  # (rule, severity, state) -> live alerts
        self._failing = False
        self._next_prune = 0.0

    async def run_once(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """One pass; the alerts it changed."""
        started = time.perf_counter()
        now = now or datetime.now(timezone.utc)
        self.fleet.set_device_alerts(await self.db.read(history.raised_device_alerts))
        self.fleet.set_identity(await self.db.read(history.open_identity))
        ev = self.engine.evaluate(self.fleet.facts(), now)

        def write(tx: Any) -> tuple[list[str], list[dict[str, Any]]]:
            ids = alerts.apply(tx, alerts.diff(alerts.active(tx), ev, self.rules), now)
            return ids, list(alerts.active(tx).values())

        ids, live = await self.db.write(write)
        self.open = Counter((a["rule"], a["severity"], a["state"]) for a in live)
        changed = await self.db.read(lambda db: alerts.by_ids(db, ids)) if ids else []
        if changed:
            self._on_change(changed)
        self.passes += 1
        self.last_pass_s = time.perf_counter() - started
        return changed

    async def run(self) -> None:
        """Pass after pass until cancelled; prunes old history once an hour."""
        while True:
            try:
                await self.run_once()
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_EVERY_S
                    await self.db.write(lambda tx: history.prune(tx, datetime.now(timezone.utc)))
                if self._failing:
                    log.info("alert evaluation works again")
                    self._failing = False
            except HubDBError as err:
                self.failed_passes += 1
                if not self._failing:
                    log.error("alert evaluation failed, retrying every %g s: %s", self.rules.evaluate_every_s, err)
                    self._failing = True
            await asyncio.sleep(self.rules.evaluate_every_s)
