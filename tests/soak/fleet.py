"""Fleet operations in the store day: the hub's versions of the store's devices.yaml, pushed while the kiosks sell.

The hub keeps the store's devices.yaml versioned; ``edge-hub config push``
(the real CLI, a subprocess) stores a version and sends it, retained, and
the store answers (edge_agent/config_apply.py). ``Fleet`` holds what the
hub last saw in force and runs each operation as one step of the day's
plan, between the faults (``merge``), in an order the seed draws; a day
of ``AGAIN_FROM`` minutes or more has a second good version:

- ``adopt``: the store's own file becomes the hub's version 1 (its bytes as
  they are): applied, in force at the hub. It comes first, before the second
  PC's stay: the hub's newest version is retained on the store's topic when
  the second PC connects, which holds it and never takes it
  (edge_agent/config_apply.py; identity.second_pc checks it).
- ``good``: a version that adds a receipt printer for kiosk-3 (its own
  emulator, ``rig.fleet_printer``), or, once there, changes its
  ``paper_check_interval``. Within ``IN_FORCE_WITHIN`` the hub's
  ``edge-hub config status`` says it is in force; the new printer comes
  online (at the agent, at its emulator, at the hub console: a changed
  one opens a new connection there); past
  ``fleet.rollback_after_s`` it is still in force; no device whose config
  did not change restarted (a restarted driver's counters start at 0 again,
  a restarted printer opens a new connection to its emulator, a device
  online before and after has the same ``since``). The kiosks sell
  throughout: every sale at the hub once and printed once is the day's own
  invariants.
- ``broken``: a version ``edge-agent check`` refuses (a device kind
  misspelt): refused, the hub's ``edge-hub config status`` shows its
  ``devices.yaml (hub version N):LINE:`` message, the version in force and
  the file on the store PC stay.
- ``dead``: a version that passes check but breaks the store: a heartbeat
  sensor at a port nothing listens on. The store's health is degraded
  while it is in force, naming that sensor, and by nothing else that was
  not there before the push (labels aside: LabelWatch judges them). No
  other checker judges the store's whole status meanwhile (the plan's steps
  run one at a time; the actors look at their own reasons only), and the
  outage ``fleet-bad-version`` names the window for any that will; within ``rollback_after_s`` + ``ROLLBACK_MARGIN``
  the store has rolled back by itself, the hub records ``rolled_back`` with
  why and the last good version in force, the file is that version's bytes
  again, the sensor is gone and health no longer names it.
- ``drift``: a hand edit of devices.yaml on the store PC (a comment
  appended: the config it loads is the same): the hub sees drift; a push of
  the version in force ends it.

Every check is a ``FLEET`` row check; each operation's outcome is a line of
the report (``ledger.fleet``). At the end of the day, ``judge`` checks the
hub shows the last good version in force, without drift.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import yaml

from edge_agent.health import LABEL_CODES, WARNING_CODES
from soak import checks as rows
from soak.day import Day
from soak.faults import console_device, codes, health
from soak.rig import STORE, free_port
from sync.hub.db import open_db
from sync.hub.fleet import desired

ROOT = Path(__file__).resolve().parents[2]
IN_FORCE_WITHIN = 60.0    # a pushed version's word at the hub, on a loaded machine
ROLLBACK_MARGIN = 30.0    # past fleet.rollback_after_s: the apply, the answer's way to the hub
NEW_PRINTER = "printer-3"
NEW_STATION = "kiosk-3"
DEAD_DEVICE = "heartbeat-9"
TYPO_KIND = "printer.escpso"
DRIFT_EDIT = "# edited by hand at the store PC\n"
AGAIN_FROM = 5.0  # minutes: a day this long has a second good version, after the others
AGAIN = "fleet: a good version again (changes a device's setting)"
_WELL = ("online", "busy")


def as_yaml(config: dict) -> str:
    """A devices.yaml as the rig writes it (support/agent.py): a restart writes the same bytes."""
    return yaml.safe_dump(config, allow_unicode=True)


class Fleet:
    """The hub's side of the store's devices.yaml through the day: what it pushed, what the store runs."""

    def __init__(self, day: Day):
        self.day = day
        self.db_url = f"sqlite:///{day.rig.hub_db}"
        self.dir = day.rig.run_dir / "fleet"
        self.in_force: dict = {}      # the config of the version in force, as the hub last saw it applied
        self.version = 0              # that version (0: the store's own file, never pushed)
        self.pushed = 0.0             # monotonic time the last push command started

    # The hub's tools ---------------------------------------------------------------

    def push(self, text: str, what: str) -> int | None:
        """``edge-hub config push STORE FILE``; the version it stored, or None (a violation) if it failed.
        ``pushed`` is when the command started: the store may answer before it has returned."""
        d = self.day
        self.pushed = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"push-{len(list(self.dir.glob('push-*.yaml'))) + 1}.yaml"
        path.write_text(text)
        out = subprocess.run([sys.executable, "-m", "sync.hub", "config", "push", STORE, str(path), "--by",
                              "soak-ops", "--db", self.db_url, "--broker", d.rig.broker.url],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        found = re.search(r": version (\d+) ", out.stdout)
        if not d.checks.check(rows.FLEET, out.returncode == 0 and found is not None,
                              f"edge-hub config push ({what}) exits 0 naming the version", 0,
                              f"{out.returncode}: {(out.stdout + out.stderr)[-400:]}"):
            return None
        d.ledger.did("fleet: versions pushed by the hub")
        return int(found.group(1))

    def answer(self, version: int) -> dict | None:
        """The store's last word on ``version`` as the hub recorded it (its live agent's), or None;
        ``errors`` as the JSON text the hub keeps."""
        with closing(open_db(self.db_url)) as db:
            a = desired.answer(db, STORE, version)
        if a is None:
            return None
        return {"state": a.state, "errors": json.dumps(a.errors, ensure_ascii=False), "reason": a.reason,
                "in_force": a.in_force}

    def status(self) -> desired.ConfigStatus | None:
        """The store's line of ``edge-hub config status`` (its function, on the hub's database)."""
        db = open_db(self.db_url)
        try:
            found = desired.statuses(db, STORE)
        finally:
            db.close()
        return found[0] if found else None

    def status_text(self) -> str:
        """What ``edge-hub config status STORE`` prints (the CLI itself)."""
        out = subprocess.run([sys.executable, "-m", "sync.hub", "config", "status", STORE, "--db", self.db_url],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        return out.stdout + out.stderr

    def devices(self) -> dict[str, dict]:
        """The agent's ``GET /v1/devices`` by id."""
        with self.day.rig.client("console-1") as http:
            return {dev["id"]: dev for dev in http.get("/v1/devices").json()}

    def file(self) -> str:
        """The store PC's devices.yaml as it is now."""
        return self.day.rig.agent.config_path.read_text()

    # Checks --------------------------------------------------------------------------

    def until(self, what: str, probe: Callable[[], Any], holds: Callable[[Any], bool], within: float,
              since: float | None = None, **ids: Any) -> tuple[bool, float]:
        """Poll ``probe`` until ``holds`` (a FLEET check), ``within`` s of ``since`` (monotonic; default
        now); (held, seconds it took)."""
        started = time.monotonic() if since is None else since
        last: Any = None
        while True:
            try:
                last = probe()
            except (httpx.HTTPError, OSError, ValueError) as err:
                last = repr(err)
            else:
                if holds(last):
                    self.day.checks.ok(rows.FLEET)
                    return True, time.monotonic() - started
            if time.monotonic() - started > within:
                break
            time.sleep(0.25)  # a poll interval
        text = repr(last)
        self.day.checks.fail(rows.FLEET, what, f"within {within:.0f} s", text if len(text) < 500 else text[:500] + "...",
                             **ids)
        return False, time.monotonic() - started

    def in_force_at_hub(self, version: int) -> tuple[bool, float]:
        """The store's answer on ``version`` says applied with it in force, and so does ``config status``."""
        ok, took = self.until(f"version {version}: the store's answer at the hub says applied, in force",
                              lambda: self.answer(version),
                              lambda a: bool(a) and a["state"] == "applied" and a["in_force"] == version,
                              IN_FORCE_WITHIN, since=self.pushed, version=version)
        self.until(f"version {version}: edge-hub config status shows it in force, no drift", self.status,
                   lambda s: s is not None and s.in_force == version and s.drift is False, IN_FORCE_WITHIN,
                   version=version)
        return ok, took

    def keep(self, version: int, config: dict) -> None:
        """``version`` is in force: later pushes build on it, and an agent restart writes its bytes."""
        self.version, self.in_force = version, copy.deepcopy(config)
        self.day.rig.agent.config = copy.deepcopy(config)

    def outcome(self, line: str) -> None:
        with self.day.ledger.lock:
            self.day.ledger.fleet.append(f"[{self.day.ledger.elapsed():5.0f}s] {line}")

    # The operations ------------------------------------------------------------------

    def adopt(self) -> None:
        """The store's own file, byte for byte, as the hub's first version."""
        d = self.day
        config = copy.deepcopy(d.rig.agent.config)
        text = as_yaml(config)
        d.checks.check(rows.FLEET, self.file() == text, "the store PC's devices.yaml is the rig's config's bytes",
                       "equal", "differs")
        version = self.push(text, "the store's own file")
        if version is None:
            return
        ok, took = self.in_force_at_hub(version)
        if ok:
            self.keep(version, config)
        self.outcome(f"v{version} the store's own file adopted: {'in force' if ok else 'NOT in force'} "
                     f"at the hub after {took:.1f} s")

    def good(self) -> None:
        """A good version: adds kiosk-3's printer, or changes its setting; only it (re)starts."""
        d = self.day
        new = copy.deepcopy(self.in_force)
        mine = next((dev for dev in new["devices"] if dev["id"] == NEW_PRINTER), None)
        if mine is None:
            what = f"adds {NEW_PRINTER} ({NEW_STATION}'s receipt printer)"
            new["devices"].append({"id": NEW_PRINTER, "kind": "printer.escpos", "connection": "tcp",
                                   "address": f"127.0.0.1:{d.rig.fleet_printer.port}", "profile": "generic-80-gb18030",
                                   "station": NEW_STATION, "pick_tickets": False, "return_slips": False,
                                   "paper_check_interval": d.rig.timers.paper_check})
        else:
            mine["paper_check_interval"] = 1.0 if mine["paper_check_interval"] != 1.0 else d.rig.timers.paper_check
            what = f"changes {NEW_PRINTER}'s paper_check_interval to {mine['paper_check_interval']:g} s"
        before = {k: dev for k, dev in self.devices().items() if k != NEW_PRINTER}
        connections = {k: self._connections(p) for k, p in d.rig.printers.items()}
        spare = self._connections(d.rig.fleet_printer)
        sold = len(d.ledger.sales)
        version = self.push(as_yaml(new), what)
        if version is None:
            return
        ids = {"version": version}
        ok, took = self.in_force_at_hub(version)
        online, _ = self.until(f"version {version}: {NEW_PRINTER} online at the agent",
                               lambda: self.devices().get(NEW_PRINTER, {}).get("state"), lambda s: s in _WELL,
                               IN_FORCE_WITHIN, **ids)
        self.until(f"version {version}: {NEW_PRINTER}'s emulator has a connection from the agent",
                   lambda: self._connections(d.rig.fleet_printer), lambda n: n > spare, IN_FORCE_WITHIN, **ids)
        self.until(f"version {version}: the hub console shows {NEW_PRINTER} online",
                   lambda: console_device(d, NEW_PRINTER), lambda s: s in _WELL, IN_FORCE_WITHIN, **ids)
        # Past the rollback window a good version stays.
        d.stop.wait(d.rig.fleet_rollback + 2)
        kept = self.answer(version)
        d.checks.check(rows.FLEET, bool(kept) and kept["state"] == "applied",
                       f"version {version} still in force past fleet.rollback_after_s", "applied", kept, **ids)
        restarted = _restarted(before, self.devices(), connections,
                               {k: self._connections(p) for k, p in d.rig.printers.items()})
        d.checks.check(rows.FLEET, not restarted, f"version {version}: no device whose config did not change "
                       "restarted", [], restarted, **ids)
        # The kiosks sold through the change (each sale at the hub once and printed once: the day's own rows).
        sold = len(d.ledger.sales) - sold
        d.checks.check(rows.FLEET, sold > 0, f"version {version}: the kiosks sold while it was applied and watched",
                       "> 0 sales", sold, **ids)
        if ok:
            self.keep(version, new)
        self.outcome(f"v{version} {what}: {'in force' if ok else 'NOT in force'} at the hub after {took:.1f} s, "
                     f"{NEW_PRINTER} {'online' if online else 'NOT online'}, "
                     f"{len(restarted)} other devices restarted, {sold} sales meanwhile")

    def broken(self) -> None:
        """A version ``edge-agent check`` refuses: its FILE:LINE at the hub; nothing changes at the store."""
        d = self.day
        bad = copy.deepcopy(self.in_force)
        bad["devices"].append({"id": "printer-typo", "kind": TYPO_KIND, "connection": "tcp",
                               "address": "127.0.0.1:9100"})
        text = as_yaml(bad)
        line = next(n for n, ln in enumerate(text.splitlines(), 1) if TYPO_KIND in ln)
        file_before = self.file()
        version = self.push(text, f"a device of kind {TYPO_KIND}")
        if version is None:
            return
        where = f"devices.yaml (hub version {version}):{line}:"
        ids = {"version": version}
        ok, took = self.until(f"version {version}: refused, its errors name {where}", lambda: self.answer(version),
                              lambda a: bool(a) and a["state"] == "refused" and where in a["errors"]
                              and a["in_force"] == self.version, IN_FORCE_WITHIN, since=self.pushed, **ids)
        shown = self.status_text()
        d.checks.check(rows.FLEET, "refused" in shown and where in shown and TYPO_KIND in shown,
                       f"version {version}: edge-hub config status shows it refused with {where}", where,
                       shown[-600:], **ids)
        d.checks.check(rows.FLEET, self.file() == file_before, f"version {version}: the store PC's devices.yaml "
                       "is unchanged", "unchanged", "changed", **ids)
        st = self.status()
        d.checks.check(rows.FLEET, st is not None and st.in_force == self.version,
                       f"version {version}: the hub shows the version in force unchanged", self.version,
                       st and st.in_force, **ids)
        self.outcome(f"v{version} a device of kind {TYPO_KIND}: {'refused' if ok else 'NOT refused'} after "
                     f"{took:.1f} s, '{where} unknown device kind...' at the hub, v{self.version} stays in force")

    def dead(self) -> None:
        """A version that passes check and breaks the store: rolled back by itself within the window."""
        d = self.day
        bad = copy.deepcopy(self.in_force)
        bad["devices"].append({"id": DEAD_DEVICE, "kind": "sensor.heartbeat", "address": f"127.0.0.1:{free_port()}",
                               "interval": 1.0})
        file_before = self.file()
        window = d.rig.fleet_rollback
        baseline = _unwell(health(d))
        d.outages.begin("fleet-bad-version")
        try:
            version = self.push(as_yaml(bad), f"{DEAD_DEVICE} at a port nothing listens on")
            if version is None:
                return
            pushed = self.pushed
            ids = {"version": version, "device": DEAD_DEVICE}
            named: list[float] = []
            other: set[tuple[str, str]] = set()

            def rolled() -> dict | None:
                h = health(d)
                unwell = _unwell(h)
                if h is not None and h.get("status") != "ok" and any(s == DEAD_DEVICE for _, s in unwell):
                    named.append(time.monotonic() - pushed)
                other.update(r for r in unwell - baseline if r[1] != DEAD_DEVICE)
                return self.answer(version)

            ok, took = self.until(f"version {version}: rolled back by itself within rollback_after_s + "
                                  f"{ROLLBACK_MARGIN:g} s", rolled,
                                  lambda a: bool(a) and a["state"] == "rolled_back", window + ROLLBACK_MARGIN,
                                  since=self.pushed, **ids)
        finally:
            d.outages.end("fleet-bad-version")
        d.checks.check(rows.FLEET, bool(named), f"version {version}: /v1/health degraded naming {DEAD_DEVICE} "
                       "while it is in force", "named", "never named", **ids)
        # Degraded by that sensor, and by nothing else that was not there before the push.
        d.checks.check(rows.FLEET, not other, f"version {version}: no other reason degrades /v1/health while it "
                       "is in force", f"only {DEAD_DEVICE} (before the push: {sorted(baseline)})", sorted(other), **ids)
        got = self.answer(version) or {}
        d.checks.check(rows.FLEET, DEAD_DEVICE in (got.get("reason") or "") and got.get("in_force") == self.version,
                       f"version {version}: the hub records why and the last good version in force",
                       f"{DEAD_DEVICE} named, v{self.version} in force", got, **ids)
        self.until(f"version {version}: edge-hub config status lists its rollback, v{self.version} in force",
                   self.status, lambda s: s is not None and s.in_force == self.version
                   and any(v == version for v, _ in s.rolled_back), IN_FORCE_WITHIN, **ids)
        d.checks.check(rows.FLEET, self.file() == file_before, f"version {version}: the store PC's devices.yaml is "
                       "the last good version's bytes again", "restored", "differs", **ids)
        self.until(f"version {version}: {DEAD_DEVICE} gone from /v1/devices", self.devices,
                   lambda devs: DEAD_DEVICE not in devs, IN_FORCE_WITHIN, **ids)
        self.until(f"version {version}: /v1/health no longer names {DEAD_DEVICE}", lambda: health(d),
                   lambda h: h is not None and DEAD_DEVICE not in str(h.get("reasons")), IN_FORCE_WITHIN, **ids)
        self.outcome(f"v{version} {DEAD_DEVICE} at a dead port: {'rolled back' if ok else 'NOT rolled back'} "
                     f"{took:.1f} s after the push (window {window:g} s), v{self.version} in force again; "
                     f"health named it {len(named)} times meanwhile")

    def drift(self) -> None:
        """A hand edit of the file on the store PC: drift at the hub; a push of the version in force ends it."""
        d = self.day
        path = d.rig.agent.config_path
        with path.open("a") as f:
            f.write(DRIFT_EDIT)
        ok, took = self.until("a hand edit on the store PC: edge-hub config status shows drift", self.status,
                              lambda s: s is not None and s.drift is True and s.in_force == self.version,
                              IN_FORCE_WITHIN, version=self.version)
        self.until("a hand edit on the store PC: /v1/health says config_drift", lambda: codes(health(d)),
                   lambda c: "config_drift" in c, IN_FORCE_WITHIN, version=self.version)
        version = self.push(as_yaml(self.in_force), "the version in force again, to end drift")
        if version is None:
            return
        ended, _ = self.in_force_at_hub(version)
        d.checks.check(rows.FLEET, self.file() == as_yaml(self.in_force), f"version {version}: the store PC's file "
                       "is the hub's version again", "equal", "differs", version=version)
        if ended:
            self.keep(version, self.in_force)
        self.outcome(f"hand edit on the store PC: drift {'seen' if ok else 'NOT seen'} at the hub after "
                     f"{took:.1f} s; v{version} pushed: drift {'ended' if ended else 'NOT ended'}")

    # The end of the day ----------------------------------------------------------------

    def judge(self) -> None:
        """At the end of the day: the hub shows the last good version in force, no drift."""
        if not self.version:
            return
        st = self.status()
        self.day.checks.check(rows.FLEET, st is not None and st.in_force == self.version and st.drift is False,
                              "the end of the day: the hub shows the last good version in force, no drift",
                              self.version, st and (st.in_force, st.drift))

    def _connections(self, printer: Any) -> int:
        """How many connections ``printer``'s emulator has taken (read on the emulators' loop)."""
        return self.day.rig.on_loop(lambda: printer.connections)



