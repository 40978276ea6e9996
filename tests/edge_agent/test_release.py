"""Releases inside a real agent (store, supervisor, devices; no hub), with the health watch's clock and sleep
injected, and the download's limits against a real HTTP server on loopback.

The end-to-end path (a hub serving bundles, a stand-in for systemd, Mosquitto)
is tests/sync/test_update.py; here: a release on trial that stays degraded
goes back by itself when the injected clock passes the limit, a third start
goes back at once, the previous release reports the rollback, a release that
migrated the database is not sent back, and the limits on what is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.agent import config_dict, free_port
from support.printer import printer_device

from edge_agent import release
from edge_agent.agent import Agent
from edge_agent.config import parse
from edge_agent.release import Fetcher, Releases, UpdateRefused
from edge_agent.store import Store
from edge_agent.store.migrations import SCHEMA_VERSION
from sync import topics

HEARTBEAT = {"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.2}


class Clock:
    """An injected monotonic clock and sleep: a sleep moves the clock on at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Layout:
    """/opt/edge-agent in a temp dir: releases/<V>/venv/bin/edge-agent and the current link."""

    def __init__(self, root: Path):
        self.releases = root / "releases"
        self.link = root / "current"

    def release(self, version: str) -> Path:
        home = self.releases / version
        (home / "venv" / "bin").mkdir(parents=True, exist_ok=True)
        (home / "venv" / "bin" / "edge-agent").write_text("#!/bin/sh\n")
        return home

    def point(self, version: str) -> None:
        release.point(self.link, self.releases / version)

    def current(self) -> str:
        return Path(os.readlink(self.link)).name


def run(tmp_path: Path, devices: list[dict], trial: dict | None,
        body: Callable[[Agent, Releases, Layout, Clock], Awaitable[None]], *, migrated: bool = False) -> dict:
    """Start a real agent whose state says ``trial``; ``body`` runs once it is up; the exits asked for."""
    layout = Layout(tmp_path / "opt")
    layout.release("0.0.9")
    layout.release(Agent.version)
    layout.point(Agent.version)
    cfg = config_dict(free_port(), devices, store_id="store-rel")
    cfg["updates"] = {"releases_dir": str(layout.releases), "current_link": str(layout.link), "healthy_after_s": 5}
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data = tmp_path / "data"
    if trial is not None:
        (data / "release").mkdir(parents=True)
        (data / "release" / "state.json").write_text(json.dumps({"trial": trial}))
    out: dict[str, Any] = {"exits": [], "stops": 0}

    async def main() -> None:
        if migrated:  # the database as this release left it: at its schema
            store = Store(data / "store.db")
            await store.start()
            await store.stop()
        agent = Agent(parse(path.read_text()), data, config_path=path)
        clock = Clock()
        agent.releases = Releases(agent, agent.config.updates, sleep=clock.sleep, clock=clock,
                                  exit_now=out["exits"].append)

        def stop() -> None:
            out["stops"] += 1
        agent.releases.stop_process = stop
        await agent.start()
        try:
            await body(agent, agent.releases, layout, clock)
        finally:
            # Agent.stop ends the process with a status asked for: the test keeps it instead.
            out["exit_status"], agent.exit_status = agent.exit_status, None
            await agent.stop()
        saved = data / "release" / "state.json"
        out["state"] = json.loads(saved.read_text()) if saved.exists() else {}
        out["link"] = layout.current()

    asyncio.run(asyncio.wait_for(main(), 60))
    return out


def on_trial(starts: int = 0, **extra: Any) -> dict:
    return {"version": Agent.version, "previous": "0.0.9", "previous_target": "", "starts": starts,
            "schema": SCHEMA_VERSION, "rollout": "r-1", **extra}


async def until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.02)  # polling interval of a condition
    return value


