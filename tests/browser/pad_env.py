"""What the PAD's browser tests start and share: an HTTPS agent linked to its own Mosquitto, and headless Chromium
that trusts that agent's certificate by its key alone.

Imported by tests/browser/test_pad_browser.py and test_pad_newcomer_browser.py (as console_env.py is by the
console's tests); each module keeps its own fixtures, screen size and devices.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from support.agent import AgentProcess, config_dict, free_port, make_tls
from support.hubclient import HubClient
from support.mosquitto import Mosquitto

from browser.console_env import CHROMIUM


@contextmanager
def linked_agent(tmp: Path, devices: list[dict] | None = None) -> Iterator[tuple[AgentProcess, HubClient]]:
    """(agent, hub): an HTTPS agent (its CA in ``tmp/ca``) with the demo catalog and ``devices``, linked to a
    Mosquitto of its own, and the hub's side of that broker; yielded once the agent says it is online."""
    broker = Mosquitto(tmp / "mosquitto").start()
    made: list = []
    try:
        (tmp / "agent").mkdir()
        agent = AgentProcess(tmp / "agent", config_dict(free_port(), devices, hub_url=broker.url),
                             tls=make_tls(tmp / "ca"))
        made.append(agent)
        agent.import_catalog()
        agent.start()
        hub = HubClient(broker.port, agent.config["store"]["id"])
        made.append(hub)
        hub.expect("status", lambda s: s["state"] == "online")
        yield agent, hub
    finally:
        for part in reversed(made):
            part.close()
        broker.stop()


def spki_pin(key: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): Chromium trusts exactly this key's certificate, as a PAD
    that trusts the store's CA would (tests/browser/conftest.py does the same for its agent)."""
    der = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextmanager
def playwright_session() -> Iterator[Playwright]:
    """Playwright, with Chromium there and a 30 s expect timeout (its sync API keeps an event loop running
    while it is open)."""
    expect.set_options(timeout=30_000)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/system-packages.sh test does it)")
    with sync_playwright() as p:
        yield p


def launch(playwright: Playwright, agent: AgentProcess, *args: str) -> Browser:
    """Headless Chromium that trusts ``agent``'s certificate by its key alone."""
    pin = spki_pin(agent.tls.server.key)
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=[f"--ignore-certificate-errors-spki-list={pin}", *args])
