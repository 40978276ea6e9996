"""Browser tests: Debian's Chromium, headless, driven by Playwright (no browser download).

``console_env`` brings up, once per module, what the console shows: a real
Mosquitto, ``edge-hub run --http`` with fast alert rules, a real agent with
a TCP heartbeat device and an ESC/POS printer (both emulated in this
process), and 30 simulated stores (retained status and health, no agent: a
command to one of them times out). ``page`` is a fresh browser tab.

Screenshots go to the test's temp dir, or with ``UPDATE_SCREENSHOTS=1`` to
docs/screenshots/ (what docs/console.md shows).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.hub.broker import parse_broker_url
from sync.hub.console.simulate import Simulator
from sync.localbroker import LocalMosquitto

from support.agent import AgentProcess, config_dict, free_port, make_tls
from support.hubprocess import HubProcess
from support.printer import EmulatorThread

from browser.console_env import (CHROMIUM, COMMAND_TIMEOUT_S, HUB_TOKEN, ROOT, RULES, ConsoleEnv,
                                 HeartbeatThread)

@pytest.fixture(scope="module")
def console_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleEnv]:
    tmp = tmp_path_factory.mktemp("console")
    broker = LocalMosquitto(tmp / "mosquitto").start()
    made: list = []
    try:
        (tmp / "rules.yaml").write_text(RULES)
        (tmp / "tokens").write_text(f"store-it:{hashlib.sha256(HUB_TOKEN.encode()).hexdigest()}\n")
        http = free_port()
        hub = HubProcess(broker.url, f"sqlite:///{tmp}/hub.db", tmp / "hub.log")
        hub.args += ["--http", f"127.0.0.1:{http}", "--console-tokens", str(tmp / "tokens"),
                     "--alert-rules", str(tmp / "rules.yaml"), "--command-timeout", str(COMMAND_TIMEOUT_S)]
        made.append(hub.start())
        sim = Simulator(parse_broker_url(broker.url), 30, devices=10, trouble=0.3, offline=0.07, seed=3)
        sim.publish_status()
        sim.publish_health(trouble=False)  # then trouble: the timelines show a device going down
        sim.publish_health()
        sim.close()
        heartbeat = HeartbeatThread()
        made.append(heartbeat)
        printer = EmulatorThread(profile="epson-tm-t88").start()
        made.append(printer)
        devices = [{"id": "heartbeat-1", "kind": "sensor.heartbeat", "address": f"127.0.0.1:{heartbeat.port}",
                    "interval": 0.3, "timeout": 0.5},
                   {"id": "printer-1", "kind": "printer.escpos", "connection": "tcp",
                    "address": f"127.0.0.1:{printer.port}", "profile": "epson-tm-t88"}]
        (tmp / "agent").mkdir()
        agent = AgentProcess(tmp / "agent", config_dict(free_port(), devices, hub_url=broker.url))
        made.append(agent)
        agent.start()
        shots = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else tmp / "shots"
        shots.mkdir(parents=True, exist_ok=True)
        yield ConsoleEnv(f"http://127.0.0.1:{http}/", agent, heartbeat, printer, shots)
    finally:
        for part in reversed(made):
            part.close()
        broker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium for one module. Not longer: Playwright's sync API keeps an event loop
    running in the main thread while it is open, and every later test's asyncio.run() would fail."""
    from playwright.sync_api import expect, sync_playwright

    # expect() retries for 5 s by default: a click, the agent's answer and the redraw can take longer on a
    # busy machine. The bound costs nothing when the page is quick, which it is when the machine is idle.
    expect.set_options(timeout=30_000)
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/system-packages.sh test does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def spki_pin(key: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM key: what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes. It lets exactly that key's certificate
    through (still checked for names and dates), as a kiosk that pins the store's key would."""
    der = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def https_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent on HTTPS and WSS (a CA of the test's own) with a heartbeat device and a mirror
    (synthetic camera) whose screen station is kiosk-1."""
    tmp = tmp_path_factory.mktemp("https")
    heartbeat = HeartbeatThread()
    (tmp / "agent").mkdir()
    devices = [{"id": "heartbeat-1", "kind": "sensor.heartbeat", "address": f"127.0.0.1:{heartbeat.port}",
                "interval": 0.3, "timeout": 0.5},
               {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic", "station": "mirror-1",
                "kiosk": "kiosk-1", "width": 640, "height": 480, "session_gap": 60}]
    agent = AgentProcess(tmp / "agent", config_dict(free_port(), devices), tls=make_tls(tmp / "ca"))
    try:
        agent.import_catalog()
        agent.start()
        yield agent
    finally:
        agent.close()
        heartbeat.close()


@pytest.fixture(scope="module")
def https_browser(https_agent: AgentProcess) -> Iterator:
    """Headless Chromium that accepts the HTTPS agent's certificate by its key alone (no blanket
    --ignore-certificate-errors): any other certificate is still refused."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/system-packages.sh test does it)")
    pin = spki_pin(https_agent.tls.server.key)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=[f"--ignore-certificate-errors-spki-list={pin}"])
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh tab (no token stored) with a desktop-sized window; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
