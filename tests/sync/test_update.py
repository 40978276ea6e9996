"""Signed releases and the agent's self-update, end to end on real processes.

What is real: Mosquitto, the reference hub (``edge-hub run --http ... --releases
DIR``) serving bundles built by ``edge-hub release build`` with a key from
``edge-hub release keygen``, the agent's own wheels built from a copy of this
source tree with ``pip wheel . --no-deps`` (0.1.0 as it is, 0.2.0 with its
version bumped, 0.3.0 bumped and broken: its agent fails at start), venvs
made by the agent itself, and a stand-in for systemd that runs
``current/venv/bin/edge-agent run`` through the link and starts it again after
exit 75 or a crash, as ``Restart=on-failure`` does.

One shortcut, said here: the bundles hold only the agent's wheel, and every
process of the store PC runs with PYTHONPATH naming a folder of links to the
test venv's installed dependencies (not the agent itself). So the new
releases' venvs, made and filled with ``pip install --no-index`` by the agent,
find fastapi, pydantic and the rest there instead of rebuilding them: the
test's stand-in for ``--system-site-packages``. pip sees them as installed
and installs the agent's wheel alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from support.agent import TOKENS, AgentProcess, config_dict, free_port
from support.hubclient import HubClient
from support.hubprocess import HubProcess
from support.printer import EmulatorThread, printer_device
from support.storepcs import wait_for
from sync.hub import cli as hub_cli
from sync.hub.db import open_db

ROOT = Path(__file__).resolve().parents[2]
STORE = "store-upd"
HUB_TOKEN = "test-hub-console-token"
HEARTBEAT = {"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.5}
BROKEN = 'raise RuntimeError("release 0.3.0 is broken: it cannot start")'


# Wheels and the store PC's Python ------------------------------------------------------------

def _source_copy(dest: Path, version: str, broken: bool = False) -> Path:
    """A copy of this source tree (what git lists, tests left out) as release ``version``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if name.startswith(("tests/", "bench/", "docs/")) or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, dest / name)
    py = dest / "pyproject.toml"
    py.write_text(py.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1))
    init = dest / "edge_agent" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', f'__version__ = "{version}"', 1))
    if broken:
        agent = dest / "edge_agent" / "agent.py"
        text = agent.read_text()
        hook = "        await self.releases.boot()\n"
        assert hook in text
        agent.write_text(text.replace(hook, hook + f"        {BROKEN}\n", 1))
    return dest


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{version: wheelhouse}``: the agent's wheel as 0.1.0, 0.2.0 and a broken 0.3.0, built by pip."""
    base = tmp_path_factory.mktemp("wheels")
    out = {}
    for version, broken in (("0.1.0", False), ("0.2.0", False), ("0.3.0", True)):
        src = _source_copy(base / f"src-{version}", version, broken)
        house = base / f"wheels-{version}"
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                               "-w", str(house), str(src)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert [p.name for p in house.iterdir()] == [f"edge_agent-{version}-py3-none-any.whl"]
        out[version] = house
    return out


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of links to the test venv's installed packages, the agent itself left out (see the docstring)."""
    site = Path(sysconfig.get_paths()["purelib"])
    folder = tmp_path_factory.mktemp("deps")
    for entry in site.iterdir():
        if entry.name.lower().startswith(("edge_agent", "__editable__", "_distutils_hack", "distutils-precedence")):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


