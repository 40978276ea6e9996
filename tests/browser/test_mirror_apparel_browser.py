"""Trying on clothes at the mirror's screen, in a real headless Chromium against a real agent whose mirror
camera is the synthetic customer stepped back (scikit-image's astronaut photo: head, shoulders, torso).

The screen says "Body view", offers tops and jackets with a suggested size (an estimate), draws the picked
top on the live picture (checked in the stream's own frames: the chest turns navy, the wall around stays
grey), orders it online with a pickup code, and the ended session reports what was tried. A second mirror
whose camera sees a face close up says "Face view" and grays the clothes out with "Step back to try on
clothes". With ``EDGE_DOCS_SCREENSHOTS=1`` the screenshots go to docs/ (docs/mirror.md shows them).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from playwright.sync_api import Page, expect  # noqa: E402

from support.agent import ROOT, TOKENS, AgentProcess, config_dict, free_port  # noqa: E402
from support.flows import poll  # noqa: E402

from edge_agent.store import outbox  # noqa: E402

pytestmark = pytest.mark.slow

BODY = {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic-body", "station": "mirror-1",
        "kiosk": "kiosk-1", "width": 640, "height": 480, "session_gap": 60}
# A second agent whose mirror sees the still face close up (support's config has one mirror client).
FACE = {**BODY, "source": "synthetic-still"}
STARTUP_MS = 60_000  # the mirror process loads MediaPipe and opens its camera
WAIT_S = 60


def _agent(tmp_path_factory: pytest.TempPathFactory, mirror: dict, name: str) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp_path_factory.mktemp(name), config_dict(free_port(), [mirror]))
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from _agent(tmp_path_factory, BODY, "mirror-apparel")


@pytest.fixture(scope="module")
def close_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from _agent(tmp_path_factory, FACE, "mirror-face")


@pytest.fixture
def shot(tmp_path: Path):
    """A screenshot into the test's temp dir, or with EDGE_DOCS_SCREENSHOTS=1 into docs/."""
    def take(page: Page, name: str) -> Path:
        where = ROOT / "docs" if os.environ.get("EDGE_DOCS_SCREENSHOTS") == "1" else tmp_path
        path = where / name
        page.screenshot(path=str(path))
        return path
    return take


@pytest.fixture
def watched(page: Page) -> Iterator[Page]:
    """The tab, watched: a CSP violation or a token in a URL fails the test."""
    blocked: list[str] = []
    urls: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("request", lambda r: urls.append(r.url))
    page.set_viewport_size({"width": 1280, "height": 800})
    yield page
    assert not blocked, blocked
    assert not [u for u in urls if "token=" in u or any(t in u for t in TOKENS.values())], urls


def status(agent: AgentProcess) -> dict:
    with agent.client("associate") as c:
        return c.get("/v1/mirror/mirror-1").json()


def picture(page: Page) -> np.ndarray:
    """The live picture as the page shows it now (drawn into a canvas, as pixels, unmirrored)."""
    data = page.evaluate("""() => {
      const img = document.getElementById('live');
      const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
      c.getContext('2d').drawImage(img, 0, 0);
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    }""")
    return np.array(data, np.uint8).reshape(480, 640, 4)[..., 2::-1]  # RGBA to BGR


def navy_share(frame: np.ndarray, xs: tuple[int, int] = (240, 340)) -> float:
    """How much of the picture's middle (the chest of the synthetic customer) is the T-shirt's navy."""
    chest = frame[270:370, xs[0]:xs[1]].astype(int)
    b, g, r = chest[..., 0], chest[..., 1], chest[..., 2]
    return float(((b > r + 25) & (b > g + 10) & (b < 170)).mean())


