"""The try-on mirror's screen in a real headless Chromium against a real agent with a synthetic mirror:
the privacy promise, the live picture, picking a product, "Add to basket" into the counter kiosk's
session, "Order online" showing a pickup code, a refused order said in words, every panel on the
screen at the sizes mirrors come in, and a notice for staff (never a broken picture) when the screen
was opened without the mirror's own token.

Every wait is on a condition (Playwright's expect / wait_for_function, or support.flows.poll for the
API): the mirror process takes a few seconds to load its model, a fast run does not wait for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from playwright.sync_api import Page, expect  # noqa: E402

from support.agent import ROOT, TOKENS, AgentProcess, config_dict, free_port  # noqa: E402
from support.flows import poll  # noqa: E402

pytestmark = pytest.mark.slow

MIRROR = {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic", "station": "mirror-1",
          "kiosk": "kiosk-1", "width": 640, "height": 480, "session_gap": 60}
STARTUP_MS = 60_000  # the mirror process loads MediaPipe and opens its camera
WAIT_S = 60  # any one wait for the agent through its API; milliseconds when the machine is idle
# Landscape mirrors and the same screens turned to portrait.
SIZES = [(1280, 800), (1920, 1080), (1080, 1920), (800, 1280)]
DOCS_SHOTS = {"mirror-1280x800.png", "mirror-800x1280.png", "mirror-staff-wrong.png"}
# Where each box is on the page, if shown; the page's own size (it must never need scrolling).
BOXES = """(ids) => ({
  page: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
  boxes: Object.fromEntries(ids.map((id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return [id, r.width && r.height ? [r.left, r.top, r.right, r.bottom] : null];
  })),
})"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp_path_factory.mktemp("mirror-browser"), config_dict(free_port(), [MIRROR]))
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


@pytest.fixture
def shot(tmp_path: Path):
    """Takes a screenshot into the test's temp dir, or with UPDATE_SCREENSHOTS=1 the ones docs/mirror.md
    shows into docs/screenshots/."""
    def take(page: Page, name: str) -> None:
        docs = os.environ.get("UPDATE_SCREENSHOTS") and name in DOCS_SHOTS
        page.screenshot(path=str((ROOT / "docs" / "screenshots" if docs else tmp_path) / name))
    return take


@pytest.fixture
def opened(page: Page, agent: AgentProcess) -> Iterator[Page]:
    """The tab, watched: a Content-Security-Policy violation fails the test."""
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    urls: list[str] = []  # the page's own requests: a token after # is never sent, and none goes in a URL
    page.on("request", lambda r: urls.append(r.url))
    yield page
    assert not blocked, f"the page broke its own CSP: {blocked}"
    assert not [u for u in urls if "token=" in u or any(t in u for t in TOKENS.values())], urls


@pytest.fixture
def screen(opened: Page, agent: AgentProcess) -> Page:
    """The mirror's page as its own screen opens it."""
    opened.goto(f"{agent.url}/mirror?device=mirror-1#token={TOKENS['mirror']}")
    return opened


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
    # The <img> cannot send the token: its URL carries a one-use ticket.
    assert "/v1/mirror/mirror-1/stream?ticket=" in screen.evaluate("document.getElementById('live').src")
    expect(screen.locator("#offline")).to_be_hidden()


