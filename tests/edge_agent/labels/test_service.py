"""The label service with the real store, supervisor and drivers, against emulated
access points over real HTTP: planning, pushing, confirmation, compliance, alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from drivers.shelf_label.ap_emulator import ApEmulator, Fault
from drivers.shelf_label.models import get_model
from drivers.shelf_label.render import LabelContent, content_hash, render, render_notice
from edge_agent import catalog
from edge_agent.labels import views
from edge_agent.labels.plan import NOTICE_PRICE, NOTICE_UNBOUND
from support.labelrig import LabelRig, files_device, item, oepl_device

A, B, C, D = "0000021D4E83B401", "0000021D4E83B402", "0000021D4E83B403", "0000021D4E83B404"
MODEL = get_model("m2-2.9-bwr")


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def ap() -> Iterator[ApEmulator]:
    emulator = ApEmulator(auto_checkin=True)
    now = int(time.time())
    for mac in (A, B, C, D):
        emulator.add_tag(mac, 0x01, last_seen=now, next_checkin=now + 600)
    emulator.start()
    yield emulator
    emulator.stop()


def uploads(ap: ApEmulator, mac: str) -> int:
    with ap.lock:
        return sum(u.mac == mac for u in ap.uploads)


def expected(sku: str, price: str, **extra) -> LabelContent:
    product = catalog.Product(sku=sku, barcodes=[f"BC-{sku}"], name=f"Product {sku}", price=Decimal(price),
                              currency="CNY", promo=None, stock_store=0, stock_online=0, rating=None, reviews=0,
                              version=1, **extra)
    return LabelContent.from_product(product, at=datetime.now(timezone.utc))


def compliant(rig: LabelRig, mac: str) -> bool:
    return mac in rig.service.labels and rig.service.monitor.wrong.get(mac) is None \
        and rig.label(mac).confirmed_at is not None


def test_a_bound_label_shows_the_checkout_price_and_is_confirmed(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, A), what="label confirmed")
            label = rig.label(A)
            assert (label.shown_price, label.shown_sku, label.source) == (Decimal("12.80"), "MILK", "config")
            assert label.shown_hash == content_hash(expected("MILK", "12.80"), MODEL)
            shown = ap.shown(A).convert("RGB").tobytes()
            assert shown == render(expected("MILK", "12.80"), MODEL).convert("RGB").tobytes()
            assert rig.service.monitor.summary()["non_compliant"] == 0
            # Saved: the table holds what memory holds.
            await rig.service.flush()
            rows = await rig.store.read(lambda c: c.execute("SELECT shown_price, confirmed_at FROM labels").fetchall())
            assert rows[0][0] == "12.80" and rows[0][1] is not None

    run(scenario())


def test_a_price_change_re_pushes_only_the_labels_whose_content_changed(tmp_path, ap):
    async def scenario():
        labels = [{"mac": A, "sku": "MILK"}, {"mac": B, "sku": "TEA"}]
        async with LabelRig(tmp_path, [oepl_device(ap.url, labels)], [item("MILK", "12.80"), item("TEA", "5.00")]) as rig:
            await rig.until(lambda: compliant(rig, A) and compliant(rig, B))
            before = uploads(ap, A), uploads(ap, B)
            await rig.set_items(item("MILK", "9.90", version=2), item("TEA", "5.00", version=2))
            await rig.until(lambda: rig.label(A).shown_price == Decimal("9.90") and compliant(rig, A))
            await rig.until(lambda: rig.service.monitor.summary()["queued"] == 0)
            assert (uploads(ap, A), uploads(ap, B)) == (before[0] + 1, before[1])
            # A stock change that does not show on the label pushes nothing either.
            rig.bus.publish("stock.changed", {"sku": "TEA", "qty": 3, "by": "hub"})
            plans = rig.service.planner.plans
            await rig.until(lambda: rig.service.planner.plans > plans)
            assert uploads(ap, B) == before[1]

    run(scenario())


def test_an_ap_answering_500_leaves_the_old_price_recorded_and_alerts_once(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, A))
            ap.fault = Fault.ERROR_500
            await rig.set_items(item("MILK", "9.90", version=2))
            # The label still shows 12.80 for the agent, and says why it is wrong.
            await rig.until(lambda: len(rig.raised("label_price_mismatch")) == 1, what="price alert")
            label = rig.label(A)
            assert label.shown_price == Decimal("12.80") and label.pushed_price == Decimal("12.80")
            [entry] = await views.compliance(rig.service)
            assert (entry.mac, entry.shown_price, entry.checkout_price) == (A, Decimal("12.80"), Decimal("9.90"))
            assert "label device labels-1 is error" in entry.reason or "failed" in entry.reason
            alert = rig.raised("label_price_mismatch")[0]
            assert (alert["mac"], alert["sku"], alert["shown_price"], alert["checkout_price"]) == \
                (A, "MILK", "12.80", "9.90")
            assert alert["device"] == "labels-1" and alert["since"]
            # More passes, no more alerts; the device shows as failing.
            passes = rig.service.monitor.passes
            await rig.until(lambda: rig.service.monitor.passes > passes + 3)
            assert len(rig.raised("label_price_mismatch")) == 1
            assert rig.supervisor.snapshot()[0].state.value in ("error", "offline")
            assert rig.raised("label_device_down")
            ap.fault = Fault.NONE
            await rig.until(lambda: compliant(rig, A) and rig.label(A).shown_price == Decimal("9.90"))
            await rig.until(lambda: len(rig.cleared("label_price_mismatch")) == 1)
            await rig.until(lambda: len(rig.cleared("label_device_down")) == 1)
            events = await rig.outbox_alerts()
            codes = [(e["code"], e["state"]) for e in events]
            assert codes.count(("label_price_mismatch", "raised")) == 1
            assert codes.count(("label_price_mismatch", "cleared")) == 1
            assert await views.compliance(rig.service) == []

    run(scenario())


@pytest.mark.parametrize("fault", [Fault.HANG, Fault.GARBAGE, Fault.NOT_READY])
def test_any_ap_failure_keeps_the_label_recorded_as_what_it_showed(tmp_path, ap, fault):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, A))
            ap.fault = fault
            await rig.set_items(item("MILK", "9.90", version=2))
            await rig.until(lambda: rig.service.monitor.wrong.get(A) is not None)
            await rig.until(lambda: rig.label(A).last_error is not None or not rig.service.device_up("labels-1"))
            assert rig.label(A).shown_price == Decimal("12.80")
            ap.fault = Fault.NONE
            await rig.until(lambda: compliant(rig, A) and rig.label(A).shown_price == Decimal("9.90"))

    run(scenario())


def test_a_price_the_label_must_not_show_becomes_a_notice_and_is_not_compliant(tmp_path, ap):
    async def scenario():
        labels = [{"mac": A, "sku": "FREE"}, {"mac": B, "sku": "GONE"}, {"mac": C, "sku": "LONG"},
                  {"mac": D, "sku": "YEN"}]
        items = [item("FREE", "0"), item("LONG", "10000000", name="长" + "x" * 299),
                 item("YEN", "12.50", currency="JPY")]  # yen have no decimals
        for t in (A, B, C, D):
            ap.tags[t].hw_type = 0x00  # 1.54" tags
        async with LabelRig(tmp_path, [oepl_device(ap.url, labels, model="m2-1.54-bwr")], items) as rig:
            await rig.until(lambda: all(rig.label(m).confirmed_at for m in (A, B, C, D)))
            free, gone, long, yen = (rig.label(m) for m in (A, B, C, D))
            assert free.desired_price is None and "not above zero" in free.desired_note
            assert gone.desired_price is None and "not in the catalog" in gone.desired_note
            assert yen.desired_price is None and "more decimals than JPY" in yen.desired_note
            # A 300-character name is shrunk and cut, and the largest price still shows.
            assert long.shown_price == Decimal("10000000") and long.desired_note is None
            # A notice for a product the checkout sells is not compliant; for one it does not sell, it is.
            await rig.until(lambda: set(rig.service.monitor.wrong) == {A, D})
            reasons = {e.mac: e.reason for e in await views.compliance(rig.service)}
            assert "cannot show the price" in reasons[A] and "cannot show the price" in reasons[D]
            notice = render_notice(NOTICE_PRICE, get_model("m2-1.54-bwr"))
            assert all(ap.shown(m).convert("RGB").tobytes() == notice.convert("RGB").tobytes() for m in (A, B, D))
            # Up: A's and D's. (On a busy machine another label may take longer than the 0.5 s grace to
            # be drawn and raise an alert of its own, cleared once it is; that is not what this checks.)
            await rig.until(lambda: {s for s, k in rig.service.alerts.active if k == "price"} == {A, D})
            # The bus events reach the rig's collector a moment after the alerts are up.
            await rig.until(lambda: {A, D} <= {a["mac"] for a in rig.raised("label_price_mismatch")})

    run(scenario())


def test_a_promotion_starting_re_prices_the_label_when_it_starts(tmp_path, ap):
    async def scenario():
        start = datetime.now(timezone.utc) + timedelta(seconds=1)
        promo = {"price": "7.50", "starts_at": start.isoformat(), "ends_at": (start + timedelta(days=2)).isoformat()}
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80", promo=promo)]) as rig:
            await rig.until(lambda: compliant(rig, A) and rig.label(A).shown_price == Decimal("12.80"))
            await rig.until(lambda: rig.label(A).shown_price == Decimal("7.50") and compliant(rig, A))
            assert rig.label(A).shown_since >= start

    run(scenario())


def test_stale_tags_and_low_batteries_raise_one_alert_each_and_clear(tmp_path):
    # Tags that check in only when told to: an upload does not make a stale tag fresh.
    ap = ApEmulator()
    ap.add_tag(A, 0x01, last_seen=int(time.time()) - 3600)
    ap.add_tag(B, 0x01, last_seen=int(time.time()), battery_mv=2400)
    ap.start()

    async def scenario():
        labels = [{"mac": A, "sku": "MILK"}, {"mac": B, "sku": "MILK"}]
        async with LabelRig(tmp_path, [oepl_device(ap.url, labels, stale_after=60, low_battery_mv=2600)],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: rig.raised("label_stale") and rig.raised("label_low_battery"))
            assert [a["mac"] for a in rig.raised("label_stale")] == [A]
            assert [a["mac"] for a in rig.raised("label_low_battery")] == [B]
            counters = rig.driver().ctx.counters
            await rig.until(lambda: counters.get("labels_stale") == 1 and counters.get("labels_low_battery") == 1)
            polls = counters["polls"]
            await rig.until(lambda: counters["polls"] > polls + 3)
            assert len(rig.raised("label_stale")) == 1 and len(rig.raised("label_low_battery")) == 1
            # A reading a little above the threshold does not clear it; a good one does.
            ap.tags[B].battery_mv = 2650
            polls = counters["polls"]
            await rig.until(lambda: counters["polls"] > polls + 3)
            assert not rig.cleared("label_low_battery")
            ap.tags[B].battery_mv = 2900
            ap.checkin(A)
            await rig.until(lambda: rig.cleared("label_stale") and rig.cleared("label_low_battery"))
            listed = {v["mac"]: v for v in await views.listing(rig.service)}
            assert listed[B]["battery_mv"] == 2900 and listed[A]["last_seen"] is not None

    try:
        run(scenario())
    finally:
        ap.stop()


def test_a_tag_of_another_hardware_type_is_not_sent_a_picture_it_cannot_show(tmp_path, ap):
    async def scenario():
        ap.tags[A].hw_type = 0x33  # an M3 2.9", 384x168
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: "hwType" in (rig.label(A).last_error or ""))
            assert "reports 0x33" in rig.label(A).last_error and rig.label(A).confirmed_at is None

    run(scenario())


def test_labels_survive_a_restart_and_nothing_unchanged_is_pushed_again(tmp_path, ap):
    async def scenario():
        devices = [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])]
        async with LabelRig(tmp_path, devices, [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, A))
        count = uploads(ap, A)
        async with LabelRig(tmp_path, devices) as rig:
            assert rig.label(A).shown_price == Decimal("12.80") and rig.label(A).confirmed_at is not None
            await rig.until(lambda: rig.service.planner.plans >= 1 and rig.service.monitor.passes >= 1)
            await rig.until(lambda: rig.service.monitor.summary()["queued"] == 0)
            assert uploads(ap, A) == count and compliant(rig, A)

    run(scenario())


def test_file_bindings_are_reapplied_at_start_and_api_bindings_kept(tmp_path, ap):
    async def scenario():
        from edge_agent.usecases.labels import bind

        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80"), item("TEA", "5.00")]) as rig:
            await bind(rig.service, B, "BC-TEA")
            await bind(rig.service, A, "TEA")  # the file says MILK: it wins at the next start
            assert rig.label(A).sku == "TEA" and rig.label(A).source == "api"
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])]) as rig:
            assert (rig.label(A).sku, rig.label(A).source) == ("MILK", "config")
            assert (rig.label(B).sku, rig.label(B).source) == ("TEA", "api")
        # Gone from the file: unbound, and it shows "not in use".
        async with LabelRig(tmp_path, [oepl_device(ap.url, [])]) as rig:
            assert rig.label(A).sku is None
            await rig.until(lambda: rig.label(A).desired_note is not None and compliant(rig, A))
            assert rig.label(A).shown_price is None and rig.label(A).desired_hash is not None
        assert NOTICE_UNBOUND

    run(scenario())


def test_the_file_back_end_writes_pngs_and_rewrites_a_deleted_one(tmp_path):
    async def scenario():
        folder = tmp_path / "labels"
        async with LabelRig(tmp_path, [files_device(folder, [{"key": "shelf-1", "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, "shelf-1"))
            png = folder / "shelf-1.png"
            assert png.exists() and rig.label("shelf-1").shown_token == content_hash(expected("MILK", "12.80"), MODEL)
            png.unlink()
            await rig.until(lambda: png.exists() and compliant(rig, "shelf-1"), what="file written again")

    run(scenario())


def test_refresh_command_pushes_again_without_a_change(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": A, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, A))
            count = uploads(ap, A)
            result = await rig.driver().command("refresh_labels", {})
            assert result == {"device": "labels-1", "queued": 1}
            await rig.until(lambda: uploads(ap, A) == count + 1)
            with pytest.raises(ValueError, match="not bound"):
                await rig.driver().command("refresh_labels", {"labels": [B]})

    run(scenario())
