"""Labels keep the checkout's price through a store's day: sweeps, refreshes, returns and
adjustments, drawn in a real render process as the agent draws them; and the store count
on a label follows sales within seconds, coalesced."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from PIL import Image

from drivers.shelf_label.ap_emulator import ApEmulator
from drivers.shelf_label.files import HASH_KEY
from drivers.shelf_label.models import get_model
from drivers.shelf_label.render import LabelContent, content_hash, render
from edge_agent import catalog, stock
from edge_agent.labels.plan import NOTICE_PRICE
from support.labelrig import LabelRig, files_device, item, oepl_device

MODEL = get_model("m2-2.9-bwr")
MAC = "0000021D4E83B4C1"


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def expected(sku: str, price: str, stock_store: int) -> LabelContent:
    product = catalog.Product(sku=sku, barcodes=[f"BC-{sku}"], name=f"Product {sku}", price=Decimal(price),
                              currency="CNY", promo=None, stock_store=stock_store, stock_online=0, rating=None,
                              reviews=0, version=1)
    return LabelContent.from_product(product, at=datetime.now(timezone.utc))


def png_shows(path: Path, content: LabelContent) -> bool:
    """The PNG is the picture the renderer draws for ``content``, with its hash and facts."""
    try:
        with Image.open(path) as img:
            img.load()
            pixels, info = img.convert("RGB").tobytes(), dict(img.info)
    except (FileNotFoundError, OSError):
        return False
    return (pixels == render(content, MODEL).convert("RGB").tobytes()
            and info.get(HASH_KEY) == content_hash(content, MODEL)
            and info.get("edge-agent:price") == str(content.price) and info.get("edge-agent:sku") == content.sku)


async def move(rig: LabelRig, sku: str, delta: int, *, sale: bool) -> None:
    """Change the store count as the sales, returns and adjustments use cases do, then announce it."""
    moved = await rig.store.write(lambda tx: stock.change(tx, sku, delta))
    stock.publish_low(rig.bus, [moved], 2, announce=not sale)


def test_a_file_label_keeps_its_price_through_sweeps_refreshes_and_stock_changes(tmp_path):
    folder = tmp_path / "labels"
    png = folder / "shelf-1.png"

    async def scenario():
        device = files_device(folder, [{"key": "shelf-1", "sku": "MILK"}], sweep_interval=0.3)
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80", stock_store=24)], render_processes=1) as rig:
            svc = rig.service

            async def shows(count: int, what: str) -> None:
                await rig.until(lambda: png_shows(png, expected("MILK", "12.80", count)), 30, what)
                label = rig.label("shelf-1")
                assert label.desired_note is None and label.shown_price == Decimal("12.80"), what

            await shows(24, "first drawing")
            # Several sweeps: every one plans the label again; nothing changes, nothing is pushed.
            pushes = rig.driver("paper-1").ctx.counters["pushes"]
            plans = svc.planner.plans
            await rig.until(lambda: svc.planner.plans >= plans + 4, 30, "four sweeps")
            await shows(24, "after sweeps")
            assert rig.driver("paper-1").ctx.counters["pushes"] == pushes
            # The hub's refresh command pushes the same picture again, price and all.
            assert (await rig.driver("paper-1").command("refresh_labels", {}))["queued"] == 1
            await rig.until(lambda: rig.driver("paper-1").ctx.counters["pushes"] == pushes + 1, 30, "refresh pushed")
            await shows(24, "after a refresh")
            # A sale, a return, adjustments -1/+1/-1: the count follows, the price stays.
            await move(rig, "MILK", -2, sale=True)
            await shows(22, "after a sale of two")
            await move(rig, "MILK", +1, sale=False)
            await shows(23, "after a return")
            for delta, count in ((-1, 22), (+1, 23), (-1, 22)):
                await move(rig, "MILK", delta, sale=False)
                await shows(count, f"after an adjustment of {delta:+d}")
            plans = svc.planner.plans
            await rig.until(lambda: svc.planner.plans >= plans + 2, 30, "two more sweeps")
            await shows(22, "after more sweeps")
            assert not svc.unfit_notes() and not svc.monitor.wrong
            assert png.stat().st_mode & 0o777 == 0o644

    run(scenario())


def test_an_ap_label_keeps_its_price_through_sweeps_refreshes_and_stock_changes(tmp_path):
    ap = ApEmulator(auto_checkin=True)
    now = int(time.time())
    ap.add_tag(MAC, 0x01, last_seen=now, next_checkin=now + 600)
    ap.start()

    def shown(count: int) -> bool:
        picture = ap.shown(MAC)
        return picture is not None and \
            picture.convert("RGB").tobytes() == render(expected("MILK", "12.80", count), MODEL).convert("RGB").tobytes()

    async def scenario():
        device = oepl_device(ap.url, [{"mac": MAC, "sku": "MILK"}], sweep_interval=0.3)
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80", stock_store=24)], render_processes=1) as rig:
            svc = rig.service
            await rig.until(lambda: shown(24), 30, "first picture")
            plans = svc.planner.plans
            await rig.until(lambda: svc.planner.plans >= plans + 4, 30, "four sweeps")
            await rig.driver().command("refresh_labels", {})
            for delta, count, sale in ((-1, 23, True), (+1, 24, False), (-1, 23, False), (+1, 24, False)):
                await move(rig, "MILK", delta, sale=sale)
                await rig.until(lambda c=count: shown(c) and rig.label(MAC).confirmed_at is not None
                                and not rig.label(MAC).outstanding, 30, f"count {count}")
                assert rig.label(MAC).desired_note is None and rig.label(MAC).shown_price == Decimal("12.80")
            plans = svc.planner.plans
            await rig.until(lambda: svc.planner.plans >= plans + 2, 30, "two more sweeps")
            assert shown(24) and not svc.unfit_notes()
            await rig.until(lambda: not svc.monitor.wrong, 30, "compliant")

    try:
        run(scenario())
    finally:
        ap.stop()


def test_fifty_sales_in_a_rush_are_a_few_pushes_and_the_label_ends_at_the_count(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        device = files_device(folder, [{"key": "shelf-1", "sku": "MILK"}, {"key": "shelf-2", "sku": "TEA"}],
                              stock_delay=1.0)
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80", stock_store=60), item("TEA", "5.00")]) as rig:
            counters = rig.driver("paper-1").ctx.counters
            await rig.until(lambda: png_shows(folder / "shelf-1.png", expected("MILK", "12.80", 60)))
            pushes = counters["pushes"]
            began = time.monotonic()
            for _ in range(50):
                await move(rig, "MILK", -1, sale=True)
            rush = time.monotonic() - began
            await rig.until(lambda: png_shows(folder / "shelf-1.png", expected("MILK", "12.80", 10)), 30, "count 10")
            # At most one push per stock_delay (1 s) that the rush lasted, and one after it: a couple on an
            # idle machine, whatever else the machine is doing never one per sale.
            assert counters["pushes"] - pushes <= 2 + int(rush), (counters["pushes"] - pushes, rush)
            # A count that does not show differently pushes nothing: TEA's label shows no count below 0.
            pushes = counters["pushes"]
            plans = rig.service.planner.plans
            await rig.store.write(lambda tx: tx.execute("UPDATE products SET stock_store = -3 WHERE sku = 'TEA'"))
            await move(rig, "TEA", -1, sale=True)  # -3 and -4 both show as 0
            await rig.until(lambda: rig.service.planner.plans > plans)
            await rig.until(lambda: rig.service.monitor.summary()["queued"] == 0)
            assert counters["pushes"] == pushes

    run(scenario())


def test_a_notice_says_so_in_its_png_and_shows_no_price(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        device = files_device(folder, [{"key": "gone", "sku": "GONE"}])
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: rig.label("gone").confirmed_at is not None)
            with Image.open(folder / "gone.png") as img:
                info = dict(img.info)
            assert (info["edge-agent:sku"], info["edge-agent:notice"]) == ("GONE", NOTICE_PRICE)
            assert "edge-agent:price" not in info and info[HASH_KEY] == rig.label("gone").shown_hash

    run(scenario())


def test_a_plan_that_fails_unexpectedly_does_not_stop_the_labels_for_the_day(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        async with LabelRig(tmp_path, [files_device(folder, [{"key": "shelf-1", "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: png_shows(folder / "shelf-1.png", expected("MILK", "12.80", 0)))
            planner, failed = rig.service.planner, []
            real = planner._desire_all

            def once_broken(*args):
                if not failed:
                    failed.append(True)
                    raise RuntimeError("a bug in one plan")
                return real(*args)

            planner._desire_all = once_broken
            await rig.set_items(item("MILK", "9.90", version=2))
            await rig.until(lambda: failed, what="the broken plan ran")
            await rig.set_items(item("MILK", "9.50", version=3))
            await rig.until(lambda: png_shows(folder / "shelf-1.png", expected("MILK", "9.50", 0)),
                            what="planned after the failure")

    run(scenario())


def test_a_push_that_returns_after_a_newer_plan_does_not_undo_it(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        from drivers.shelf_label.driver import PushResult
        from edge_agent.labels.plan import desire

        async with LabelRig(tmp_path, [files_device(folder, [{"key": "shelf-1", "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: png_shows(folder / "shelf-1.png", expected("MILK", "12.80", 0)))
            products = await rig.store.read(lambda c: catalog.products(c, {"MILK"}))
            old = desire("MILK", products["MILK"], "m2-2.9-bwr", datetime.now(timezone.utc), tz=rig.service.tz)
            await rig.set_items(item("MILK", "9.90", version=2))
            await rig.until(lambda: rig.label("shelf-1").desired_price == Decimal("9.90"))
            newer = rig.label("shelf-1").desired_hash
            # The 12.80 upload comes back only now: the plan for 9.90 stays what the label should show.
            rig.service.pushed("shelf-1", old, PushResult(confirmed=True, token=old.hash), None, old.hash)
            assert rig.label("shelf-1").desired_hash == newer and old.hash != newer

    run(scenario())