def test_try_on_a_top_in_body_view_then_order_it_online(watched: Page, agent: AgentProcess, shot):
    page = watched
    page.goto(f"{agent.url}/mirror?device=mirror-1#token={TOKENS['mirror']}")
    page.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=STARTUP_MS)
    expect(page.locator("#view")).to_have_text("Body view", timeout=STARTUP_MS)
    before = picture(page)
    assert navy_share(before) < 0.2  # her orange flight suit (and the blue of a mission patch)

    page.get_by_role("tab", name="Tops").click()
    expect(page.locator("#step-back")).to_be_hidden()
    tee = page.locator("#products button.product", has_text="T-Shirt Navy")
    expect(tee).to_be_enabled()
    tee.click()
    expect(tee).to_have_class(re.compile(r"\bon\b"))
    poll(lambda: status(agent)["look"]["skus"], lambda skus: skus == ["TEE-CREW-NAVY"], WAIT_S,
         what="the top on the mirror")
    chosen = page.locator("#chosen .item", has_text="T-Shirt Navy")
    expect(chosen.locator(".fit")).to_have_text(re.compile(r"^Suggested size \(estimate\): (S|M|L|XL)$"),
                                                timeout=WAIT_S * 1000)
    size = status(agent)["sizes"]["TEE-CREW-NAVY"]
    assert chosen.locator(".fit").inner_text().endswith(size)
    # The stream's frames show the T-shirt on her chest, and never on the wall around her.
    page.wait_for_function("""() => {
      const img = document.getElementById('live');
      const c = document.createElement('canvas'); c.width = 640; c.height = 480;
      const x = c.getContext('2d'); x.drawImage(img, 0, 0);
      const d = x.getImageData(240, 270, 100, 100).data; let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 2] > d[i] + 25 && d[i + 2] > d[i + 1] + 10 && d[i + 2] < 170) n++;
      return n / (d.length / 4) > 0.5;
    }""", timeout=WAIT_S * 1000)
    after = picture(page)
    assert navy_share(after) > 0.5
    wall = np.ones(after.shape[:2], bool)
    wall[:, 70:570] = False  # the photo spans the middle; the grey wall on either side
    assert np.abs(after[wall].astype(int) - before[wall].astype(int)).max() < 40  # JPEG noise, no garment
    shot(page, "mirror-apparel.png")

    # Before / after: the slider shows part of the picture without the top.
    page.locator("#compare").fill("50")
    poll(lambda: status(agent)["look"]["compare"], lambda c: c == 0.5, WAIT_S, what="the split on the mirror")
    expect(page.locator("#split")).to_be_visible()
    # The picture is shown mirrored: the "before" half of the screen is the right half of the picture sent,
    # and the line between the halves is drawn in the frame itself.
    page.wait_for_function("""() => {
      const img = document.getElementById('live');
      const c = document.createElement('canvas'); c.width = 640; c.height = 480;
      const x = c.getContext('2d'); x.drawImage(img, 0, 0);
      const d = x.getImageData(319, 0, 1, 480).data; let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 220 && d[i + 1] > 220 && d[i + 2] > 220) n++;
      return n > 400;
    }""", timeout=WAIT_S * 1000)
    split = picture(page)
    assert navy_share(split, (240, 316)) > 0.5 and navy_share(split, (324, 400)) < 0.2
    shot(page, "mirror-apparel-compare.png")
    page.locator("#compare").fill("0")

    chosen.get_by_role("button", name="Order online").click()
    expect(page.locator("#order")).to_be_visible()
    expect(page.locator("#pickup-code")).to_have_text(re.compile(r"^[0-9]{6}$"))
    order_id = re.search(r"Order (\S+),", page.locator("#collect").inner_text()).group(1)
    with agent.client("associate") as pad:
        listed = {o["order_id"]: o for o in pad.get("/v1/orders").json()}
    assert listed[order_id]["origin"] == "mirror"
    assert [(ln["sku"], ln["qty"]) for ln in listed[order_id]["lines"]] == [("TEE-CREW-NAVY", 1)]
    shot(page, "mirror-apparel-ordered.png")

    page.get_by_role("button", name="Done").click()

    def tryon_events() -> list[outbox.OutboxEvent]:
        with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as conn:
            return [e for e in outbox.pending(conn) if e.type == "retail.tryon.session"]

    events = poll(tryon_events, bool, WAIT_S, what="the retail.tryon.session event")
    data = events[-1].data
    assert [(t["sku"], t["kind"]) for t in data["tried"]] == [("TEE-CREW-NAVY", "top")]
    assert data["orders"] == [{"order_id": order_id, "lines": [{"sku": "TEE-CREW-NAVY", "qty": 1}]}]
    assert data["compared"] is True


def test_close_up_the_clothes_are_grayed_out_until_the_customer_steps_back(watched: Page, close_agent, shot):
    page = watched
    page.goto(f"{close_agent.url}/mirror?device=mirror-1#token={TOKENS['mirror']}")
    page.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=STARTUP_MS)
    expect(page.locator("#view")).to_have_text("Face view", timeout=STARTUP_MS)
    page.get_by_role("tab", name="Jackets").click()
    expect(page.locator("#step-back")).to_be_visible()
    expect(page.locator("#step-back")).to_contain_text("Step back to try on clothes")
    jacket = page.locator("#products button.product", has_text="Bomber")
    expect(jacket).to_be_disabled()
    expect(jacket).to_have_class(re.compile(r"\bgrayed\b"))
    page.get_by_role("tab", name="Lips").click()
    expect(page.locator("#step-back")).to_be_hidden()
    expect(page.locator("#products button.product", has_text="Ruby")).to_be_enabled()
    page.get_by_role("tab", name="Jackets").click()
    shot(page, "mirror-apparel-face-view.png")
