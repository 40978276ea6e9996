"""The PAD on a small phone (360x640) as a newcomer meets it: what a return refunds, the member's balance, the
count, the pairing field and its messages, a camera that is not there.

A real HTTPS agent linked to a real Mosquitto (the hub's member cards), and
headless Chromium that trusts the agent's certificate by its key.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from support.agent import AgentProcess
from support.flows import LIPSTICK, NUDE, card, hub_event, sale, sync_point
from support.hubclient import HubClient

from browser.pad_env import launch, linked_agent, playwright_session

SMALL = {"viewport": {"width": 360, "height": 640}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@dataclass
class Store:
    agent: AgentProcess
    hub: HubClient


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with linked_agent(tmp_path_factory.mktemp("pad-small")) as (agent, hub):
        yield Store(agent, hub)


@pytest.fixture(scope="module")
def chromium(store: Store) -> Iterator[Browser]:
    with playwright_session() as p:
        browser = launch(p, store.agent)
        yield browser
        browser.close()


def _code(agent: AgentProcess, name: str) -> dict:
    with agent.client("admin") as admin:
        r = admin.post("/v1/pairing", json={"name": name, "zones": []})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def pad(store: Store, chromium: Browser) -> Iterator[Page]:
    """A paired PAD at 360x640 whose page errors fail the test."""
    context = chromium.new_context(**SMALL)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(_code(store.agent, "pad-small")["pair_url"])
    expect(page.locator("#live")).to_have_text("live")
    yield page
    context.close()
    assert not errors, errors


def _tab(pad: Page, name: str) -> None:
    pad.get_by_role("tab", name=re.compile(f"^{name}")).click()


def _give_card(store: Store, member_id: str, points: int) -> None:
    store.hub.send("members", [hub_event("retail.member.card", card(member_id, points=points))])
    sync_point(store.hub, f"card-{member_id}")


def test_the_tab_labels_fit_on_a_small_phone(pad: Page):
    for label in pad.locator("#tabs [role=tab] span").all():
        assert label.evaluate("s => s.scrollWidth <= s.clientWidth"), label.text_content()


def test_a_return_shows_what_it_refunds_with_points_and_the_bar_covers_no_button(store: Store, pad: Page):
    """A lipstick (159.00) paid 154.00 and 500 points: the PAD says Refund CNY 154.00 + 500 points, which the
    return then refunds; the refund bar leaves the quantity buttons free; the slip's barcode is named."""
    _give_card(store, "M-0042", 2000)
    with store.agent.client("associate") as c:
        sold = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-0042", points_redeemed=500))
    assert sold.status_code == 201, sold.text
    _tab(pad, "Returns")
    pad.fill("#receipt-code", f"RS1:{sold.json()['sale_id']}")
    pad.get_by_role("button", name="Find the sale").click()
    expect(pad.locator("#sale-head .nowrap")).to_have_text("M-0042")  # an id is never broken mid-id
    plus = pad.locator("#sale-lines li").first.get_by_role("button", name=re.compile("^One more"))
    plus.click()
    expect(pad.locator("#refund-total")).to_have_text("Refund CNY 154.00 + 500 points")
    bar = pad.locator("#refund-bar").bounding_box()
    for button in pad.locator("#sale-lines button").all():
        box = button.bounding_box()
        assert box["y"] + box["height"] <= bar["y"] or box["y"] >= bar["y"] + bar["height"], (box, bar)
    pad.get_by_role("button", name="Refund", exact=True).click()
    expect(pad.locator("#refunded")).to_contain_text("Refund CNY 154.00 by card")
    expect(pad.locator("#refunded")).to_contain_text("500 points given back")
    returned = re.search(r"Return ([0-9a-f-]{36})", pad.locator("#refunded").text_content()).group(1)
    pad.fill("#receipt-code", f"{uuid.UUID(returned).int:040d}")  # what the slip's barcode carries
    pad.get_by_role("button", name="Find the sale").click()
    expect(pad.locator("#returns-msg")).to_have_text(
        "This is a return slip, not a sale: scan the barcode on the sale's receipt.")


