"""The hub console's "Enroll a store" in headless Chromium against a real hub (``edge-hub run --http``): staff
pick a store id and its devices.yaml, get a one-time code with the command for the PC, see it listed as unused
(never the code again); a devices.yaml for another store is refused in words. The agent's own /console, the same
page, offers no enrollment. Every wait is Playwright's expect() on the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from support.agent import TOKENS, AgentProcess, config_dict, free_port
from support.hubprocess import HubProcess
from sync.localbroker import LocalMosquitto

pytestmark = pytest.mark.slow

HUB_TOKEN = "enroll-browser-token"
CODE = re.compile(r"^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$")


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, AgentProcess]]:
    tmp = tmp_path_factory.mktemp("enroll-browser")
    broker = LocalMosquitto(tmp / "mosquitto").start()
    made: list = []
    try:
        http = free_port()
        hub = HubProcess(broker.url, f"sqlite:///{tmp}/hub.db", tmp / "hub.log", env={"EDGE_HUB_CONSOLE_TOKEN": HUB_TOKEN})
        hub.args += ["--http", f"127.0.0.1:{http}"]
        made.append(hub.start())
        (tmp / "agent").mkdir()
        agent = AgentProcess(tmp / "agent", config_dict(free_port(), [], hub_url=broker.url))
        made.append(agent)
        agent.start()
        yield f"http://127.0.0.1:{http}/", agent
    finally:
        for p in reversed(made):
            p.close()
        broker.stop()


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).not_to_be_empty()


def devices_yaml(store: str) -> bytes:
    cfg = config_dict(8443, store_id=store)
    del cfg["hub"]
    return yaml.safe_dump(cfg).encode()


def test_staff_issue_a_code_from_the_hub_console(parts, browser: Browser, tmp_path: Path) -> None:
    hub_url, _ = parts
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, hub_url, HUB_TOKEN)
        page.click('a[data-nav="enroll"]')
        expect(page.locator("#enroll h1")).to_have_text("Enroll a store")

        page.fill("#enroll-store", "store-077")
        page.set_input_files("#enroll-file", files=[{"name": "devices.yaml", "mimeType": "text/yaml",
                                                     "buffer": devices_yaml("store-078")}])
        page.click("#enroll-form button[type=submit]")
        expect(page.locator("#enroll-error")).to_contain_text("store.id is 'store-078', not 'store-077'")

        page.set_input_files("#enroll-file", files=[{"name": "devices.yaml", "mimeType": "text/yaml",
                                                     "buffer": devices_yaml("store-077")}])
        page.click("#enroll-form button[type=submit]")
        expect(page.locator("#enroll-code")).to_have_text(CODE)
        code = page.locator("#enroll-code").inner_text()
        expect(page.locator("#enroll-cmd")).to_contain_text(f"--code {code} --store store-077")
        row = page.locator("#enroll-list tbody tr", has_text="store-077")
        expect(row).to_contain_text("unused")
        expect(page.locator("#enroll-list")).not_to_contain_text(code)
        assert code not in page.url
        assert code not in page.evaluate("JSON.stringify({...sessionStorage, ...localStorage})")
        page.screenshot(path=str(tmp_path / "console-enroll.png"), full_page=True)

        page.click('a[data-nav="fleet"]')
        page.click('a[data-nav="enroll"]')
        expect(page.locator("#enroll h1")).to_be_visible()
        expect(page.locator("#enroll-code")).to_have_count(0)  # leaving the view forgot the code
        assert errors == []
    finally:
        context.close()


def test_the_agents_console_offers_no_enrollment(parts, browser: Browser) -> None:
    _, agent = parts
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, agent.url + "/console", TOKENS["console"])
        expect(page.locator("#nav-enroll")).to_be_hidden()
        page.goto(agent.url + "/console#/enroll")
        expect(page.locator("#enroll")).to_have_count(0)
    finally:
        context.close()
