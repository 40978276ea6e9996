"""Pairing an associate's PAD from the agent's own console (/console, "Associates' devices") in a real
headless Chromium against a real agent: the console, signed in as admin (only an admin makes codes), makes a code for pad-anna, its QR (read back from a
screenshot by OpenCV) is the pairing link, a phone-sized second browser opens that link and is paired, the
console lists pad-anna with its last seen, and after Unpair (confirmed) the PAD is back at its pairing screen
on its next call. Refusals (a name taken, a name or zone the agent refuses) are said in words, and the
code's countdown ends in "expired" on the page's own clock, fast-forwarded (Playwright's clock). Signed in
with a console token, the page says that making a code needs an admin sign-in, and still lists and unpairs.

With ``EDGE_DOCS_SCREENSHOTS=1`` the console's picture is written to docs/console-pairing.png; otherwise
to the test's temp dir. Every wait is Playwright's expect() on the page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from support.agent import ROOT, TOKENS, AgentProcess, config_dict, free_port

pytestmark = pytest.mark.slow

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
CODE = re.compile(r"^[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}$")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent on plain HTTP on loopback (a secure context for the PAD's page) with no devices, and one
    wristband already paired over the API (the list is not empty in the picture)."""
    tmp = tmp_path_factory.mktemp("console-pairing")
    (tmp / "agent").mkdir()
    agent = AgentProcess(tmp / "agent", config_dict(free_port(), []))
    try:
        agent.start()
        with agent.client("admin") as admin, agent.client() as anon:
            made = admin.post("/v1/pairing", json={"name": "band-li", "zones": ["fragrance"]})
            assert made.status_code == 201, made.text
            assert anon.post("/v1/pair", json={"code": made.json()["code"]}).status_code == 201
        yield agent
    finally:
        agent.close()


def watch(page: Page) -> list[str]:
    """What goes wrong on the page: script errors and CSP violations."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


def open_devices(page: Page, agent: AgentProcess, role: str = "admin") -> None:
    page.goto(agent.url + "/console")
    page.fill("#token", TOKENS[role])
    page.click("#login button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    page.click('a[data-nav="associates"]')
    expect(page.locator("#associates h1")).to_have_text("Devices for associates")
    expect(page.locator('#paired tr[data-name="band-li"]')).to_be_visible()


def read_qr(png: bytes) -> str:
    """The text of the QR code in a screenshot, as OpenCV reads it."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the mirror extra) reads the QR code back")
    np = pytest.importorskip("numpy")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.QRCodeDetector().detectAndDecode(image)[0]