def test_pick_add_to_basket_and_order_online(screen: Page, agent: AgentProcess):
    ruby = screen.locator("#products button.product", has_text="Ruby")
    ruby.click()
    expect(ruby).to_have_class(re.compile(r"\bon\b"))
    poll(lambda: status(agent)["look"]["skus"], lambda skus: skus == ["LIP-RED-01"], WAIT_S,
         what="the look on the mirror")

    chosen = screen.locator("#chosen .item", has_text="Ruby")
    chosen.get_by_role("button", name="Add to basket").click()
    expect(screen.locator("#message")).to_contain_text("pay at the kiosk kiosk-1")
    expect(screen.locator("#basket-lines")).to_contain_text("1 × ")
    with agent.client("kiosk") as kiosk:
        session = poll(lambda: kiosk.get("/v1/sessions/kiosk-1").json(), lambda s: s["basket"]["lines"], WAIT_S,
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


def on_screen(page: Page, ids: list[str]) -> None:
    """Every one of ``ids`` is shown whole inside the window, and the page itself does not scroll."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    got = page.evaluate(BOXES, ids)
    assert got["page"][0] <= width and got["page"][1] <= height, f"the page scrolls at {width}x{height}: {got}"
    for id_, box in got["boxes"].items():
        assert box is not None, f"#{id_} is not shown at {width}x{height}"
        left, top, right, bottom = box
        assert left >= 0 and top >= 0 and right <= width + 0.5 and bottom <= height + 0.5, (
            f"#{id_} at {box} is not inside the {width}x{height} screen")


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_panel_fits_the_screen_with_the_pickup_code_shown(opened: Page, agent: AgentProcess, shot,
                                                                  width: int, height: int):
    with agent.client("associate") as pad:  # a fresh customer: nothing on from the tests before
        assert pad.post("/v1/mirror/mirror-1/session/end").status_code == 200
    opened.set_viewport_size({"width": width, "height": height})
    opened.goto(f"{agent.url}/mirror?device=mirror-1#token={TOKENS['mirror']}")
    opened.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=STARTUP_MS)
    expect(opened.locator("#live")).to_be_visible()
    # The most a customer can open at once: two products on, one in the basket, one ordered online.
    opened.locator("#products button.product", has_text="Ruby").click()
    opened.get_by_role("tab", name="Glasses").click()
    opened.locator("#products button.product").first.click()
    ruby = opened.locator("#chosen .item", has_text="Ruby")
    ruby.get_by_role("button", name="Add to basket").click()
    expect(opened.locator("#basket-lines")).to_contain_text("pay at the kiosk")
    ruby.get_by_role("button", name="Order online").click()
    expect(opened.locator("#pickup-code")).to_have_text(re.compile(r"^[0-9]{6}$"))

    on_screen(opened, ["picture", "compare", "kinds", "browse", "order", "pickup-code", "collect", "basket", "done",
                       "message"])
    shot(opened, f"mirror-{width}x{height}.png")
    opened.get_by_role("button", name="Done").click()  # as the customer would: the next test starts afresh
    expect(opened.locator("#order")).to_be_hidden()
    poll(lambda: status(agent), lambda s: not s["look"]["skus"] and s["session"] is None, WAIT_S,
         what="the session ended")


# Each way a screen can be opened wrong, at one of the sizes.
WRONG = [("wrong", "mirror-1", "not-a-token", (1280, 800), "does not know the token"),
         ("missing", "mirror-1", None, (800, 1280), "without the mirror's token"),
         ("kiosk", "mirror-1", TOKENS["kiosk"], (1920, 1080), "may not show this mirror: role 'kiosk'"),
         ("associate", "mirror-1", TOKENS["associate"], (1080, 1920), "staff member's token, not the mirror's own"),
         ("no-such-mirror", "mirror-9", TOKENS["mirror"], (1280, 800), "no such mirror: no mirror 'mirror-9'")]


@pytest.mark.parametrize(("case", "device", "token", "size", "why"), WRONG, ids=[w[0] for w in WRONG])
def test_a_screen_opened_without_the_mirrors_token_tells_staff_what_to_fix(
        opened: Page, agent: AgentProcess, shot, case: str, device: str, token: str | None,
        size: tuple[int, int], why: str):
    opened.set_viewport_size({"width": size[0], "height": size[1]})
    opened.goto(f"{agent.url}/mirror?device={device}" + (f"#token={token}" if token else ""))
    staff = opened.locator("#staff")
    expect(staff).to_be_visible()
    expect(staff).to_contain_text(why)
    expect(staff).to_contain_text(f"{agent.url}/mirror?device={device}#token=<the mirror's token>")
    expect(staff).to_contain_text("please ask an associate")
    # No picture at all, so no broken one: the stage is gone and no image failed to load.
    expect(opened.locator("#live")).to_be_hidden()
    expect(opened.locator("#done")).to_be_hidden()
    assert opened.evaluate("() => [...document.images].every((i) => !i.getAttribute('src') || i.naturalWidth > 0)")
    on_screen(opened, ["staff"])
    shot(opened, f"mirror-staff-{case}.png")


def test_a_token_after_the_question_mark_is_not_used(page: Page, agent: AgentProcess):
    """The server saw that token in the URL: the screen tells staff to put it after # and sends no call with it."""
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/v1/" in r.url else None)
    page.goto(f"{agent.url}/mirror?device=mirror-1&token={TOKENS['mirror']}")
    staff = page.locator("#staff")
    expect(staff).to_be_visible()
    expect(staff).to_contain_text("put it after # instead")
    assert "token" not in page.url
    assert calls == []
