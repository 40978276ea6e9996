"""The health console in a real headless Chromium: it loads, shows an unplugged device and its
alert within a minute, staff take and resolve the alert, and remote commands round-trip or time out.

Every wait is Playwright's expect() with a timeout: it polls the page until
the condition holds, so a fast run takes seconds and a slow one fails with
what was on the page.
"""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.agent import TOKENS

from browser.console_env import COMMAND_TIMEOUT_S, HUB_TOKEN, ConsoleEnv

pytestmark = pytest.mark.slow


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)


def shot(page: Page, env: ConsoleEnv, name: str, full: bool = False) -> None:
    page.wait_for_timeout(300)  # let the last frame paint: a screenshot, not a synchronisation
    page.screenshot(path=str(env.shots / f"{name}.png"), full_page=full)


def test_an_unplugged_device_and_its_alert_show_within_a_minute(page: Page, console_env: ConsoleEnv):
    env = console_env
    sign_in(page, env.hub_url, HUB_TOKEN)
    row = page.locator('#fleet tr[data-store="store-test"]')
    expect(row).to_contain_text("2/2", timeout=30_000)  # both devices online
    expect(page.locator("#shown")).to_have_text("31 of 31 shown")
    expect(page.locator("#totals")).to_contain_text("31 stores")
    shot(page, env, "fleet")

    unplugged = time.monotonic()
    env.heartbeat.unplug()
    # Live: the row changes without a reload.
    expect(row.locator(".chip.offline")).to_contain_text("heartbeat-1 offline", timeout=60_000)
    page.click('a[data-nav="alerts"]')
    alert = page.locator('tr.alert[data-rule="device-offline"][data-subject="heartbeat-1"]')
    expect(alert).to_be_visible(timeout=60_000)
    elapsed = time.monotonic() - unplugged
    assert elapsed < 60, f"the alert took {elapsed:.0f} s"
    print(f"unplugged -> alert on the page: {elapsed:.1f} s")  # shown with -s; docs/console.md quotes it
    shot(page, env, "alerts")

    alert.locator('button[data-act="ack"]').click()
    expect(alert).to_contain_text("taken by store-it")
    expect(alert.locator('button[data-act="resolve"]')).to_have_count(0)  # the cause is still there

    page.goto(env.hub_url + "#/store/store-test")
    expect(page.locator('.tl-row[data-device="heartbeat-1"] .seg.offline')).to_have_count(1)
    env.heartbeat.plug()
    expect(page.locator('#devices tr[data-device="heartbeat-1"] .state')).to_have_text("online", timeout=30_000)
    resolve = page.locator('#store-alerts tr.alert[data-rule="device-offline"] button[data-act="resolve"]')
    expect(resolve).to_be_visible(timeout=30_000)
    resolve.click()
    expect(page.locator('#store-alerts tr.alert.resolved[data-rule="device-offline"]')).to_have_count(1)
    bar = page.locator('.tl-row[data-device="heartbeat-1"]')
    expect(bar.locator(".seg.offline")).to_have_count(1)
    expect(bar.locator(".seg").last).to_have_attribute("data-state", "online")


def test_the_filter_narrows_the_fleet(page: Page, console_env: ConsoleEnv):
    sign_in(page, console_env.hub_url, HUB_TOKEN)
    expect(page.locator("#shown")).to_have_text("31 of 31 shown")
    page.fill("#filter", "store-test")
    expect(page.locator("#shown")).to_have_text("1 of 31 shown")
    expect(page.locator('#fleet tr[data-store="store-test"]')).to_be_visible()
    page.fill("#filter", "")
    page.check("#problems")
    shown = int(page.locator("#shown").inner_text().split()[0])
    assert 0 < shown < 31  # the simulated stores with trouble, not the healthy ones
    shot(page, console_env, "fleet-problems")


def test_a_test_page_and_a_reopen_round_trip_and_a_silent_store_times_out(page: Page, console_env: ConsoleEnv):
    env = console_env
    sign_in(page, env.hub_url + "#/store/store-test", HUB_TOKEN)
    page.click('#devices tr[data-device="printer-1"] button[data-action="print_test_page"]')
    printed = page.locator('.command[data-state="ok"]', has_text="Print test page")
    expect(printed).to_contain_text('"job"', timeout=15_000)
    env.printer.wait_for(lambda emu: len(emu.receipts()) >= 1)  # and the emulated printer printed it
    page.click('#devices tr[data-device="heartbeat-1"] button[data-action="reopen"]')
    expect(page.locator('.command[data-state="ok"]', has_text="Reopen")).to_contain_text('"reopening": true',
                                                                                          timeout=15_000)
    expect(page.locator(".card", has_text="Store health")).to_contain_text("ok")
    expect(page.locator(".card", has_text="Print queue")).not_to_contain_text("not reported")
    shot(page, env, "store", full=True)

    page.goto(env.hub_url + "#/store/store-0001")  # simulated: no agent will answer
    page.click('button[data-device="agent"][data-action="status"]')
    waiting = page.locator(".command", has_text="Status")
    expect(waiting).to_contain_text("waiting")
    expect(waiting).to_contain_text(f"no answer within {COMMAND_TIMEOUT_S} s from store-0001",
                                    timeout=(COMMAND_TIMEOUT_S + 10) * 1000)
    shot(page, env, "command-timeout", full=True)