def test_a_release_that_stays_degraded_goes_back_when_the_clock_passes_the_limit(tmp_path):
    # A printer nothing listens for: offline, the store degraded, for as long as the clock runs.
    trial = on_trial(previous_target=str(tmp_path / "opt" / "releases" / "0.0.9"))

    async def body(agent: Agent, rel: Releases, layout: Layout, clock: Clock) -> None:
        await until(lambda: agent.exit_status is not None)

    out = run(tmp_path, [dict(HEARTBEAT), printer_device(free_port(), id="dead")], trial, body)
    assert out["exit_status"] == release.EXIT_RESTART and out["stops"] == 1
    assert out["link"] == "0.0.9"
    t = out["state"]["trial"]
    assert t["rolled_back"] is True and t["starts"] == 1
    assert "was not healthy for 5 s within 45 s" in t["reason"] and "dead" in t["reason"]


def test_a_third_start_without_becoming_healthy_goes_back_at_once(tmp_path):
    trial = on_trial(starts=2, previous_target=str(tmp_path / "opt" / "releases" / "0.0.9"))

    async def body(agent: Agent, rel: Releases, layout: Layout, clock: Clock) -> None:
        pass

    out = run(tmp_path, [dict(HEARTBEAT)], trial, body)
    assert out["exits"] == [release.EXIT_RESTART]
    assert out["link"] == "0.0.9"
    assert "started 2 times without becoming healthy" in out["state"]["trial"]["reason"]


def test_the_previous_release_reports_the_rollback_and_does_not_take_that_version_again(tmp_path):
    trial = {"version": "9.9.9", "previous": Agent.version, "previous_target": "", "starts": 3, "rollout": "r-7",
             "rolled_back": True, "reason": "release 9.9.9 started 2 times without becoming healthy"}

    async def body(agent: Agent, rel: Releases, layout: Layout, clock: Clock) -> None:
        assert rel.last_result is not None
        assert rel.last_result.state == "rolled_back" and rel.last_result.version == "9.9.9"
        assert rel.last_result.running == Agent.version and rel.last_result.rollout == "r-7"
        rel.state["handled"] = {"version": "9.9.9", "manifest_sha256": "a" * 64, "state": "switching"}
        rel.take(topics.DesiredRelease(version="9.9.9", base_url="http://127.0.0.1:9/releases/9.9.9/",
                                       manifest_sha256="a" * 64))
        assert rel._task is None  # handled already: nothing started
        rel.take(topics.DesiredRelease(version=Agent.version, base_url="http://127.0.0.1:9/x/",
                                       manifest_sha256="b" * 64))
        assert rel._task is None  # the version running

    out = run(tmp_path, [dict(HEARTBEAT)], trial, body)
    assert out["state"]["trial"] is None and out["exits"] == [] and out["stops"] == 0


def test_a_release_that_migrated_the_database_is_not_sent_back(tmp_path):
    trial = on_trial(starts=2, schema=SCHEMA_VERSION - 1,
                     previous_target=str(tmp_path / "opt" / "releases" / "0.0.9"))

    async def body(agent: Agent, rel: Releases, layout: Layout, clock: Clock) -> None:
        assert rel.last_result is not None and rel.last_result.state == "failed"
        assert "not rolled back: the store database was migrated" in rel.last_result.reason

    out = run(tmp_path, [dict(HEARTBEAT)], trial, body, migrated=True)
    assert out["exits"] == [] and out["link"] == Agent.version


# What is read, and how much ----------------------------------------------------------------------

class Server:
    """A loopback HTTP server answering each path with a body and, optionally, a Content-Length."""

    def __init__(self, routes: dict[str, tuple[bytes, bool]]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body, length = routes.get(self.path.rsplit("/", 1)[-1], (b"", True))
                self.send_response(200 if self.path.rsplit("/", 1)[-1] in routes else 404)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if not length:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/releases/1.0.0/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Callable[[dict], Server]]:
    made: list[Server] = []

    def make(routes: dict) -> Server:
        made.append(Server(routes))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_limits_before_reading(server, tmp_path):
    big = b"x" * (topics.MAX_MANIFEST_BYTES + 1)
    s = server({"manifest.json": (big, True), "lying.json": (big, False), "a.whl": (b"abcdef", True)})
    fetch = Fetcher(s.base, None)
    with pytest.raises(UpdateRefused, match="over the limit"):
        fetch.small("manifest.json", topics.MAX_MANIFEST_BYTES)
    with pytest.raises(UpdateRefused, match="over the limit"):
        fetch.small("lying.json", topics.MAX_MANIFEST_BYTES)  # no Content-Length: read up to the limit only
    entry = topics.ReleaseFile(name="a.whl", size=3, sha256="0" * 64)
    with pytest.raises(UpdateRefused, match="the manifest says 3"):
        fetch.file(entry, tmp_path / "a.whl")
    with pytest.raises(UpdateRefused, match="answered 404"):
        fetch.small("nothing.json", 100)