class Systemd:
    """The stand-in for systemd: runs ``current/venv/bin/edge-agent run`` and starts it again after a
    non-zero exit or a crash (``Restart=on-failure``); a clean exit 0 (after SIGTERM) ends it."""

    def __init__(self, opt: Path, config: Path, data: Path, env: dict[str, str], log: Path):
        self.cmd = [str(opt / "current" / "venv" / "bin" / "edge-agent"), "run", "--config", str(config),
                    "--data-dir", str(data)]
        self.env, self.log = env, log
        self.exits: list[int] = []
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Systemd":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
                code = self.proc.wait()
            self.exits.append(code)
            if code == 0:
                return

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._thread.join(30)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Rig:
    """A broker, a hub serving the releases, and a store PC laid out as docs/install.md, Updates, says."""

    def __init__(self, tmp: Path, broker, wheels: dict[str, Path], deps: Path, devices: list[dict] | None = None):
        self.tmp, self.broker, self.wheels, self.deps = tmp, broker, wheels, deps
        self.keys = tmp / "keys"
        assert hub_cli.main(["release", "keygen", "--out", str(self.keys)]) == 0
        self.releases = tmp / "hub-releases"
        for v in ("0.2.0", "0.3.0"):
            self.build(v, wheels[v])
        self.http_port = free_port()
        self.db_url = f"sqlite:///{tmp / 'hub.db'}"
        self.hub = HubProcess(broker.url, self.db_url, tmp / "hub.log", env={"EDGE_HUB_CONSOLE_TOKEN": HUB_TOKEN})
        self.hub.args += ["--http", f"127.0.0.1:{self.http_port}", "--releases", str(self.releases)]
        self.hub.start()
        self.watch = HubClient(broker.port, STORE)
        # The store PC: /opt/edge-agent as releases/ and the current link, its state dir, its config.
        self.opt = tmp / "opt"
        self.pc_releases = self.opt / "releases"
        self.env = {**os.environ, "PYTHONPATH": str(deps), "PYTHONUNBUFFERED": "1"}
        for key in ("EDGE_CONFIG", "EDGE_DATA_DIR", "EDGE_HUB_URL", "EDGE_API_LISTEN", "EDGE_STORE_ID",
                    "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
            self.env.pop(key, None)
        self.port = free_port()
        self.config = config_dict(self.port, devices if devices is not None else [dict(HEARTBEAT)],
                                  store_id=STORE, hub_url=broker.url)
        self.config["updates"] = {"public_key_file": str(self.keys / "release.pub"),
                                  "releases_dir": str(self.pc_releases), "current_link": str(self.opt / "current"),
                                  "healthy_after_s": 2, "max_bundle_mb": 50}
        self.config_path = tmp / "devices.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.data = tmp / "data"
        self.systemd: Systemd | None = None

    def build(self, version: str, house: Path, key: Path | None = None) -> None:
        """``edge-hub release build`` from ``house``."""
        assert hub_cli.main(["release", "build", "--version", version, "--out", str(self.releases), "--key",
                             str(key or self.keys / "release.key"), "--wheelhouse", str(house)]) == 0

    def install_first(self) -> None:
        """Release 0.1.0 installed by hand as docs/install.md says, and the link to it."""
        venv = self.pc_releases / "0.1.0" / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=self.env)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps", "-q",
                        "--disable-pip-version-check", str(next(self.wheels["0.1.0"].iterdir()))],
                       check=True, env=self.env)
        (self.opt / "current").symlink_to(self.pc_releases / "0.1.0")

    def boot(self) -> Systemd:
        self.systemd = Systemd(self.opt, self.config_path, self.data, self.env, self.tmp / "agent.log").start()
        wait_for("the agent's first status at the hub", lambda: self.running(), 90)
        return self.systemd

    def running(self) -> str | None:
        """The version in the store's last online status at the hub."""
        db = open_db(self.db_url)
        try:
            row = db.status_health(STORE)
        finally:
            db.close()
        return row["status_version"] if row and row["status"] == "online" else None

    def offer(self, version: str, rollout: str = "r-1") -> None:
        """``hub/{store}/update``, retained, as a rollout sends it."""
        manifest = (self.releases / version / "manifest.json").read_bytes()
        body = {"version": version, "base_url": f"http://127.0.0.1:{self.http_port}/releases/{version}/",
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(), "rollout": rollout, "by": "test"}
        self.watch.client.publish(f"hub/{STORE}/update", json.dumps(body).encode(), qos=1,
                                  retain=True).wait_for_publish(5)

    def result(self, version: str, state: str, timeout: float = 180.0) -> dict:
        """The next ``update/res`` for ``version`` in ``state`` (earlier states pass by)."""
        return self.watch.expect("update/res", lambda r: r["version"] == version and r["state"] == state, timeout)

    def link(self) -> str:
        return Path(os.readlink(self.opt / "current")).name

    def close(self) -> None:
        if self.systemd is not None:
            self.systemd.stop()
        self.watch.close()
        self.hub.close()


