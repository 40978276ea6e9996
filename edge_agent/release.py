"""Self-update at the store: a signed release the hub names, verified, installed beside this one, switched to, and
rolled back by itself when it is not healthy.

The hub names the release a store should run on ``hub/{store}/update``
(sync/topics.py ``DesiredRelease``); ``Releases.take`` handles it in a task of
its own, reporting each step on ``edge/{store}/update/res``:

1. The version running, or the last one handled with the same manifest (a
   release refused or rolled back), is left alone: the topic is retained.
2. ``downloading``: manifest.json and manifest.sig from ``base_url`` (https
   trusting ``hub.ca_file``, or http on loopback only), each read up to its
   limit and no further; the manifest's SHA-256 must be the one the message
   names, its ed25519 signature must verify with ``updates.public_key_file``
   (sync/bundle.py), its version must be the one named. Then each wheel,
   up to the size the manifest gives it (all of them within
   ``updates.max_bundle_mb``), its SHA-256 checked. Anything wrong:
   ``refused`` with why, nothing installed.
3. ``installed``: ``python -m venv <releases_dir>/<V>/venv`` and
   ``pip install --no-index --find-links <files> edge-agent==V``: no
   internet. A failure is ``failed`` (the same message, sent again, tries
   again). A release installed already from the same signed manifest (the
   previous one, which a rollback from the hub names) is not downloaded
   again.
4. ``waiting_quiet`` while a kiosk basket has lines, a print job is queued
   or printing, or a devices.yaml version is being applied; checked again
   every ``QUIET_EVERY_S``.
5. ``switching``: ``updates.current_link`` (the unit's ExecStart runs
   ``current/venv/bin/edge-agent``) is pointed at the new release (a new
   link renamed over the old one), the previous target kept in the state
   file, and the agent stops as on SIGTERM with ``EXIT_RESTART`` (75) for
   systemd's ``Restart=on-failure`` to start the new release.

A release that was switched to counts its starts in the state file, first
thing in ``edge-agent run`` (``count_start``, before the config is read: a
release that refuses the store's devices.yaml or dies while the agent is
built is counted too), or at ``boot`` (the first thing ``Agent.start``
does) when the agent is started some other way. Once the agent is up
(``start``, the last thing), its health
(edge_agent/health.py ``assess``) must then stay ok for
``updates.healthy_after_s`` (``healthy``); not within ``GIVE_UP_FACTOR``
times that plus ``GIVE_UP_EXTRA_S``, or a third start without becoming
healthy (it crashed twice), switches the link back to the previous release
and exits 75 again; the previous release, started, reports ``rolled_back``
with why and does not take that version again. A release that migrated the
store database past the schema the previous one knows is not switched back
(the previous release would refuse the database): ``failed``, with why.

What is kept: ``<data dir>/release/state.json`` (the release being tried,
its previous one and its starts; the last release handled; the last result,
sent again each time the link comes up).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edge_agent import health
from edge_agent.config import UpdatesConfig
from edge_agent.hosts import is_loopback
from edge_agent.resend import on_each_connect
from edge_agent.store.migrations import SCHEMA_VERSION
from edge_core.bus import utcnow
from sync import bundle, topics

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)

EXIT_RESTART = 75  # as edge_agent/config_apply.py: systemd's Restart=on-failure starts the agent again
MAX_STARTS = 2  # starts of a new release without becoming healthy before it is rolled back
QUIET_EVERY_S = 2.0
HEALTH_EVERY_S = 1.0
GIVE_UP_FACTOR = 3.0
GIVE_UP_EXTRA_S = 30.0
READ_TIMEOUT_S = 30.0
INSTALL_TIMEOUT_S = 900.0
PUBLISH_WAIT_S = 5.0


class UpdateRefused(Exception):
    """A release that is not taken; the message says why (``refused``, or ``failed`` when ``failed``)."""

    def __init__(self, reason: str, state: str = "refused"):
        super().__init__(reason)
        self.state = state


class Fetcher:
    """GETs under one base url, each read up to a limit and no further."""

    def __init__(self, base_url: str, ca_file: Path | None):
        parts = urlsplit(base_url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise UpdateRefused(f"base_url {base_url} is http on another host; a bundle travels over https")
        if parts.username or parts.password:
            raise UpdateRefused("base_url holds a user name or password")
        self.base = base_url
        self.context = (ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
                        if parts.scheme == "https" else None)

    def _open(self, name: str) -> Any:
        url = self.base + name  # name: manifest.json, manifest.sig or a file name the manifest's pattern allows
        try:
            return urllib.request.urlopen(url, timeout=READ_TIMEOUT_S, context=self.context)  # noqa: S310
        except urllib.error.HTTPError as err:
            raise UpdateRefused(f"GET {name}: the hub answered {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            raise UpdateRefused(f"GET {name}: {getattr(err, 'reason', err)}", "failed") from err

    def small(self, name: str, limit: int) -> bytes:
        """The whole of ``name``, refused past ``limit`` bytes."""
        with self._open(name) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise UpdateRefused(f"{name} is {length} bytes, over the limit of {limit}")
            data = resp.read(limit + 1)
        if len(data) > limit:
            raise UpdateRefused(f"{name} is over the limit of {limit} bytes")
        return data

    def file(self, entry: topics.ReleaseFile, dest: Path) -> None:
        """``entry`` into ``dest``: exactly its size, its SHA-256, or UpdateRefused."""
        h, size = hashlib.sha256(), 0
        with self._open(entry.name) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != entry.size:
                raise UpdateRefused(f"{entry.name} is {length} bytes, the manifest says {entry.size}")
            while chunk := resp.read(min(bundle.CHUNK, entry.size + 1 - size)):
                size += len(chunk)
                if size > entry.size:
                    raise UpdateRefused(f"{entry.name} is longer than the {entry.size} bytes the manifest says")
                h.update(chunk)
                out.write(chunk)
        if size != entry.size:
            raise UpdateRefused(f"{entry.name} is {size} bytes, the manifest says {entry.size}")
        if h.hexdigest() != entry.sha256:
            raise UpdateRefused(f"{entry.name}: its sha256 is not the manifest's (the file was changed)")


def link_target(link: Path) -> Path | None:
    """Where ``link`` points (absolute), None when it is not a symbolic link."""
    try:
        target = Path(os.readlink(link))
    except OSError:
        return None
    return target if target.is_absolute() else link.parent / target


def point(link: Path, target: Path) -> None:
    """``link`` -> ``target``, replaced in one rename (a new link beside it, then os.replace)."""
    tmp = link.with_name(f".{link.name}.new-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fd = os.open(link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(home: Path) -> dict[str, Any]:
    """``<data dir>/release/state.json``, {} when missing or unreadable."""
    try:
        data = json.loads((home / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(home: Path, state: dict[str, Any]) -> None:
    """Write the state file whole (a new file fsynced, then renamed over the old one)."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".state.json.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, home / "state.json")