def test_the_store_view_shows_a_day_of_device_states(page: Page, console_env: ConsoleEnv):
    env = console_env
    fleet = httpx.get(env.hub_url + "api/fleet", headers={"Authorization": f"Bearer {HUB_TOKEN}"}).json()
    store, device = next((s["store"], p["id"]) for s in fleet["stores"] for p in s["problems"]
                         if p["state"] == "offline" and s["presence"] == "online")
    sign_in(page, f"{env.hub_url}#/store/{store}", HUB_TOKEN)
    bar = page.locator(f'.tl-row[data-device="{device}"]')
    expect(bar.locator(".seg")).to_have_count(2)
    expect(bar.locator(".seg.online")).to_have_count(1)
    expect(bar.locator(".seg.offline")).to_have_count(1)
    page.locator("#timeline").scroll_into_view_if_needed()
    # The axis: whole hours, then "now" at the right end; no label overlaps another or leaves the bar.
    ticks = page.locator(".tl-axis span")
    expect(ticks.last).to_have_text("now")
    texts = ticks.all_inner_texts()
    assert len(texts) >= 5 and all(t.endswith(":00") for t in texts[:-1]), texts
    axis = page.locator(".tl-axis").bounding_box()
    boxes = [ticks.nth(i).bounding_box() for i in range(len(texts))]
    assert all(b["x"] >= axis["x"] - 1 and b["x"] + b["width"] <= axis["x"] + axis["width"] + 1 for b in boxes)
    assert all(a["x"] + a["width"] < b["x"] for a, b in zip(boxes, boxes[1:])), boxes
    shot(page, env, "timeline")


def test_the_agent_serves_the_same_page_for_its_own_store(page: Page, console_env: ConsoleEnv):
    env = console_env
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on("websocket", lambda ws: urls.append(ws.url))
    sign_in(page, env.agent.url + "/console", TOKENS["console"])
    expect(page.locator("#devices tbody tr")).to_have_count(2)
    expect(page.locator(".store-head h1")).to_have_text("store-test")
    expect(page.locator('a[data-nav="fleet"]')).to_have_text("store-test")  # no other store to go to
    page.click('#devices tr[data-device="heartbeat-1"] button[data-action="reopen"]')
    expect(page.locator('.command[data-state="ok"]', has_text="Reopen")).to_be_visible(timeout=15_000)
    # The feed keeps it live: unplug, and the page shows it without a reload.
    env.heartbeat.unplug()
    try:
        expect(page.locator('#devices tr[data-device="heartbeat-1"] .state')).to_have_text("offline",
                                                                                           timeout=30_000)
        shot(page, env, "agent-console", full=True)
    finally:
        env.heartbeat.plug()
    # The feed was opened with a one-use ticket: the token never went in a URL.
    assert any("/v1/events?ticket=" in u for u in urls), urls
    assert not [u for u in urls if TOKENS["console"] in u or "token=" in u]


def test_a_printer_out_of_paper_makes_the_row_and_the_store_page_say_degraded(page: Page, console_env: ConsoleEnv):
    env = console_env
    sign_in(page, env.hub_url, HUB_TOKEN)
    row = page.locator('#fleet tr[data-store="store-test"]')
    expect(row).to_contain_text("2/2", timeout=30_000)
    expect(row.locator(".degraded")).to_have_count(0)
    env.printer.call(lambda emu: emu.set_state(paper_end=True))
    try:
        expect(row.locator(".degraded")).to_have_text("degraded", timeout=60_000)
        page.goto(env.hub_url + "#/store/store-test")
        tile = page.locator(".card", has_text="Store health")
        expect(tile.locator('li[data-code="printer_attention"]')).to_contain_text("paper", timeout=30_000)
        expect(page.locator("#device-alerts")).to_contain_text("paper_out")
        shot(page, env, "store-degraded")
    finally:
        env.printer.call(lambda emu: emu.set_state(paper_end=False))
    expect(page.locator(".card", has_text="Store health")).to_contain_text("ok", timeout=60_000)