@pytest.fixture
def rig_factory(tmp_path: Path, mosquitto, wheels, deps) -> Iterator:
    made: list[Rig] = []

    def make(**kw) -> Rig:
        rig = Rig(tmp_path, mosquitto, wheels, deps, **kw)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def test_release_served_by_the_hub_with_names_from_the_manifest_only(rig_factory) -> None:
    rig = rig_factory()
    base = f"http://127.0.0.1:{rig.http_port}/releases"
    with httpx.Client(timeout=10) as c:
        manifest = c.get(f"{base}/0.2.0/manifest.json")
        assert manifest.status_code == 200
        body = manifest.json()
        assert body["version"] == "0.2.0" and body["requires"] == "edge-agent==0.2.0"
        assert manifest.content == (rig.releases / "0.2.0" / "manifest.json").read_bytes()
        wheel = body["files"][0]
        got = c.get(f"{base}/0.2.0/{wheel['name']}")
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == wheel["sha256"]
        assert c.get(f"{base}/0.2.0/manifest.sig").status_code == 200
        for path in ("/0.2.0/..%2F..%2Fhub.db", "/0.2.0/%2E%2E", "/..%2F0.2.0/manifest.json", "/0.9.0/manifest.json",
                     "/0.2.0/other.whl", "/0.2.0/", "/x/manifest.json"):
            assert c.get(base + path).status_code == 404, path
    assert hub_cli.main(["release", "list", "--releases", str(rig.releases)]) == 0
    # A release is never rebuilt, and a wheelhouse without the agent at that version is refused.
    assert hub_cli.main(["release", "build", "--version", "0.2.0", "--out", str(rig.releases), "--key",
                         str(rig.keys / "release.key"), "--wheelhouse", str(rig.wheels["0.2.0"])]) == 2
    assert hub_cli.main(["release", "build", "--version", "0.4.0", "--out", str(rig.releases), "--key",
                         str(rig.keys / "release.key"), "--wheelhouse", str(rig.wheels["0.2.0"])]) == 2
    assert not (rig.releases / "0.4.0").exists()
    assert (rig.keys / "release.key").stat().st_mode & 0o777 == 0o600
    key = (rig.keys / "release.key").read_bytes()
    assert hub_cli.main(["release", "keygen", "--out", str(rig.keys)]) == 2  # never over a key in use
    assert (rig.keys / "release.key").read_bytes() == key


def test_update_applied_then_a_broken_release_rolled_back(rig_factory) -> None:
    rig = rig_factory()
    rig.install_first()
    systemd = rig.boot()
    assert rig.running() == "0.1.0"

    rig.offer("0.2.0")
    rig.result("0.2.0", "downloading")
    rig.result("0.2.0", "installed")
    switching = rig.result("0.2.0", "switching")
    assert switching["running"] == "0.1.0"
    healthy = rig.result("0.2.0", "healthy")
    assert healthy["running"] == "0.2.0"
    assert rig.link() == "0.2.0"
    assert (rig.pc_releases / "0.1.0" / "venv" / "bin" / "edge-agent").exists()  # the previous one stays
    wait_for("the hub's status naming 0.2.0", lambda: rig.running() == "0.2.0", 60)
    assert 75 in systemd.exits

    # The same version again does nothing.
    rig.offer("0.2.0", rollout="r-2")
    wait_for("the agent saying it runs 0.2.0 already",
             lambda: "release 0.2.0 is the one running; nothing to do" in systemd.text(), 30)

    # 0.3.0 cannot start: two crashes, then the third start switches back and 0.2.0 says why.
    rig.offer("0.3.0", rollout="r-3")
    rig.result("0.3.0", "switching")
    back = rig.result("0.3.0", "rolled_back", timeout=240)
    assert back["running"] == "0.2.0" and back["rollout"] == "r-3"
    assert "started 2 times without becoming healthy" in back["reason"]
    assert rig.link() == "0.2.0"
    assert [c for c in systemd.exits if c not in (0, 75)], systemd.exits  # the crashes
    wait_for("the hub's status naming 0.2.0 again", lambda: rig.running() == "0.2.0", 60)
    # The retained 0.3.0 comes again at each connect: not taken again.
    wait_for("0.3.0 left alone", lambda: "release 0.3.0 was handled already" in systemd.text(), 60)