def _unwell(snapshot: dict | None) -> set[tuple[str, str]]:
    """(code, subject) of each reason of a ``/v1/health`` that degrades the store: not a warning, and not a
    label's (LabelWatch judges the labels by their pixels, and a price change makes one late for a while)."""
    return {(str(r.get("code")), str(r.get("subject"))) for r in (snapshot or {}).get("reasons") or []
            if isinstance(r, dict) and r.get("code") not in WARNING_CODES | LABEL_CODES}


def _restarted(before: dict[str, dict], after: dict[str, dict], conns_before: dict[str, int],
               conns_after: dict[str, int]) -> list[str]:
    """Devices of ``before`` (none changed by the version) that restarted, each with how it shows: all its
    counters fell back (a new driver counts from 0), its printer emulator saw a new connection, or it was
    online before and after with another ``since`` (printers go busy and back: their ``since`` moves)."""
    out = []
    for dev_id, old in before.items():
        new = after.get(dev_id)
        if new is None:
            out.append(f"{dev_id}: gone")
            continue
        # Every counter a new driver has starts from 0; some are gauges (labels_non_compliant) that fall on
        # their own, so a restart is every counter that had counted now lower.
        counted = {k: v for k, v in old["counters"].items() if v > 0}
        if counted and all(new["counters"].get(k, 0) < v for k, v in counted.items()):
            out.append(f"{dev_id}: counters {counted} now {new['counters']} (a new driver)")
        elif old["state"] == new["state"] == "online" and old["since"] != new["since"] \
                and old["kind"] != "printer.escpos":
            out.append(f"{dev_id}: online since {old['since']}, now since {new['since']}")
    out += [f"{kiosk}'s printer: {n} connections to its emulator, {conns_after[kiosk]} now"
            for kiosk, n in conns_before.items() if conns_after[kiosk] != n]
    return out


