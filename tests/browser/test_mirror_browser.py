"""The try-on mirror's screen in a real headless Chromium against a real agent with a synthetic mirror:
the privacy promise, the live picture, picking a product, "Add to basket" into the counter kiosk's
session, "Order online" showing a pickup code, and a refused order said in words.

Every wait is on a condition (Playwright's expect / wait_for_function, or support.flows.poll for the
API): the mirror process takes a few seconds to load its model, a fast run does not wait for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from playwright.sync_api import Page, expect  # noqa: E402

from support.agent import TOKENS, AgentProcess, config_dict, free_port  # noqa: E402
from support.flows import poll  # noqa: E402

pytestmark = pytest.mark.slow

MIRROR = {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic", "station": "mirror-1",
          "kiosk": "kiosk-1", "width": 640, "height": 480, "session_gap": 60}
STARTUP_MS = 60_000  # the mirror process loads MediaPipe and opens its camera


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp_path_factory.mktemp("mirror-browser"), config_dict(free_port(), [MIRROR]))
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


@pytest.fixture
def screen(page: Page, agent: AgentProcess) -> Iterator[Page]:
    """The mirror's page as its own screen opens it; a Content-Security-Policy violation fails the test."""
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{agent.url}/mirror?device=mirror-1#token={TOKENS['mirror']}")
    yield page
    assert not blocked, f"the page broke its own CSP: {blocked}"


def status(agent: AgentProcess) -> dict:
    with agent.client("associate") as c:
        return c.get("/v1/mirror/mirror-1").json()


def test_the_screen_shows_the_live_picture_and_its_privacy_promise(screen: Page, agent: AgentProcess):
    expect(screen.locator("#privacy")).to_contain_text("not recorded, stored or sent anywhere")
    expect(screen.locator("#privacy")).to_be_visible()
    assert "token" not in screen.url  # the token leaves the address bar
    # naturalWidth is 0 until a JPEG of the MJPEG stream has been decoded.
    screen.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=STARTUP_MS)
    assert screen.evaluate("document.getElementById('live').naturalWidth") == 640
    expect(screen.locator("#offline")).to_be_hidden()


def test_pick_add_to_basket_and_order_online(screen: Page, agent: AgentProcess):
    ruby = screen.locator("#products button.product", has_text="Ruby")
    ruby.click()
    expect(ruby).to_have_class(re.compile(r"\bon\b"))
    poll(lambda: status(agent)["look"]["skus"], lambda skus: skus == ["LIP-RED-01"], what="the look on the mirror")

    chosen = screen.locator("#chosen .item", has_text="Ruby")
    chosen.get_by_role("button", name="Add to basket").click()
    expect(screen.locator("#message")).to_contain_text("pay at the kiosk kiosk-1")
    expect(screen.locator("#basket-lines")).to_contain_text("1 × ")
    with agent.client("kiosk") as kiosk:
        session = poll(lambda: kiosk.get("/v1/sessions/kiosk-1").json(), lambda s: s["basket"]["lines"],
                       what="the line in the kiosk's basket")
    assert [(ln["sku"], ln["qty"], ln["source"]) for ln in session["basket"]["lines"]] == [
        ("LIP-RED-01", 1, "mirror-1")]

    chosen.get_by_role("button", name="Order online").click()
    expect(screen.locator("#order")).to_be_visible()
    expect(screen.locator("#pickup-code")).to_have_text(re.compile(r"^[0-9]{6}$"))
    expect(screen.locator("#collect")).to_contain_text("pickup counter of Test Store")
    order_id = re.search(r"Order (\S+),", screen.locator("#collect").inner_text()).group(1)
    with agent.client("associate") as pad:
        listed = {o["order_id"]: o for o in pad.get("/v1/orders").json()}
    assert listed[order_id]["origin"] == "mirror" and listed[order_id]["status"] == "new"
    assert [(ln["sku"], ln["qty"]) for ln in listed[order_id]["lines"]] == [("LIP-RED-01", 1)]


def test_an_order_beyond_online_stock_is_said_in_words(screen: Page, agent: AgentProcess):
    screen.get_by_role("tab", name="Cheeks").click()
    peach = screen.locator("#products button.product", has_text="Peach")
    expect(peach).to_be_visible()
    with agent.client("associate") as pad:  # while the screen still lists it: someone else orders every unit
        online = pad.get("/v1/products/BLUSH-PEACH").json()["stock_online"]
        taken = pad.post("/v1/orders", json={"client_order_id": "9a0c2c8e-3f53-4c1e-9d0f-0d9f1f0b7a11",
                                             "lines": [{"sku": "BLUSH-PEACH", "qty": online}]})
        assert taken.status_code == 201, taken.text
    peach.click()
    screen.locator("#chosen .item", has_text="Peach").get_by_role("button", name="Order online").click()
    expect(screen.locator("#message")).to_have_text(
        re.compile(r"^Not ordered: only 0 of BLUSH-PEACH online, the order asks for 1"))