def test_bad_signature_and_tampered_wheel_refused(rig_factory, tmp_path: Path) -> None:
    rig = rig_factory()
    # 0.4.0 signed with another key; 0.5.0 signed right, then one byte of its wheel changed at the hub.
    other = tmp_path / "other-keys"
    assert hub_cli.main(["release", "keygen", "--out", str(other)]) == 0
    for version, key in (("0.4.0", other / "release.key"), ("0.5.0", None)):
        house = tmp_path / f"house-{version}"
        house.mkdir()
        shutil.copyfile(next(rig.wheels["0.2.0"].iterdir()), house / f"edge_agent-{version}-py3-none-any.whl")
        rig.build(version, house, key)
    wheel = rig.releases / "0.5.0" / "edge_agent-0.5.0-py3-none-any.whl"
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    # This agent runs from the test venv, not through a link: a bundle is verified before anything else.
    agent = AgentProcess(tmp_path / "plain", rig.config)
    agent.workdir.mkdir()
    agent.start()
    try:
        rig.offer("0.4.0")
        refused = rig.result("0.4.0", "refused", 60)
        assert "does not verify" in refused["reason"]
        rig.offer("0.5.0")
        refused = rig.result("0.5.0", "refused", 60)
        assert "sha256 is not the manifest's" in refused["reason"]
        assert not (rig.pc_releases / "0.4.0").exists() and not (rig.pc_releases / "0.5.0").exists()
        # A message naming another manifest than the hub's is refused as well.
        body = {"version": "0.2.0", "base_url": f"http://127.0.0.1:{rig.http_port}/releases/0.2.0/",
                "manifest_sha256": "0" * 64, "rollout": "r-x"}
        rig.watch.send("update", body)
        refused = rig.result("0.2.0", "refused", 60)
        assert "manifest.json's sha256" in refused["reason"]
    finally:
        agent.close()


def test_update_waits_while_a_print_job_is_queued(rig_factory) -> None:
    port = free_port()
    printer = EmulatorThread(port=port)
    rig = rig_factory(devices=[dict(HEARTBEAT), printer_device(port)])
    rig.install_first()
    rig.boot()
    # The printer is off: a test page stays queued.
    with httpx.Client(base_url=f"http://127.0.0.1:{rig.port}", timeout=10,
                      headers={"Authorization": f"Bearer {TOKENS['console']}"}) as c:
        assert c.post("/v1/print", json={"device": "backroom"}).status_code == 202
    rig.offer("0.2.0")
    rig.result("0.2.0", "installed")
    waiting = rig.result("0.2.0", "waiting_quiet")
    assert "1 print job queued or printing" in waiting["reason"]
    assert rig.link() == "0.1.0"
    # The printer comes on, prints the page: the quiet moment, and the switch.
    printer.start()
    try:
        rig.result("0.2.0", "switching", 120)
        assert printer.receipts()
        rig.result("0.2.0", "healthy")
        assert rig.link() == "0.2.0"
    finally:
        printer.close()