def test_several_units_at_once_refund_to_the_cent_what_the_screen_said(store: Store, pad: Page):
    """Three nudes (567.00) paid 557.00 and 1000 points: one unit's share is 185.67, three at once 557.00 (not
    3 x 185.67): the screen says what the return then refunds, for two units and then the last one."""
    _give_card(store, "M-STEPS", 1000)
    with store.agent.client("associate") as c:
        sold = c.post("/v1/sales", json=sale((NUDE, 3), member_id="M-STEPS", points_redeemed=1000))
    assert sold.status_code == 201 and sold.json()["total"] == "557.00", sold.text
    _tab(pad, "Returns")
    pad.fill("#receipt-code", sold.json()["sale_id"])
    pad.get_by_role("button", name="Find the sale").click()
    plus = pad.locator("#sale-lines li").first.get_by_role("button", name=re.compile("^One more"))
    for _ in range(3):
        plus.click()
    expect(pad.locator("#refund-total")).to_have_text("Refund CNY 557.00 + 1000 points")
    pad.locator("#sale-lines li").first.get_by_role("button", name=re.compile("^One less")).click()
    said = pad.locator("#refund-total").text_content()
    pad.get_by_role("button", name="Refund", exact=True).click()
    expect(pad.locator("#refunded")).to_be_visible()
    money, points = re.fullmatch(r"Refund (CNY [\d.]+) \+ (\d+) points", said).groups()
    expect(pad.locator("#refunded")).to_contain_text(f"Refund {money} by card")
    expect(pad.locator("#refunded")).to_contain_text(f"{points} points given back")
    pad.fill("#receipt-code", sold.json()["sale_id"])
    pad.get_by_role("button", name="Find the sale").click()
    pad.locator("#sale-lines li").first.get_by_role("button", name=re.compile("^One more")).click()
    said = pad.locator("#refund-total").text_content()
    pad.get_by_role("button", name="Refund", exact=True).click()
    money, points = re.fullmatch(r"Refund (CNY [\d.]+) \+ (\d+) points", said).groups()
    expect(pad.locator("#refunded")).to_contain_text(f"Refund {money} by card")
    expect(pad.locator("#refunded")).to_contain_text(f"{points} points given back")


def test_the_member_card_shows_the_receipts_balance_with_the_pending_part(store: Store, pad: Page):
    _give_card(store, "M-1308", 1000)
    with store.agent.client("associate") as c:
        sold = c.post("/v1/sales", json=sale((LIPSTICK, 2), member_id="M-1308")).json()
        view = c.get("/v1/members/M-1308").json()
    earned = sold["points_earned"]
    assert (view["points_balance"], view["points_pending"]) == (1000 + earned, earned)
    pad.reload()
    expect(pad.locator("#live")).to_have_text("live")
    _tab(pad, "Members")
    expect(pad.locator('[data-member="M-1308"] .points')).to_have_text(f"{1000 + earned} points ({earned} pending)")


def test_count_leaves_the_counted_field_empty_with_the_stores_count_beside_it(pad: Page):
    _tab(pad, "Count")
    pad.fill("#stock-code", LIPSTICK)
    pad.locator("#stock-form").get_by_role("button", name="Find").click()
    expect(pad.locator("#stock-now")).to_have_text(re.compile(r"^Store: \d+$"))
    expect(pad.locator("#counted")).to_have_value("")
    pad.get_by_role("button", name="Save the count").click()
    expect(pad.locator("#stock-msg")).to_have_text("Type how many are on the shelf (0 if none).")
    pad.locator("#count-plus").click()
    expect(pad.locator("#counted")).to_have_value("1")


def test_a_camera_that_is_not_there_is_said_in_words(store: Store, chromium: Browser):
    context = chromium.new_context(**SMALL)
    context.grant_permissions(["camera"])
    page = context.new_page()
    page.add_init_script("navigator.mediaDevices.getUserMedia = () => "
                         "Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));")
    page.goto(f"{store.agent.url}/pad")
    page.get_by_role("button", name="Scan the QR code").click()
    expect(page.locator("#camera-msg")).to_have_text(
        "No camera found on this device: type the code or use a ring scanner.")
    context.close()


def test_the_pairing_field_formats_the_code_and_says_a_used_one_in_a_sentence(store: Store, chromium: Browser):
    code = _code(store.agent, "pad-twice")["code"]
    first = chromium.new_context(**SMALL)
    page = first.new_page()
    page.goto(f"{store.agent.url}/pad")
    expect(page.locator("#pairing-why")).to_be_hidden()
    page.locator("#pair-code").press_sequentially(code.replace("-", "").lower())
    expect(page.locator("#pair-code")).to_have_value(code)
    page.get_by_role("button", name="Pair", exact=True).click()
    expect(page.locator("#live")).to_have_text("live")
    again = chromium.new_context(**SMALL)
    other = again.new_page()
    other.goto(f"{store.agent.url}/pad")
    other.locator("#pair-code").fill(code)
    other.get_by_role("button", name="Pair", exact=True).click()
    expect(other.locator("#pair-msg")).to_have_text(re.compile(r"^This pairing code was already used.*\.$"))
    again.close()
    # Unpaired by an admin: the notice says what happened; how to get a code is said once, under it.
    with store.agent.client("admin") as admin:
        assert admin.delete("/v1/paired/pad-twice").status_code == 200
    page.reload()
    expect(page.locator("#pairing-why")).to_have_text(
        "This PAD is no longer paired with the store (its pairing was removed, or the store was reset).")
    assert page.locator("#pairing").get_by_text(re.compile("pairing code", re.I)).count() == 2  # the text, the label
    first.close()