def test_the_console_pairs_a_pad_from_its_qr_and_unpairs_it(agent: AgentProcess, browser: Browser, tmp_path: Path):
    console = browser.new_context(viewport={"width": 1280, "height": 860})
    phone = browser.new_context(**PHONE)
    try:
        page = console.new_page()
        errors = watch(page)
        open_devices(page, agent)
        expect(page.locator("#paired-empty")).to_have_count(0)

        page.fill("#pair-name", "pad-anna")
        page.fill("#pair-zones", "cosmetics")
        page.get_by_role("button", name="Make a pairing code").click()
        code = page.locator("#pair-code")
        expect(code).to_have_text(CODE)
        shown = code.inner_text()
        url = page.locator("#pair-url").inner_text()
        assert url == f"{agent.url}/pad#pair={shown}"
        expect(page.locator("#pair-card h3")).to_contain_text("pad-anna · cosmetics")
        expect(page.locator("#pair-left")).to_have_text(re.compile(r"^expires in (10:00|9:[0-5]\d)$"))
        qr = page.locator("#pair-qr")
        expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml;"))
        page.wait_for_function("() => { const i = document.getElementById('pair-qr'); return i.complete && i.naturalWidth > 0; }")
        box = qr.bounding_box()
        assert box["width"] >= 200 and box["height"] >= 200, box
        pad = 24  # the card's white around the image: the reader's quiet zone
        png = page.screenshot(clip={"x": box["x"] - pad, "y": box["y"] - pad,
                                    "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad})
        assert read_qr(png) == url
        # The code and the token never went in a URL of the console's own page, nor in its storage.
        assert shown not in page.url
        assert not [k for k in page.evaluate("Object.keys(sessionStorage)") if k != "edge-console-token"]
        folder = ROOT / "docs" if os.environ.get("EDGE_DOCS_SCREENSHOTS") == "1" else tmp_path
        page.wait_for_function("() => document.fonts.ready.then(() => true)")
        page.screenshot(path=str(folder / "console-pairing.png"))

        # The phone opens the QR's link and is paired: it shows its name.
        tab = phone.new_page()
        phone_errors = watch(tab)
        tab.goto(url)
        expect(tab.locator("#where")).to_have_text("pad-anna · Test Store")
        expect(tab.locator("#live")).to_have_text("live")

        # The console notices without a reload: the code is gone, pad-anna is listed with its zone and last seen.
        expect(page.locator("#pair-done")).to_contain_text("pad-anna is paired")
        expect(page.locator("#pair-code")).to_have_count(0)
        row = page.locator('#paired tr[data-name="pad-anna"]')
        expect(row).to_have_attribute("data-state", "paired")
        expect(row).to_contain_text("cosmetics")
        expect(row).to_contain_text("by admin-1")
        expect(row.locator("td.last-seen")).to_have_text(re.compile(r"^\d+ (s|min) ago$"))

        # Unpair asks first; Cancel leaves it paired.
        row.get_by_role("button", name="Unpair").click()
        expect(row).to_contain_text("Unpair pad-anna? It stops working at once.")
        row.get_by_role("button", name="Cancel").click()
        expect(row.get_by_role("button", name="Unpair")).to_be_visible()
        row.get_by_role("button", name="Unpair").click()
        row.get_by_role("button", name="Yes, unpair").click()
        expect(row).to_have_attribute("data-state", "unpaired")
        expect(row).to_contain_text("unpaired")
        expect(row).to_contain_text("by admin-1")
        expect(page.locator('#paired tr[data-name="band-li"]')).to_have_attribute("data-state", "paired")

        # The PAD's feed was closed by the unpairing; its next call (the reconnect's ticket) is refused,
        # and it is back at its pairing screen, saying why.
        expect(tab.locator("#pairing-why")).to_contain_text("no longer paired")
        expect(tab.locator("#app")).to_be_hidden()
        with agent.client("console") as c:
            anna = next(d for d in c.get("/v1/paired").json() if d["name"] == "pad-anna")
        assert anna["revoked_by"] == "admin-1"
        assert not errors and not phone_errors, (errors, phone_errors)
    finally:
        phone.close()
        console.close()


def test_refusals_are_said_in_words(agent: AgentProcess, page: Page):
    open_devices(page, agent)
    error = page.locator("#pair-error")
    make = page.get_by_role("button", name="Make a pairing code")

    page.fill("#pair-name", "band-li")  # paired already (the fixture's): 409
    make.click()
    expect(error).to_have_text("band-li is already paired. Unpair it in the list below first, or choose another name.")
    expect(page.locator("#pair-code")).to_have_count(0)

    page.fill("#pair-name", "kiosk-1")  # a devices.yaml client's name: 409, the agent's words
    make.click()
    expect(error).to_have_text("'kiosk-1' is a client of devices.yaml; choose another name for the device")

    page.fill("#pair-name", "pad anna")  # 422 on the name
    make.click()
    expect(error).to_have_text(re.compile(r'^The name may hold only a–z, 0–9 and "-"'))

    page.fill("#pair-name", "pad-zoe")
    page.fill("#pair-zones", "cosmetics, shoes.bags")  # 422 on a zone (a dot: not a shelf label's zone either)
    make.click()
    expect(error).to_have_text(re.compile(r"^Each zone is up to 32 letters"))

    page.fill("#pair-name", "")
    make.click()
    expect(error).to_have_text("Give the device a name, for example pad-anna.")
    expect(page.locator("#pair-code")).to_have_count(0)


def test_a_code_left_unused_runs_out_on_the_page(agent: AgentProcess, page: Page):
    page.clock.install()  # the page's timers and Date, moved on below without waiting ten minutes
    open_devices(page, agent)
    page.fill("#pair-name", "pad-otto")
    page.get_by_role("button", name="Make a pairing code").click()
    left = page.locator("#pair-left")
    expect(left).to_have_text(re.compile(r"^expires in (10:00|9:[0-5]\d)$"))
    page.clock.fast_forward("04:00")
    expect(left).to_have_text(re.compile(r"^expires in (6:00|5:[0-5]\d)$"))
    page.clock.fast_forward("06:01")
    expect(left).to_have_text(re.compile(r"^Expired at \d\d:\d\d: make a new code\.$"))
    expect(page.locator("#pair-card")).to_have_class(re.compile(r"\bexpired\b"))
    expect(page.locator("#pair-qr")).to_have_count(0)


def test_a_console_sign_in_lists_and_unpairs_but_makes_no_code(agent: AgentProcess, page: Page, tmp_path: Path):
    with agent.client("admin") as admin, agent.client() as anon:
        made = admin.post("/v1/pairing", json={"name": "band-ola"})
        assert anon.post("/v1/pair", json={"code": made.json()["code"]}).status_code == 201
    open_devices(page, agent, role="console")
    expect(page.locator("#pair-form")).to_contain_text("making a code needs an admin sign-in")
    page.fill("#pair-name", "pad-sneak")
    page.get_by_role("button", name="Make a pairing code").click()
    note = page.locator("#pair-admin-only")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Making a pairing code needs an admin sign-in")
    expect(page.locator("#pair-form")).to_be_hidden()
    expect(page.locator("#pair-code")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "console-pairing-admin-only.png"))
    row = page.locator('#paired tr[data-name="band-ola"]')
    row.get_by_role("button", name="Unpair").click()
    row.get_by_role("button", name="Yes, unpair").click()
    expect(row).to_have_attribute("data-state", "unpaired")
    expect(row).to_contain_text("by console-1")
    with agent.client("admin") as admin:
        assert "pad-sneak" not in {d["name"] for d in admin.get("/v1/paired").json()}


def test_only_the_agent_offers_pairing(agent: AgentProcess):
    from sync.console.page import page as shell
    from sync.console.rules import load_rules
    from sync.console.views import meta

    with agent.client("console") as c:
        assert c.get("/console/api/meta").json()["pairing"] is True
    assert "pairing" not in meta("hub", "store-it", "1.0", 30, load_rules())  # what the hub's page is told
    # The link is in the shared shell, hidden until the meta says so.
    assert '<a href="#/associates" data-nav="associates" id="nav-associates" hidden>' in shell("hub", "/api", "/static", "hub")