def test_a_bundle_over_http_from_another_host_is_refused():
    with pytest.raises(UpdateRefused, match="is http on another host"):
        Fetcher("http://hub.example.net/releases/1.0.0/", None)
    Fetcher("http://[::1]:8/releases/1.0.0/", None)
    Fetcher("https://hub.example.net/releases/1.0.0/", None)


@pytest.mark.parametrize("body", [
    {"version": "../../etc", "base_url": "http://127.0.0.1/x/", "manifest_sha256": "0" * 64},
    {"version": "1.0.0", "base_url": "http://127.0.0.1/x/#frag/", "manifest_sha256": "0" * 64},
    {"version": "1.0.0", "base_url": "file:///etc/", "manifest_sha256": "0" * 64},
    {"version": "1.0.0", "base_url": "http://127.0.0.1/x/", "manifest_sha256": "0" * 64, "extra": 1},
])
def test_the_wire_refuses_bad_release_messages(body):
    with pytest.raises(topics.PayloadError):
        topics.validate(topics.DesiredRelease, body)


def test_a_manifest_names_files_by_one_path_segment_only():
    base = {"version": "1.0.0", "created_at": "2026-01-01T00:00:00Z", "python": "3.11",
            "requires": "edge-agent==1.0.0"}
    for name in ("../x.whl", "a/b.whl", "x.tar.gz", ".hidden.whl"):
        with pytest.raises(topics.PayloadError):
            topics.validate(topics.ReleaseManifest, {**base, "files": [{"name": name, "size": 1,
                                                                         "sha256": "0" * 64}]})
    with pytest.raises(topics.PayloadError, match="requires"):
        topics.validate(topics.ReleaseManifest, {**base, "requires": "evil==1",
                                                 "files": [{"name": "a.whl", "size": 1, "sha256": "0" * 64}]})


def test_a_release_installed_already_from_the_same_signed_manifest_is_not_downloaded_again(tmp_path):
    from datetime import datetime, timezone

    from sync import bundle

    private, public = bundle.new_key()
    (tmp_path / "release.pub").write_bytes(public)
    key = bundle.load_private(private)

    async def body(agent: Agent, rel: Releases, layout: Layout, clock: Clock) -> None:
        rel.config = rel.config.model_copy(update={"public_key_file": tmp_path / "release.pub"})
        home = layout.release("0.0.9")
        manifest = topics.ReleaseManifest(version="0.0.9", created_at=datetime.now(timezone.utc), python="3.11",
                                          files=[topics.ReleaseFile(name="edge_agent-0.0.9-py3-none-any.whl",
                                                                    size=1, sha256="0" * 64)],
                                          requires="edge-agent==0.0.9")
        data = bundle.manifest_bytes(manifest)
        (home / "manifest.json").write_bytes(data)
        (home / "manifest.sig").write_bytes(bundle.sign(key, data))
        sha = hashlib.sha256(data).hexdigest()
        named = topics.DesiredRelease(version="0.0.9", base_url="http://127.0.0.1:9/releases/0.0.9/",
                                      manifest_sha256=sha)
        assert rel._installed(named, home) == manifest
        assert rel._installed(named.model_copy(update={"manifest_sha256": "1" * 64}), home) is None
        (home / "manifest.sig").write_bytes(bundle.sign(bundle.load_private(bundle.new_key()[0]), data))
        assert rel._installed(named, home) is None  # signed by another key: downloaded again

    run(tmp_path, [dict(HEARTBEAT)], None, body)