def schema_on_disk(data_dir: Path) -> int:
    """The store database's schema version on disk (0 when there is none yet)."""
    path = data_dir / "store.db"
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def why_not_back(trial: dict[str, Any], data_dir: Path) -> str | None:
    """Why the trial's previous release cannot be gone back to, None when it can."""
    previous = Path(str(trial.get("previous_target") or ""))
    if not (previous / "venv" / "bin" / "edge-agent").exists():
        return f"no previous release at {previous} to go back to"
    schema = schema_on_disk(data_dir)
    if schema > int(trial.get("schema", schema)):
        # The previous release would refuse the database this one migrated: going back would not start.
        return (f"not rolled back: the store database was migrated to schema {schema}, which release "
                f"{trial.get('previous')} (schema {trial.get('schema')}) cannot open")
    return None


def count_start(data_dir: Path, version: str) -> int | None:
    """First thing in ``edge-agent run``: count a start of the release on trial (``version`` running).

    Its third start goes back to the previous release here, before the config
    is read (a release that refuses the store's devices.yaml, or dies while
    the agent is built, never reaches ``boot``): EXIT_RESTART, for systemd to
    start the previous release, which reports the rollback. None otherwise,
    and when going back is not possible here (``boot`` then says why to the hub)."""
    home = data_dir / "release"
    state = read_state(home)
    trial = state.get("trial")
    if not isinstance(trial, dict) or trial.get("version") != version or trial.get("rolled_back"):
        return None
    trial["starts"] = int(trial.get("starts", 0)) + 1
    trial["counted_by"] = os.getpid()  # boot() in this process does not count it again
    link = Path(str(trial.get("link") or ""))
    why = f"release {version} started {trial['starts'] - 1} times without becoming healthy"
    if trial["starts"] <= MAX_STARTS or not trial.get("link") or why_not_back(trial, data_dir):
        write_state(home, state)
        return None
    trial["rolled_back"], trial["reason"] = True, why
    write_state(home, state)
    point(link, Path(str(trial["previous_target"])))
    print(f"edge-agent: update: {why}; switched {link} back to {trial['previous_target']} ({trial.get('previous')})",
          file=sys.stderr, flush=True)
    return EXIT_RESTART


