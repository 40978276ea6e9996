"""One store day: the rig up, the actors and watchers going, the faults in turn, the final checks.

The day's timeline, for ``minutes`` M: a warm-up, then each fault of
``schedule`` (faults.py, identity.py) in turn, and after the second PC's stay the fleet's operations
(fleet.py: the hub's versions of devices.yaml) among them, with quiet stretches between them, then quiet until
M minutes have passed; then the actors stop, the outbox and print queues
drain, and the end-of-day checks run (everything at the hub once, every
receipt, resources); last, a row with fewer checks than its minimum for the
day's length (checks.MINIMUMS) is a violation. Faults take at least as long as their signals take to
show, so a short day may run a little past M minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from soak import assist
from soak import checks as rows
from soak import report
from soak.actors import actors
from soak.checks import Checks
from soak.day import Day
from soak.faults import DEVICE_FAULTS, DRAIN_WITHIN, HUB_HOLD_MIN, agent_kill, broker_restart, hub_down
from soak.fleet import Fleet, merge
from soak.identity import second_pc, stale_event
from soak.intruder import intruder, no_secret_in_logs
from soak.invariants import FeedLog, LabelWatch, ResourceWatch, drains, hub_ledger, receipts, slips
from soak.ledger import Ledger
from soak.privacy import PrivacyWatch
from soak.rig import ROOT_RUN, Rig, Timers, wait_for


@dataclass(frozen=True)
class Result:
    """How the day went: the report's text, where it lies, and whether every promise held."""

    ok: bool
    table: str
    run_dir: Path
    violations: int


def schedule(minutes: float) -> list[tuple[str, Callable[[Day, float], None], float]]:
    """(name, run, hold s) of the day's faults in order; holds scale with the day.

    The second PC stays at least 25 s, a minute in a 20-minute day: 25 s is what a short day can spare
    and still proves detection (its first takeover and the soak agent's announce after it come within the
    3 s takeover backoff, the agent's reason with them) and sells its sales through the fault; each signal
    then has its own 60 s to show.
    """
    total = minutes * 60
    device_hold = min(max(total * 0.03, 6.0), 40.0)
    plan: list[tuple[str, Callable[[Day, float], None], float]] = [
        (f.name, f.run, device_hold) for f in DEVICE_FAULTS]
    plan += [("broker restart", broker_restart, min(max(total * 0.01, 4.0), 15.0)),
             ("hub down", hub_down, min(max(total * 0.1, HUB_HOLD_MIN), 150.0)),
             ("agent SIGKILL", agent_kill, min(max(total * 0.01, 2.0), 10.0)),
             ("second PC with the same store id", second_pc, min(max(total * 0.05, 25.0), 90.0)),
             ("an old PC's stale event", stale_event, 0.0),
             ("an intruder on the store's Wi-Fi", intruder, min(max(total * 0.03, 15.0), 60.0))]
    return plan


def timers(minutes: float, idle: bool) -> Timers:
    """Short timers, shorter still for a short day."""
    short = minutes < 5
    return Timers(sweep_interval=10.0 if short else 30.0, compliance_grace=5.0, label_poll=0.5,
                  card_ttl=45.0 if short else 120.0, idle_timeout=(8.0 if short else 20.0) if idle else None,
                  privacy_retention=30.0 if short else 120.0, privacy_sweep=5.0)


