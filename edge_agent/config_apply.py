"""Desired configuration at the store: a devices.yaml the hub sends, checked, applied live, rolled back by itself.

The hub sends version N of the store's devices.yaml on ``hub/{store}/config``
(sync/topics.py ``DesiredConfig``); ``ConfigApply.apply`` takes it:

1. A version not newer than the last one handled is ignored (the topic is
   retained: a reconnect brings the latest again, refused or rolled back).
2. The text is checked exactly as ``edge-agent check`` does (``config.load``
   and ``config.file_problems`` on a copy in the data dir), its messages
   naming ``devices.yaml (hub version N):LINE``. Refused: the errors go back
   on ``config/res`` and nothing changes.
3. Accepted: the file in force is kept as the last good one (with its
   version) in ``<data dir>/config/``, and the config file is replaced
   atomically (a temporary file beside it, fsync, rename).
4. Applied live when only ``devices`` and ``fleet`` changed: devices added
   start, removed stop, changed restart, the rest are not touched
   (edge_agent/supervisor.py); a printer stopped mid-job has the job queued
   again for a reprint, as at an agent restart. Any other change (api, hub,
   store, loyalty...: services read those once, at start) or a change to a
   device that a service attaches to at start (a shelf label's access
   point) is ``restart_required``: reported, then the agent stops as on
   SIGTERM and exits with ``EXIT_RESTART`` for systemd's ``Restart=on-failure``
   to start it again; the next start reports ``applied``.
5. For ``fleet.rollback_after_s`` after a live apply, the devices it added
   or changed are watched: one not online (or busy) at the end, or one that
   makes the store's health degraded then (a health reason naming it, such
   as a new printer out of paper), sends the agent back to the last good version the same way, reported as
   ``rolled_back`` with why.

Two PCs running as one store (a copied devices.yaml: one login, one MQTT
session, taken in turns) take no version while both run: a version is held
while the hub's ``duplicate_store`` notice names this agent, while another
client took the session within ``hub.trouble_hold``, while the link is down,
and for ``SETTLE`` x ``hub.takeover_backoff`` after it comes up (the retained
version arrives at once, before a second PC and this one have taken a turn
each); it is taken once none holds. So a second PC does not rewrite its own
devices.yaml from the store's version while the store's agent runs, and the
store's agent takes what was pushed meanwhile once the other has gone. (A
second PC alone, the store's PC off, is the store's PC to the hub: it takes
the version after the settle time.) Every answer names the stream this run
numbers its events in, and the hub keeps each stream's word apart
(sync/hub/fleet/desired.py ``answers``).

Drift: ``status()`` (the health snapshot's ``config``) compares the file's
SHA-256 with the version in force; a local edit of a hub version shows
``drift: true`` and the warning reason ``config_drift``. Version 0 is the
store's own file, never sent by the hub: it cannot drift.

What is kept, in ``<data dir>/config/``: ``state.json`` (the version in
force, its state, the highest version handled, a version waiting for a
restart, the last result, re-sent each time the link comes up),
``last-good.yaml`` and ``last-good.json`` (its version and hash).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import DeviceConfig, DeviceState
from drivers.printer.config import PrinterConfig
from edge_agent import config as config_mod
from edge_agent import health
from edge_agent.config import AgentConfig
from edge_agent.config_yaml import compose, line_of
from edge_agent.resend import on_each_connect
from edge_core.bus import utcnow
from edge_core.errors import ConfigError
from sync import topics

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)

# The exit status after a restart_required version: not 0, so that systemd's Restart=on-failure
# (systemd/edge-agent.service) starts the agent again, on the new file. EX_TEMPFAIL of sysexits.h.
EXIT_RESTART = 75
# Sections that may change without a restart; every other one is read once, at start.
LIVE_SECTIONS = frozenset({"devices", "fleet"})
_WELL = (DeviceState.ONLINE, DeviceState.BUSY)
# How long the restart_required answer may take to reach the broker before the agent stops anyway.
PUBLISH_WAIT_S = 5.0


@dataclass
class Diff:
    """What changes from one config to another."""

    added: list[DeviceConfig]
    removed: list[str]
    changed: list[DeviceConfig]
    restart: list[str]  # why a restart is needed, one phrase each

    @property
    def devices(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def diff(old: AgentConfig, new: AgentConfig, attached_kinds: frozenset[str] = frozenset()) -> Diff:
    """The devices added, removed and changed from ``old`` to ``new``, and what needs a restart."""
    restart = []
    for section in type(new).model_fields:
        if section not in LIVE_SECTIONS and getattr(old, section) != getattr(new, section):
            restart.append(f"{section} changed")
    before = {d.id: d for d in old.devices if d.enabled}
    after = {d.id: d for d in new.devices if d.enabled}
    added = [d for i, d in after.items() if i not in before]
    removed = [i for i in before if i not in after]
    changed = [d for i, d in after.items() if i in before and before[i] != d]
    for d in [*added, *changed, *(before[i] for i in removed)]:
        if d.kind in attached_kinds:
            restart.append(f"device {d.id} ({d.kind}) is attached to a store service at start")
    return Diff(added, removed, changed, restart)


def _atomic_write(path: Path, text: str) -> None:
    """``text`` in ``path``, whole or not at all: a temporary file beside it, fsync, rename, fsync the folder.

    A symlink is followed and its target replaced, the link kept: under systemd, /etc/edge-agent is
    read-only to the agent, and a store whose config comes from the hub links
    /etc/edge-agent/devices.yaml to /var/lib/edge-agent/config/devices.yaml (docs/install.md)."""
    path = path.resolve()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)  # the permissions the file had
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha_of(path: Path) -> str | None:
    try:
        return topics.config_sha256(path.read_bytes().decode("utf-8", errors="replace"))
    except OSError:
        return None


# A version waits this many hub.takeover_backoff after the link comes up: a second PC holding the
# session took it from this agent, which takes it back after one takeover_backoff.
SETTLE = 1.5
RECHECK_S = 1.0  # how often a held version looks again whether it may be taken


class ConfigApply:
    """The agent's side of desired configuration (see the module's docstring)."""

    def __init__(self, agent: "Agent", config_path: Path | None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.agent = agent
        self.path = Path(config_path) if config_path is not None else None
        self.dir = agent.data_dir / "config"
        self._sleep = sleep  # the rollback window's timer; tests may pass their own
        self._lock = asyncio.Lock()
        self.version = 0
        self.sha256: str | None = None
        self.state = "applied"
        self.seen = 0  # the highest version handled (applied, refused, rolled back)
        self.pending: dict[str, Any] | None = None  # a version written, waiting for the restart
        self.last_result: topics.ConfigResult | None = None
        self._watch: asyncio.Task[None] | None = None
        self._resend: asyncio.Task[None] | None = None
        self._exit: asyncio.Task[None] | None = None
        self._applying: set[asyncio.Task[Any]] = set()
        self._held: topics.DesiredConfig | None = None  # a version come while the hub sees two of us
        self._unhold: asyncio.Task[None] | None = None
        self._stat: tuple[int, int, int] | None = None
        self._file_sha: str | None = None

    # Life cycle ---------------------------------------------------------------


    @property
    def applying(self) -> bool:
        """True while a version from the hub is being checked or applied."""
        return bool(self._applying)
    async def start(self) -> None:
        """Read what was in force; a version written before a restart is in force now if the file is it."""
        if self.path is not None and not await asyncio.to_thread(self._is_ours, self.path):
            # Said once at start; quietly when there is no such file (a demo or a test started with --config).
            (log.warning if self.path.exists() else log.info)(
                "config: %s is not the file this agent was started with; versions from the hub will be refused "
                "(give the agent its file: EDGE_CONFIG)", self.path)
            self.path = None
        state = self._read_json(self.dir / "state.json") or {}
        file_sha = self.file_sha256()
        try:
            self.version, self.seen = int(state.get("version", 0)), int(state.get("seen", 0))
        except (TypeError, ValueError):
            log.warning("config: %s is unreadable; taking the file as it is as version 0", self.dir / "state.json")
            state, self.version, self.seen = {}, 0, 0
        self.sha256 = state.get("sha256") if self.version else file_sha
        self.state = str(state.get("state", "applied"))
        pending = state.get("pending")
        if isinstance(state.get("last_result"), dict):
            try:
                self.last_result = topics.ConfigResult.model_validate(state["last_result"])
            except ValueError:
                self.last_result = None
        if isinstance(pending, dict) and pending.get("sha256") == file_sha:
            self.version, self.sha256, self.state = int(pending["version"]), file_sha, "applied"
            self.last_result = self._result(self.version, True, "applied")
            log.info("config: hub version %d in force after the restart it needed", self.version)
            self._save()
        elif isinstance(pending, dict):
            log.warning("config: hub version %s was written for a restart, but the file is not it now; "
                        "version %d stays in force", pending.get("version"), self.version)
            self.state = "applied"
            self._save()
        # Each time the link comes up, the last result goes again (the hub keeps the latest).
        self._resend = asyncio.create_task(self._resend_on_connect(), name="config-resend")
        self._unhold = asyncio.create_task(self._take_held(), name="config-unhold")

    def _is_ours(self, path: Path) -> bool:
        """True when ``path`` loads to the config the agent runs: the file it will replace is its own."""
        try:
            return config_mod.load(path) == self.agent.config
        except ConfigError:
            return False

    async def stop(self) -> None:
        """Stop the rollback watch and the resend; a version being applied finishes first."""
        async with self._lock:
            tasks = [t for t in (self._watch, self._resend, self._unhold, *self._applying) if t is not None]
            for task in tasks:
                task.cancel()  # versions not begun yet wait for the next start: the topic is retained
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resend_on_connect(self) -> None:
        await on_each_connect(self.agent.bus.subscribe("hub.state"), self._resend_last)

    async def _take_held(self) -> None:
        """Take a held version once nothing holds it: looked at on each word from the link (its state,
        the hub's notice) and every ``RECHECK_S`` (the settle time and a takeover's hold run out)."""
        sub = self.agent.bus.subscribe("hub.notice", "hub.state")
        try:
            while True:
                try:
                    await asyncio.wait_for(sub.get(), RECHECK_S)
                except TimeoutError:
                    pass
                # Not while the link is down: the settle time starts again when it comes up.
                link = self.agent.link
                if self._held is not None and (link is None or link.connected) and self._hold_reason() is None:
                    held, self._held = self._held, None
                    log.info("config: taking hub version %d, held until now", held.version)
                    self.take(held)
        finally:
            sub.close()

    def _hold_reason(self) -> str | None:
        """Why a version from the hub waits now (see the module's docstring), or None."""
        link = self.agent.link
        if link is None:
            return None
        codes = {code for code, _ in link.recent_trouble()}
        if "duplicate_store" in codes:
            return "the hub sees two agents running as this store"
        if "mqtt_session_taken_over" in codes:
            return "another client took this store's MQTT session (a second PC with this store's id?)"
        settle = SETTLE * link.settings.takeover_backoff_s
        if link.connected_since is not None and (up := (utcnow() - link.connected_since).total_seconds()) < settle:
            return f"the link came up {up:.0f} s ago, and a second PC with this store's id shows within {settle:g} s"
        return None

    def _resend_last(self) -> None:
        if self.last_result is not None:
            self._publish(self.last_result)

    # What the health snapshot says --------------------------------------------

    def file_sha256(self) -> str | None:
        """The config file's SHA-256 now (read again only when its size, time or inode changed)."""
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != self._stat:
            self._stat, self._file_sha = key, _sha_of(self.path)
        return self._file_sha

    def status(self) -> dict[str, Any]:
        """The health snapshot's ``config``: version in force, its hash, drift, state."""
        drift = self.version > 0 and self.state != "restart_required" and self.file_sha256() != self.sha256
        return topics.ConfigHealth(version=self.version, sha256=self.sha256, drift=drift,
                                   state=self.state).model_dump()

    # Taking a version ----------------------------------------------------------

    def take(self, desired: topics.DesiredConfig) -> None:
        """Apply ``desired`` in a task of its own: the downlink (acks, orders) does not wait for devices
        to stop and start. Versions are applied one at a time, in the order they came."""
        task = asyncio.create_task(self.apply(desired), name=f"config-apply-{desired.version}")
        self._applying.add(task)
        task.add_done_callback(self._applied)

    def _applied(self, task: asyncio.Task[Any]) -> None:
        self._applying.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("config: applying a version from the hub failed", exc_info=task.exception())

    async def apply(self, desired: topics.DesiredConfig) -> topics.ConfigResult | None:
        """Check and apply one version (see the module's docstring); the answer sent, or None when ignored."""
        async with self._lock:
            return await self._apply(desired)

    async def _apply(self, desired: topics.DesiredConfig) -> topics.ConfigResult | None:
        n = desired.version
        if n <= self.seen or (n == self.version and desired.sha256 == self.sha256):
            # Once per reconnect at most: the retained copy of the latest version comes again.
            log.info("config: hub version %d already handled (in force: %d); nothing to do", n, self.version)
            return None
        if (why := self._hold_reason()) is not None:
            if self._held is None or self._held.version < n:
                log.warning("config: hub version %d held: %s; taken once that is over", n, why)
                self._held = desired
            return None
        self.seen = n
        name = f"devices.yaml (hub version {n})"
        if self.path is None:
            return self._answer(self._result(n, False, "refused", [
                f"{name}:1: this agent does not know which file it was started with; start it with "
                "--config or EDGE_CONFIG"]))
        new, errors = await asyncio.to_thread(self._check, desired.yaml, name)
        if new is None:
            log.warning("config: hub version %d refused: %s", n, "; ".join(errors[:3]))
            return self._answer(self._result(n, False, "refused", errors))
        change = diff(self.agent.config, new, self._attached_kinds())
        try:
            await asyncio.to_thread(self._keep_last_good)
            await asyncio.to_thread(_atomic_write, self.path, desired.yaml)
        except OSError as err:
            return self._answer(self._result(n, False, "refused", [
                f"{self.path}:1: cannot write the config file ({err.strerror or err}); the agent needs to write "
                "it and the folder it is in to take a version from the hub"]))
        self._stat = None
        if change.restart:
            self.pending = {"version": n, "sha256": desired.sha256}
            self.state = "restart_required"
            result = self._answer(self._result(n, True, "restart_required", reason="; ".join(change.restart)))
            log.warning("config: hub version %d needs a restart (%s); stopping to be started again",
                        n, "; ".join(change.restart))
            self._exit = asyncio.create_task(self._restart(), name="config-restart")
            return result
        await self._apply_live(new, change)
        self.version, self.sha256, self.state = n, desired.sha256, "applied"
        result = self._answer(self._result(n, True, "applied"))
        log.info("config: hub version %d applied live (%d added, %d removed, %d changed, by %s)", n,
                 len(change.added), len(change.removed), len(change.changed), desired.by or "?")
        watched = [d.id for d in (*change.added, *change.changed)]
        if watched:
            if self._watch is not None:
                self._watch.cancel()
            self._watch = asyncio.create_task(self._rollback_watch(n, watched, new.fleet.rollback_after_s),
                                              name=f"config-watch-{n}")
        return result

    def _check(self, text: str, name: str) -> tuple[AgentConfig | None, list[str]]:
        """``edge-agent check`` on ``text``: the config, or None and its problems as ``name:LINE: ...``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        copy = self.dir / "incoming.yaml"
        copy.write_text(text, encoding="utf-8")
        try:
            cfg = config_mod.load(copy)
            problems = config_mod.file_problems(copy, cfg)
        except ConfigError as err:
            cfg, problems = None, list(err.problems)
        finally:
            copy.unlink(missing_ok=True)
        if cfg is not None and cfg.store.id != self.agent.config.store.id:
            _, lines, _ = compose(text, name)
            problems.append(f"{copy}:{line_of(lines, ('store', 'id'))}: store.id {cfg.store.id!r} is not this "
                            f"store's ({self.agent.config.store.id!r}); send this store its own devices.yaml")
        problems = [p.replace(str(copy), name, 1) for p in problems]
        return (None, problems) if problems else (cfg, [])

    def _attached_kinds(self) -> frozenset[str]:
        # Drivers a store service attaches to once, at start (the label service to each access point).
        return frozenset(o.driver.kind for o in self.agent.supervisor.owners.values() if hasattr(o.driver, "attach"))

    def _keep_last_good(self) -> None:
        """The file in force, and its version, as the last good one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        text = self.path.read_text(encoding="utf-8")
        _atomic_write(self.dir / "last-good.yaml", text)
        _atomic_write(self.dir / "last-good.json", json.dumps({"version": self.version,
                                                               "sha256": topics.config_sha256(text)}))

    async def _apply_live(self, new: AgentConfig, change: Diff) -> None:
        """Devices removed stop, changed restart, added start; the agent's config is ``new`` from here on."""
        agent = self.agent
        sup = agent.supervisor
        # The print queue learns the printers first: a new printer's driver asks it for its jobs at once.
        agent.config = new
        agent.printing.config = new
        agent.printing.printers = {d.id: d for d in new.devices if isinstance(d, PrinterConfig) and d.enabled}
        for device_id in change.removed:
            await sup.remove(device_id)
        for cfg in change.changed:
            await sup.replace(cfg)
        for cfg in change.added:
            await sup.add(cfg)
        for device_id in [*change.removed, *(c.id for c in change.changed)]:
            # A job cut short by the stop prints again, as after an agent restart.
            await agent.printing.interrupted(device_id, "cut short by a configuration change")

    # Rollback -------------------------------------------------------------------

    async def _rollback_watch(self, version: int, watched: list[str], window: float) -> None:
        await self._sleep(window)
        async with self._lock:
            if self.version != version:
                return
            snaps = {s.id: s for s in self.agent.supervisor.snapshot()}
            bad = [f"{s.id} ({s.kind}) is {s.state.value}" + (f": {s.last_error}" if s.last_error else "")
                   for s in (snaps[i] for i in watched if i in snaps) if s.state not in _WELL]
            # Online, but making the store degraded (a new printer out of paper, its cover open).
            assessment = await health.assess(self.agent)
            bad += [f"{r['subject']}: {r['code']}: {r['message']}" for r in assessment["reasons"]
                    if r["subject"] in watched and r["code"] not in health.WARNING_CODES
                    and not r["code"].startswith("device_")]
            if not bad:
                log.info("config: hub version %d healthy after %g s", version, window)
                return
            why = "; ".join(bad)
            await self._rollback(version, f"{why}, {window:g} s after version {version} was applied")

    async def _rollback(self, version: int, why: str) -> None:
        good = self._read_json(self.dir / "last-good.json")
        try:
            text = (self.dir / "last-good.yaml").read_text(encoding="utf-8")
            old = config_mod.parse(text, "devices.yaml (last good)")
            change = diff(self.agent.config, old, self._attached_kinds())
            if change.restart:
                raise ConfigError([f"it differs in more than devices: {'; '.join(change.restart)}"])
            await asyncio.to_thread(_atomic_write, self.path, text)
        except (OSError, ConfigError) as err:
            detail = "; ".join(err.problems) if isinstance(err, ConfigError) else str(err)
            log.error("config: hub version %d is unhealthy (%s) and the last good version cannot be restored: %s",
                      version, why, detail)
            return
        self._stat = None
        await self._apply_live(old, change)
        self.version = int((good or {}).get("version", 0))
        self.sha256 = topics.config_sha256(text)
        self.state = "rolled_back"
        log.warning("config: hub version %d rolled back to version %d: %s", version, self.version, why)
        self._answer(self._result(version, False, "rolled_back", reason=why))

    # Restart ---------------------------------------------------------------------

    async def _restart(self) -> None:
        """Wait (bounded) for the answer to reach the broker, then stop as on SIGTERM with EXIT_RESTART."""
        if self.last_result is not None:
            info = self._publish(self.last_result)
            if info is not None:
                await asyncio.to_thread(info.wait_for_publish, PUBLISH_WAIT_S)
        self.agent.exit_status = EXIT_RESTART
        os.kill(os.getpid(), signal.SIGTERM)

    # Answers and state ---------------------------------------------------------

    def _result(self, version: int, ok: bool, state: str, errors: list[str] | None = None,
                reason: str | None = None) -> topics.ConfigResult:
        return topics.ConfigResult(version=version, ok=ok, state=state, errors=(errors or [])[:100], reason=reason,
                                   in_force=topics.ConfigVersion(version=self.version,
                                                                 sha256=self.sha256 or "0" * 64),
                                   at=utcnow())

    def _answer(self, result: topics.ConfigResult) -> topics.ConfigResult:
        """Keep ``result`` as the last one, save the state, send it (restart_required is sent by _restart)."""
        self.last_result = result
        self._save()
        if result.state != "restart_required":
            self._publish(result)
        return result

    def _publish(self, result: topics.ConfigResult) -> Any:
        """Send ``result`` under the stream this run numbers in (the hub keeps each agent's word apart);
        paho's message info, or None without a link."""
        link = self.agent.link
        if link is None:
            return None
        return link.publish(link.topics.config_res,
                            result.model_copy(update={"stream": link.outbox.stream_id or None}).wire())

    def _save(self) -> None:
        state = {"version": self.version, "sha256": self.sha256, "state": self.state, "seen": self.seen,
                 "pending": self.pending if self.state == "restart_required" else None,
                 "last_result": self.last_result.model_dump(mode="json") if self.last_result else None}
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.dir / "state.json", json.dumps(state))

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