def test_a_releases_dir_that_cannot_be_written_is_reported_failed_and_tried_again_next_time(tmp_path, server):
    from datetime import datetime, timezone

    from sync import bundle

    private, public = bundle.new_key()
    (tmp_path / "release.pub").write_bytes(public)
    wheel = b"not really a wheel"
    manifest = topics.ReleaseManifest(
        version="1.0.0", created_at=datetime.now(timezone.utc), python=f"{sys.version_info[0]}.{sys.version_info[1]}",
        files=[topics.ReleaseFile(name="edge_agent-1.0.0-py3-none-any.whl", size=len(wheel),
                                  sha256=hashlib.sha256(wheel).hexdigest())],
        requires="edge-agent==1.0.0")
    data = bundle.manifest_bytes(manifest)
    s = server({"manifest.json": (data, True), "manifest.sig": (bundle.sign(bundle.load_private(private), data), True),
                "edge_agent-1.0.0-py3-none-any.whl": (wheel, True)})
    (tmp_path / "a-file").write_text("")

    async def body(agent: Agent, rel: Releases, layout: Layout, clock: Clock) -> None:
        # Verified, then nowhere to put it: releases_dir is under a plain file.
        rel.config = rel.config.model_copy(update={"public_key_file": tmp_path / "release.pub",
                                                   "releases_dir": tmp_path / "a-file" / "releases"})
        named = topics.DesiredRelease(version="1.0.0", base_url=s.base, manifest_sha256=hashlib.sha256(data).hexdigest())
        rel.take(named)
        await until(lambda: rel.last_result is not None and rel.last_result.state == "failed")
        assert "cannot install into" in rel.last_result.reason
        assert rel.state["handled"] is None  # the same message, sent again, tries again

    run(tmp_path, [dict(HEARTBEAT)], None, body)


def test_a_release_that_refuses_the_config_is_counted_and_its_third_start_goes_back(tmp_path):
    # The new release dies before the agent is built (here: it refuses the store's devices.yaml), so boot()
    # never runs: edge-agent run counts the start first thing, and the third goes back at once.
    layout = Layout(tmp_path / "opt")
    previous = layout.release("0.0.9")
    layout.release(Agent.version)
    layout.point(Agent.version)
    data = tmp_path / "data"
    (data / "release").mkdir(parents=True)
    trial = on_trial(previous_target=str(previous), link=str(layout.link))
    (data / "release" / "state.json").write_text(json.dumps({"trial": trial}))
    bad = tmp_path / "devices.yaml"
    bad.write_text("store:\n  id: store-rel\ndevices:\n  - id: p\n    kind: printer.nonesuch\n")

    def start() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(bad),
                               "--data-dir", str(data)], capture_output=True, text=True, timeout=120)

    def state() -> dict:
        return json.loads((data / "release" / "state.json").read_text())["trial"]

    for n in (1, 2):
        done = start()
        assert done.returncode == 2, done.stderr  # the config's problem, as edge-agent check says it
        assert "devices.yaml:" in done.stderr
        assert state()["starts"] == n and not state().get("rolled_back")
        assert layout.current() == Agent.version
    done = start()
    assert done.returncode == release.EXIT_RESTART, done.stderr
    assert layout.current() == "0.0.9"
    t = state()
    assert t["rolled_back"] is True and t["starts"] == 3
    assert t["reason"] == f"release {Agent.version} started 2 times without becoming healthy"
    assert "switched" in done.stderr and "devices.yaml" not in done.stderr  # gone back before reading it


def test_count_start_leaves_a_rollback_it_cannot_do_to_the_agent(tmp_path):
    # No previous release on disk: nothing to point at here; boot() then says why to the hub (failed).
    layout = Layout(tmp_path / "opt")
    layout.release(Agent.version)
    layout.point(Agent.version)
    data = tmp_path / "data"
    (data / "release").mkdir(parents=True)
    trial = on_trial(starts=2, previous_target=str(tmp_path / "gone"), link=str(layout.link))
    (data / "release" / "state.json").write_text(json.dumps({"trial": trial}))
    assert release.count_start(data, Agent.version) is None
    saved = json.loads((data / "release" / "state.json").read_text())["trial"]
    assert saved["starts"] == 3 and saved["counted_by"] == os.getpid() and not saved.get("rolled_back")
    assert layout.current() == Agent.version
    # Another release's trial, or none: nothing counted.
    assert release.count_start(data, "0.0.1") is None
    assert json.loads((data / "release" / "state.json").read_text())["trial"]["starts"] == 3