class Releases:
    """The agent's side of updates (see the module's docstring)."""

    def __init__(self, agent: "Agent", config: UpdatesConfig, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 exit_now: Callable[[int], None] = os._exit):
        self.agent = agent
        self.config = config
        self.dir = agent.data_dir / "release"
        self._sleep, self._clock, self._exit_now = sleep, clock, exit_now
        # How the agent stops to be started again: as on SIGTERM (Agent.stop exits with ``exit_status``).
        self.stop_process: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTERM)
        self.state: dict[str, Any] = {}
        self.last_result: topics.UpdateResult | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._switching = False
        self._watch: dict[str, Any] | None = None  # the trial whose health start() watches
        self._sub: Any = None
        self._pending: topics.DesiredRelease | None = None  # a message that came during an update

    @property
    def running(self) -> str:
        return self.agent.version

    # Start and stop ---------------------------------------------------------------

    async def boot(self) -> None:
        """At start: count a release on trial, roll it back after too many starts, report a rollback landed."""
        self.state = self._read()
        # Subscribed before the link starts: its first "online" is not missed.
        self._sub = self.agent.bus.subscribe("hub.state")
        if isinstance(self.state.get("last_result"), dict):
            try:
                self.last_result = topics.UpdateResult.model_validate(self.state["last_result"])
            except ValueError:
                self.last_result = None
        trial = self.state.get("trial")
        if isinstance(trial, dict):
            if trial.get("version") == self.running and not trial.get("rolled_back"):
                if trial.get("counted_by") != os.getpid():  # not counted by count_start in this process
                    trial["starts"] = int(trial.get("starts", 0)) + 1
                    self._save()
                if trial["starts"] > MAX_STARTS:
                    await self._roll_back(f"release {self.running} started {trial['starts'] - 1} times without "
                                          "becoming healthy", exit_now=True)
                    return
                log.info("update: release %s on trial (start %d), healthy after %g s of good health",
                         self.running, trial["starts"], self.config.healthy_after_s)
                self._watch = trial
            elif trial.get("previous") == self.running:
                why = trial.get("reason") or f"the agent started on {self.running} instead of {trial.get('version')}"
                state = "rolled_back" if trial.get("rolled_back") else "failed"
                log.warning("update: release %s %s; running %s: %s", trial.get("version"),
                            state.replace("_", " "), self.running, why)
                self.state["trial"] = None
                handled = self.state.get("handled")
                if isinstance(handled, dict) and handled.get("version") == trial.get("version"):
                    handled["state"] = state  # not taken again, for this very manifest
                self._result(str(trial.get("version")), str(trial.get("rollout", "")), state, why)
            else:
                log.warning("update: the release on trial was %s, this is %s; forgetting the trial",
                            trial.get("version"), self.running)
                self.state["trial"] = None
                self._save()

    async def start(self) -> None:
        """Once the agent is up: resend the last result on each connect, and watch a release on trial."""
        self._spawn(on_each_connect(self._sub, self._resend_last), "update-resend")
        if self._watch is not None:
            self._spawn(self._watch_health(self._watch), "update-health")

    async def stop(self) -> None:
        """Stop the update in progress and the health watch (a retained message brings the update again)."""
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("update: %s failed", task.get_name(), exc_info=task.exception())

    def _resend_last(self) -> None:
        if self.last_result is not None:
            self._publish(self.last_result)

    # Taking a release -------------------------------------------------------------

    def take(self, desired: topics.DesiredRelease) -> None:
        """Handle ``desired`` in a task of its own; one at a time, a newer message replacing one in progress
        until the switch begins."""
        if desired.version == self.running:
            log.info("update: release %s is the one running; nothing to do", desired.version)
            return
        handled = self.state.get("handled") or {}
        if handled.get("version") == desired.version and handled.get("manifest_sha256") == desired.manifest_sha256:
            log.info("update: release %s was handled already (%s); nothing to do", desired.version,
                     handled.get("state", "?"))
            return
        if self._switching:
            log.info("update: switching already; release %s waits for the next start", desired.version)
            return
        if self._task is not None and not self._task.done():
            # A download or an install is not cut short (pip would be left half done): the newest message
            # waits, and an update waiting for a quiet moment gives way to it.
            log.info("update: release %s waits for the update in progress", desired.version)
            self._pending = desired
            return
        self._task = asyncio.create_task(self._update(desired), name=f"update-{desired.version}")
        self._task.add_done_callback(self._update_done)

    def _update_done(self, task: asyncio.Task[None]) -> None:
        self._done(task)
        pending, self._pending = self._pending, None
        if pending is not None and not task.cancelled():
            self.take(pending)

    async def _update(self, desired: topics.DesiredRelease) -> None:
        v, rollout = desired.version, desired.rollout
        self.state["handled"] = {"version": v, "manifest_sha256": desired.manifest_sha256, "state": "downloading"}
        self._result(v, rollout, "downloading")
        home = self.config.releases_dir / v
        try:
            kept = await asyncio.to_thread(self._installed, desired, home)
            if kept is None:
                manifest = await asyncio.to_thread(self._download, desired, home)
                current = self._current()
                self._result(v, rollout, "downloading", f"{len(manifest.files)} files verified")
                await asyncio.to_thread(self._install, manifest, home)
            else:
                current = self._current()
                if home.resolve() == current.resolve():
                    raise UpdateRefused(f"{home} is the release in force")
                log.info("update: release %s is installed in %s already (same signed manifest)", v, home)
        except OSError as err:
            # updates.releases_dir not writable (an agent not installed as docs/install.md, Updates, says).
            self.state["handled"] = None
            log.warning("update: release %s failed: %s", v, err)
            self._result(v, rollout, "failed", f"cannot install into {self.config.releases_dir}: "
                                               f"{err.strerror or err}")
            return
        except UpdateRefused as err:
            self.state["handled"]["state"] = err.state
            if err.state == "failed":
                # The hub unreachable, pip failing: the same message, sent again (at a reconnect), tries again.
                self.state["handled"] = None
            log.warning("update: release %s %s: %s", v, err.state, err)
            self._result(v, rollout, err.state, str(err))
            return
        self.state["handled"]["state"] = "installed"
        self._result(v, rollout, "installed")
        said = ""
        while why := await self.busy():
            if self._pending is not None:
                log.info("update: release %s gives way to release %s", v, self._pending.version)
                return
            if why != said:
                log.info("update: release %s installed, waiting for a quiet moment: %s", v, why)
                self._result(v, rollout, "waiting_quiet", why)
                said = why
            await self._sleep(QUIET_EVERY_S)
        await self._switch(desired, current, home)

    def _current(self) -> Path:
        """The release in force (the link's target); UpdateRefused when the agent does not run through the link."""
        link = self.config.current_link
        target = link_target(link)
        if target is None:
            raise UpdateRefused(f"updates.current_link {link} is not a symbolic link to a release; install the agent "
                                "as docs/install.md, Updates, says")
        prefix = Path(sys.prefix).resolve()
        if not prefix.is_relative_to(target.resolve()):
            raise UpdateRefused(f"this agent runs from {prefix}, not from {link} ({target}): a switch would not "
                                "change what runs")
        return target

    def _key(self) -> Any:
        if self.config.public_key_file is None:
            raise UpdateRefused("no updates.public_key_file: this store cannot verify a release")
        try:
            return bundle.load_public(self.config.public_key_file.read_bytes()[:64 * 1024])
        except (OSError, bundle.BundleError) as err:
            raise UpdateRefused(f"updates.public_key_file {self.config.public_key_file}: {err}") from err

    def _installed(self, desired: topics.DesiredRelease, home: Path) -> topics.ReleaseManifest | None:
        """The manifest of ``home`` when the release named is installed there already (a rollback to the one
        before): the same manifest, its signature still verifying, its venv there. None otherwise."""
        try:
            data = (home / bundle.MANIFEST).read_bytes()
            sig = (home / bundle.SIGNATURE).read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != desired.manifest_sha256:
            return None
        if not (home / "venv" / "bin" / "edge-agent").exists():
            return None
        try:
            bundle.verify(self._key(), data, sig)
            return bundle.parse_manifest(data)
        except bundle.BundleError:
            return None

    def _download(self, desired: topics.DesiredRelease, home: Path) -> topics.ReleaseManifest:
        """Download and verify the bundle into ``<home>/files`` (a new folder); UpdateRefused on anything wrong."""
        key = self._key()
        fetch = Fetcher(desired.base_url, self.agent.config.hub.ca_file)
        data = fetch.small(bundle.MANIFEST, topics.MAX_MANIFEST_BYTES)
        if hashlib.sha256(data).hexdigest() != desired.manifest_sha256:
            raise UpdateRefused("manifest.json's sha256 is not the one the hub named")
        sig = fetch.small(bundle.SIGNATURE, topics.MAX_SIGNATURE_BYTES)
        try:
            bundle.verify(key, data, sig)
            manifest = bundle.parse_manifest(data)
        except bundle.BundleError as err:
            raise UpdateRefused(str(err)) from err
        if manifest.version != desired.version:
            raise UpdateRefused(f"the manifest is of release {manifest.version}, not {desired.version}")
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if manifest.python != here:
            raise UpdateRefused(f"the release is built for Python {manifest.python}, this PC runs {here}")
        total, limit = sum(f.size for f in manifest.files), int(self.config.max_bundle_mb * 1024 * 1024)
        if total > limit:
            raise UpdateRefused(f"the bundle is {total} bytes, over updates.max_bundle_mb ({limit} bytes)")
        if not any(bundle.wheel_of(f.name) == ("edge-agent", manifest.version) for f in manifest.files):
            raise UpdateRefused(f"the bundle has no wheel of edge-agent {manifest.version}")
        self._clear(home)
        files = home / "files"
        files.mkdir(parents=True)
        try:
            for entry in manifest.files:
                fetch.file(entry, files / entry.name)
        except BaseException:
            self._clear(home)
            raise
        # Kept with the release: what it was installed from, checked again if the hub names it once more.
        (home / bundle.MANIFEST).write_bytes(data)
        (home / bundle.SIGNATURE).write_bytes(sig)
        return manifest

    def _clear(self, home: Path) -> None:
        """Remove an earlier attempt at ``home``; never the release in force or the one recorded before it."""
        keep = {p.resolve() for p in (link_target(self.config.current_link),
                                      Path(str((self.state.get("trial") or {}).get("previous_target") or "/")))
                if p is not None}
        if home.resolve() in keep:
            raise UpdateRefused(f"{home} is a release in use")
        if home.exists():
            shutil.rmtree(home)

    def _install(self, manifest: topics.ReleaseManifest, home: Path) -> None:
        venv = home / "venv"

        def run(*cmd: str) -> None:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise UpdateRefused(f"{Path(cmd[0]).name} {cmd[2] if len(cmd) > 2 else ''}: {err}", "failed") from err
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise UpdateRefused(f"{' '.join(cmd[1:3])} failed ({done.returncode}): {' | '.join(tail)[:800]}",
                                    "failed")

        try:
            run(sys.executable, "-m", "venv", str(venv))
            run(str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-input",
                "--disable-pip-version-check", "--no-cache-dir", "--find-links", str(home / "files"), manifest.requires)
            if not (venv / "bin" / "edge-agent").exists():
                raise UpdateRefused(f"the installed release has no {venv / 'bin' / 'edge-agent'}", "failed")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        log.info("update: release %s installed in %s", manifest.version, home)

    async def busy(self) -> str:
        """Why now is not a quiet moment ("" when it is): a basket with lines, a print job, a config being applied."""
        why = []
        baskets = self.agent.sessions.with_lines()
        if baskets:
            why.append(f"a basket with lines at {', '.join(baskets)}")
        counts = await self.agent.printing.counts()
        jobs = counts.get("queued", 0) + counts.get("printing", 0)
        if jobs:
            why.append(f"{jobs} print job{'s' if jobs != 1 else ''} queued or printing")
        if self.agent.configs.applying:
            why.append("a devices.yaml version is being applied")
        return "; ".join(why)

    async def _switch(self, desired: topics.DesiredRelease, current: Path, home: Path) -> None:
        self._switching = True
        v = desired.version
        self.state["trial"] = {"version": v, "previous": self.running, "previous_target": str(current),
                               "starts": 0, "schema": SCHEMA_VERSION, "rollout": desired.rollout, "by": desired.by,
                               "at": utcnow().isoformat(), "link": str(self.config.current_link)}
        self.state["handled"]["state"] = "switching"
        self._save()
        try:
            await asyncio.to_thread(point, self.config.current_link, home)
        except OSError as err:
            self._switching = False
            self.state["trial"] = None
            self.state["handled"]["state"] = "failed"
            self._result(v, desired.rollout, "failed", f"cannot point {self.config.current_link} at {home}: {err}")
            return
        log.warning("update: switched %s from %s to %s; stopping to be started on it", self.config.current_link,
                    self.running, v)
        await self._restart(self._result(v, desired.rollout, "switching", f"from {self.running}"))

    # Health of a release on trial ----------------------------------------------------

    async def _watch_health(self, trial: dict[str, Any]) -> None:
        need = self.config.healthy_after_s
        give_up = self._clock() + need * GIVE_UP_FACTOR + GIVE_UP_EXTRA_S
        ok_since: float | None = None
        last: list[str] = []
        while True:
            assessment = await health.assess(self.agent)
            now = self._clock()
            if assessment["status"] == "ok" and self.agent.hub_online:
                ok_since = now if ok_since is None else ok_since
                if now - ok_since >= need:
                    break
            else:
                ok_since = None
                last = [f"{r['subject']}: {r['code']}" for r in assessment["reasons"]] or ["the hub link is down"]
            if now >= give_up:
                await self._roll_back(f"release {self.running} was not healthy for {need:g} s within "
                                      f"{need * GIVE_UP_FACTOR + GIVE_UP_EXTRA_S:g} s: {'; '.join(last)[:500]}")
                return
            await self._sleep(HEALTH_EVERY_S)
        self.state["trial"] = None
        self.state["handled"] = {"version": self.running, "manifest_sha256": "", "state": "healthy"}
        log.info("update: release %s healthy after %g s", self.running, need)
        self._result(self.running, str(trial.get("rollout", "")), "healthy")

    async def _roll_back(self, why: str, exit_now: bool = False) -> None:
        trial = self.state["trial"]
        previous = Path(str(trial.get("previous_target") or ""))
        cannot = why_not_back(trial, self.agent.data_dir)
        if cannot is not None:
            log.error("update: %s; %s", why, cannot)
            self.state["trial"] = None
            self._result(self.running, str(trial.get("rollout", "")), "failed", f"{why}; {cannot}")
            return
        trial["rolled_back"], trial["reason"] = True, why
        self._save()
        await asyncio.to_thread(point, self.config.current_link, previous)
        log.error("update: %s; switched %s back to %s (%s)", why, self.config.current_link, previous,
                  trial.get("previous"))
        if exit_now:
            # At start, before the store or the link: nothing to finish.
            logging.shutdown()
            self._exit_now(EXIT_RESTART)
            return
        await self._restart(None)

    async def _restart(self, result: topics.UpdateResult | None) -> None:
        """Wait (bounded) for ``result`` to reach the broker, then stop as on SIGTERM with EXIT_RESTART."""
        link = self.agent.link
        if link is not None and result is not None:
            info = link.publish(link.topics.update_res, result.wire())
            if info is not None:
                await asyncio.to_thread(info.wait_for_publish, PUBLISH_WAIT_S)
        self.agent.exit_status = EXIT_RESTART
        self.stop_process()

    # Answers and state -----------------------------------------------------------------

    def _result(self, version: str, rollout: str, state: str, reason: str | None = None) -> topics.UpdateResult:
        result = topics.UpdateResult(version=version, rollout=rollout, state=state,
                                     reason=reason[:2000] if reason else None, running=self.running, at=utcnow())
        self.last_result = result
        self._save()
        if state != "switching":  # sent by _restart, which waits for the broker to have it
            self._publish(result)
        return result

    def _publish(self, result: topics.UpdateResult) -> None:
        link = self.agent.link
        if link is not None:
            link.publish(link.topics.update_res, result.wire())

    def _read(self) -> dict[str, Any]:
        return read_state(self.dir)

    def _save(self) -> None:
        self.state["last_result"] = self.last_result.model_dump(mode="json") if self.last_result else None
        write_state(self.dir, self.state)