def run(minutes: float, seed: int, run_dir: Path, idle: bool = True, mirror: bool = False,
        quiet: bool = False) -> Result:
    """Run the day and return its result; the report and logs stay in ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    total = minutes * 60
    ledger = Ledger()
    checks = Checks(run_dir, ledger.started, quiet=quiet)
    rig = Rig(run_dir, timers(minutes, idle), mirror=mirror)
    day = Day(rig, ledger, checks, seed, minutes)
    threads = []
    try:
        rig.start()
        if rig.idle_refused:
            # The agent has sessions.idle_timeout: refusing it is a bug, though the day goes on without it.
            checks.fail(rows.SESSION, "the agent's config validation takes sessions.idle_timeout",
                        "accepted", rig.idle_refused, idle_timeout=timers(minutes, idle).idle_timeout)
        ledger.started = time.monotonic()
        checks.started = ledger.started
        day.feed = FeedLog(day)
        day.fleet = Fleet(day)
        watchers = [LabelWatch(day), ResourceWatch(day), day.feed, PrivacyWatch(day)]
        band = assist.Band(day)
        # Nobody on duty once, about half-way through the day.
        threads = [*actors(day), *watchers, band, assist.OffDuty(day, band, total * 0.45)]
        for t in threads:
            t.start()
        plan = merge(schedule(minutes), day, after="agent SIGKILL")
        warmup = min(max(total * 0.08, 10.0), 60.0)
        gap = max(2.0, (total * 0.85 - warmup - sum(hold for _, _, hold in plan)) / len(plan))
        day.stop.wait(warmup)
        for name, fault, hold in plan:
            _say(quiet, f"[{ledger.elapsed():6.0f}s] " + (name if name.startswith("fleet:") else
                                                         f"fault: {name} for {hold:.0f} s"))
            fault(day, hold)
            hub_ledger(day, final=False)
            day.stop.wait(gap)
        day.stop.wait(max(0.0, total - ledger.elapsed()))
        _say(quiet, f"[{ledger.elapsed():6.0f}s] the day is over: actors stop, queues drain")
        day.stop.set()
        for t in threads:
            t.join(60)
        _end_of_day(day, watchers[1], watchers[3])
        checks.require_minimums(minutes)
    finally:
        day.stop.set()
        rig.close()
    seconds = ledger.elapsed()
    text = report.table(checks, ledger, seconds, seed, rig.describe())
    (run_dir / "report.txt").write_text(text + "\n")
    report.write(run_dir, checks, ledger, seconds, seed, rig.describe())
    return Result(not checks.violations, text, run_dir, len(checks.violations))


def _end_of_day(day: Day, resources: ResourceWatch, privacy: PrivacyWatch) -> None:
    """Drain, then every end-of-day check."""
    drains(day, "the end of the day", DRAIN_WITHIN)
    pad = day.rig.client("pad-1")
    try:
        wait_for("the print queues to empty", lambda: not [
            j for j in pad.get("/v1/print/jobs", params={"limit": 1000}).json()
            if j["state"] in ("queued", "printing")], timeout=120)
    except AssertionError as err:
        # A job still queued after the drain is a receipt or slip that never printed.
        day.checks.fail(rows.RECEIPT, "print queues empty at the end of the day", "no job queued or printing",
                        str(err)[:400])
    # The printers print what they got: wait until their receipts stop growing.
    counts: list[int] = []
    wait_for("the printers to settle", lambda: counts.append(sum(
        len(day.rig.receipts(k)) for k in day.rig.printers)) or (len(counts) > 4 and len(set(counts[-4:])) == 1),
        timeout=60)
    for kiosk in day.rig.printers:
        # Everything each printer printed, to read beside a violation.
        docs = day.rig.receipts(kiosk)
        (day.rig.run_dir / f"printer-{kiosk}.txt").write_text("".join(
            f"===== document {n} (ended by {doc.end})\n{doc.text}\n" for n, doc in enumerate(docs, 1)))
    receipts(day)
    slips(day)
    assist.judge(day)
    hub_ledger(day, final=True)
    resources.judge()
    privacy.judge()
    no_secret_in_logs(day)
    day.fleet.judge()


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m soak``: run the day, print the table, exit 1 on any violation."""
    parser = argparse.ArgumentParser(prog="soak", description="A compressed store day with every promise checked")
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the day (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="the actors' random seed (default 1)")
    parser.add_argument("--run-dir", type=Path, default=None, help="where logs and report.json go "
                        "(default .run/soak/<UTC time>)")
    parser.add_argument("--no-idle", action="store_true", help="leave sessions.idle_timeout out of the config")
    parser.add_argument("--no-mirror", action="store_true", help="leave the try-on mirror (mirror.camera, "
                        "synthetic: face tracking in its own process) out")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or ROOT_RUN / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    print(f"soak: {args.minutes:g} min, seed {args.seed}, run dir {run_dir}", flush=True)
    result = run(args.minutes, args.seed, run_dir, idle=not args.no_idle, mirror=not args.no_mirror)
    print(result.table, flush=True)
    print(f"\nreport: {run_dir / 'report.json'}; logs: {run_dir}", flush=True)
    return 0 if result.ok else 1
