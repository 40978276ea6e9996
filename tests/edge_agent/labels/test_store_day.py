"""Shelf labels through a store's day, end to end: a real agent process (drawing in its render
process), a real broker, a folder of label PNGs and an emulated access point, sweeps every
second. Through sweeps, the hub's refresh command, sales, a return and adjustments, every
label's picture stays the one the renderer draws for the checkout's current product, price
and store count, never the "ask staff" notice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from drivers.shelf_label.ap_emulator import ApEmulator
from drivers.shelf_label.files import HASH_KEY
from drivers.shelf_label.models import get_model
from drivers.shelf_label.render import LabelContent, content_hash, render
from edge_agent.catalog import Product
from support.agent import AgentProcess
from support.flows import NUDE, TOTE, linked_agent, poll, ret, sale

URL = "https://shop.example.com/p/{sku}"
TAG_RED, TAG_NUDE = "0000021D4E83B4D1", "0000021D4E83B4D2"
FILES = {"LIP-RED-01": "m2-2.9-bwr", "LIP-NUDE-02": "m2-2.9-bwr", "TOTE-CANVAS": "m2-4.2-bwr"}
TAGS = {TAG_RED: "LIP-RED-01", TAG_NUDE: "LIP-NUDE-02"}


@pytest.fixture(scope="module")
def ap() -> Iterator[ApEmulator]:
    emulator = ApEmulator(auto_checkin=True)
    now = int(time.time())
    for mac in TAGS:
        emulator.add_tag(mac, 0x01, last_seen=now, next_checkin=now + 600)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory, ap) -> Iterator[tuple[AgentProcess, object, Path]]:
    workdir = tmp_path_factory.mktemp("labelday")
    folder = workdir / "labels"
    short = {"poll_interval": 0.2, "sweep_interval": 1.0, "stock_delay": 1.0, "compliance_grace": 5,
             "url_template": URL}
    devices = [
        {"id": "paper-1", "kind": "shelf_label.files", "dir": str(folder), **short,
         "labels": [{"key": sku, "sku": sku, "model": model} for sku, model in FILES.items()]},
        {"id": "labels-1", "kind": "shelf_label.oepl", "url": ap.url, "timeout": 2, "upload_timeout": 2, **short,
         "labels": [{"mac": mac, "sku": sku} for mac, sku in TAGS.items()]},
    ]
    with linked_agent(workdir, devices) as (agent, hub):
        yield agent, hub, folder


def content(agent: AgentProcess, sku: str) -> LabelContent:
    """What the label of ``sku`` must show now: the product as the checkout sells it."""
    with agent.client("kiosk") as kiosk:
        product = kiosk.get(f"/v1/products/{sku}").json()
    return LabelContent.from_product(Product.model_validate(product), at=datetime.now(timezone.utc),
                                     url=URL.format(sku=sku), tz=ZoneInfo("Asia/Shanghai"))


def png_ok(folder: Path, sku: str, want: LabelContent) -> bool:
    """The PNG is the renderer's picture of ``want``, and says so in its text chunks."""
    model = get_model(FILES[sku])
    try:
        with Image.open(folder / f"{sku}.png") as img:
            img.load()
            pixels, info = img.convert("RGB").tobytes(), dict(img.info)
    except OSError:
        return False
    price = want.promo.price if want.promo else want.price
    return (pixels == render(want, model).convert("RGB").tobytes() and info.get(HASH_KEY) == content_hash(want, model)
            and info.get("edge-agent:price") == str(price) and "edge-agent:notice" not in info)


def tag_ok(ap: ApEmulator, mac: str, want: LabelContent) -> bool:
    """The tag's screen is the renderer's picture of ``want``."""
    shown = ap.shown(mac)
    return shown is not None and \
        shown.convert("RGB").tobytes() == render(want, get_model("m2-2.9-bwr")).convert("RGB").tobytes()


def all_right(agent: AgentProcess, ap: ApEmulator, folder: Path) -> list[str]:
    """Every label that does not show its product as the checkout sells it right now."""
    wrong = [f"{sku}.png" for sku in FILES if not png_ok(folder, sku, content(agent, sku))]
    wrong += [f"tag {mac}" for mac, sku in TAGS.items() if not tag_ok(ap, mac, content(agent, sku))]
    return wrong


def settle(agent: AgentProcess, ap: ApEmulator, folder: Path, what: str) -> None:
    poll(lambda: all_right(agent, ap, folder), lambda wrong: not wrong, 30, f"every label right {what}")


def sweeps(agent: AgentProcess) -> int:
    with agent.client("console") as console:
        return min(d["counters"].get("sweeps", 0) for d in console.get("/v1/devices").json()
                   if d["kind"].startswith("shelf_label."))