# The day's plan ------------------------------------------------------------------------------

OPERATIONS: dict[str, Callable[[Fleet], None]] = {
    "fleet: a good version (adds or changes a device)": Fleet.good,
    "fleet: a version check refuses": Fleet.broken,
    "fleet: a version that breaks a device": Fleet.dead,
    "fleet: a hand edit on the store PC": Fleet.drift,
}


def _step(name: str, operation: Callable[[Fleet], None]) -> Callable[[Day, float], None]:
    def run(day: Day, hold: float) -> None:
        day.ledger.did(name)
        try:
            operation(day.fleet)
        except Exception as err:  # the soak's own bug or an answer it could not read: a violation, the day goes on
            day.checks.fail(rows.FLEET, f"{name}: the operation runs to its end", "no exception",
                            f"{type(err).__name__}: {err}"[:300], traceback=traceback.format_exc()[-1500:])
            day.fleet.outcome(f"{name}: stopped by {type(err).__name__}: {err}"[:200])
    return run


def merge(plan: list[tuple[str, Callable[[Day, float], None], float]], day: Day,
          after: str) -> list[tuple[str, Callable[[Day, float], None], float]]:
    """``plan`` with the fleet's steps placed after the step named ``after``: the adoption right after it,
    then each operation once, in an order the seed draws (and from ``AGAIN_FROM`` minutes a second good
    version last), interleaved with the steps that follow ``after``."""
    rng = day.rng("fleet")
    ops = list(OPERATIONS.items())
    rng.shuffle(ops)
    fleet = [("fleet: the store's own file as the hub's version 1", _step("fleet: adopt", Fleet.adopt), 0.0)]
    fleet += [(name, _step(name, op), 0.0) for name, op in ops]
    if day.minutes >= AGAIN_FROM:
        # A longer day changes a setting of the device a version added: it alone restarts.
        fleet.append((AGAIN, _step(AGAIN, Fleet.good), 0.0))
    cut = next(i for i, (name, _, _) in enumerate(plan) if name == after) + 1
    head, tail = plan[:cut], list(plan[cut:])
    merged: list[tuple[str, Callable[[Day, float], None], float]] = [fleet.pop(0)]  # the adoption first
    while fleet or tail:
        take_fleet = fleet and (not tail or rng.random() < len(fleet) / (len(fleet) + len(tail)))
        merged.append(fleet.pop(0) if take_fleet else tail.pop(0))
    return head + merged