def pushes(agent: AgentProcess, device: str) -> int:
    with agent.client("console") as console:
        return next(d["counters"].get("pushes", 0) for d in console.get("/v1/devices").json() if d["id"] == device)


def test_every_label_keeps_its_price_through_sweeps_a_refresh_sales_a_return_and_adjustments(store, ap):
    agent, hub, folder = store
    settle(agent, ap, folder, "at start")
    mode = {(folder / f"{sku}.png").stat().st_mode & 0o777 for sku in FILES}
    assert mode == {0o644}

    # Sweeps: nothing changed, nothing is pushed, every picture stays.
    before, files_before = sweeps(agent), pushes(agent, "paper-1")
    poll(lambda: sweeps(agent), lambda n: n >= before + 3, 30, "three sweeps")
    settle(agent, ap, folder, "after three sweeps")
    assert pushes(agent, "paper-1") == files_before

    # The hub's refresh command, for both devices: pushed again, still the price.
    for device in ("paper-1", "labels-1"):
        hub.send("cmd", {"id": f"refresh-{device}", "device": device, "action": "refresh_labels", "args": {}})
        res = hub.expect("cmd/res", lambda r, d=device: r["id"] == f"refresh-{d}")
        assert res["ok"], res
    poll(lambda: pushes(agent, "paper-1"), lambda n: n >= files_before + len(FILES), 30, "files refreshed")
    before = sweeps(agent)
    poll(lambda: sweeps(agent), lambda n: n >= before + 2, 30, "two sweeps after the refresh")
    settle(agent, ap, folder, "after a refresh and two sweeps")

    with agent.client("kiosk") as kiosk, agent.client("associate") as pad:
        # Two units sold: the store count on the labels follows within seconds.
        stock = content(agent, "LIP-NUDE-02").stock_store
        sold = kiosk.post("/v1/sales", json=sale((NUDE, 2), (TOTE, 1)))
        assert sold.status_code == 201, sold.text
        poll(lambda: content(agent, "LIP-NUDE-02").stock_store, lambda n: n == stock - 2)
        settle(agent, ap, folder, "after a sale")
        # One comes back: the count goes up again.
        back = kiosk.post("/v1/returns", json=ret((NUDE, 1), sale=sold.json()["id"]))
        assert back.status_code == 201, back.text
        settle(agent, ap, folder, "after a return")
        assert content(agent, "LIP-NUDE-02").stock_store == stock - 1
        # Adjustments -1/+1/-1, each shown.
        for delta in (-1, +1, -1):
            r = pad.post("/v1/stock/adjustments", json={"client_adjustment_id": str(uuid.uuid4()), "code": NUDE,
                                                         "delta": delta, "reason": "count"})
            assert r.status_code == 201, r.text
            settle(agent, ap, folder, f"after an adjustment of {delta:+d}")
    assert content(agent, "LIP-NUDE-02").stock_store == stock - 2

    # More sweeps: still right, and the agent agrees that every label is compliant.
    before = sweeps(agent)
    poll(lambda: sweeps(agent), lambda n: n >= before + 3, 30, "three more sweeps")
    settle(agent, ap, folder, "at the end")
    with agent.client("console") as console:
        poll(lambda: console.get("/v1/labels/compliance").json(), lambda v: v == [], 30, "no label wrong")
        listed = console.get("/v1/labels").json()
    assert len(listed) == len(FILES) + len(TAGS)
    assert all(lb["notice"] is None and lb["price"] == lb["checkout_price"] for lb in listed), listed


def test_a_burst_of_sales_is_a_few_pushes_of_its_labels(store, ap):
    agent, _, folder = store
    settle(agent, ap, folder, "before the burst")
    before = pushes(agent, "paper-1")
    stock = content(agent, "TOTE-CANVAS").stock_store
    began = time.monotonic()
    with agent.client("kiosk") as kiosk:
        for _ in range(20):
            assert kiosk.post("/v1/sales", json=sale((TOTE, 1))).status_code == 201
    rush = time.monotonic() - began
    poll(lambda: png_ok(folder, "TOTE-CANVAS", content(agent, "TOTE-CANVAS")), bool, 30, "TOTE's label follows")
    assert content(agent, "TOTE-CANVAS").stock_store == stock - 20
    settle(agent, ap, folder, "after the burst")
    # At most one push per stock_delay (1 s) the rush lasted, one per sweep (every 1 s here) and one
    # after it: never one per sale.
    assert pushes(agent, "paper-1") - before <= 3 + 2 * int(rush), (pushes(agent, "paper-1") - before, rush)
