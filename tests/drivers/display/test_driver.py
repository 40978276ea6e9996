"""The pole display driver against its emulator over a real pty, fed by the agent's own bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from drivers.base import DriverContext
from drivers.display.config import PoleDisplayConfig
from drivers.display.driver import PoleDisplay, unit_price
from drivers.display.emulator import PoleDisplayEmulator
from drivers.display.protocol import Protocol
from edge_agent.bus import EventBus
from edge_core.errors import DeviceMissing

WAIT_S = 30.0  # bound on any one wait; a passing run takes milliseconds


def run(coro, timeout: float = 90.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def counted(driver: PoleDisplay, expected: dict[str, int]) -> None:
    """Wait (bounded) until the driver's counters are ``expected``."""
    async with asyncio.timeout(WAIT_S):
        while driver.ctx.counters != expected:
            await asyncio.sleep(0.01)  # polling interval of a condition
    assert driver.ctx.counters == expected


def scan(station: str, name: str, price: str, **product) -> dict:
    """The feed's ``scan`` event for a product, as edge_agent/scans.py publishes it."""
    return {"device": "scanner-1", "station": station, "raw": "690", "ok": True, "code": "690", "kind": "product",
            "symbology": "ean13", "fields": {},
            "product": {"sku": "SKU-1", "name": name, "price": price, "currency": "CNY", "promo": None, **product}}


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, protocol: Protocol = Protocol.CD5220, thank_you_s: float = 0.5):
    """A plugged-in emulator, the driver opened on it and its ``run`` going; yields (bus, driver, emulator)."""
    emu = PoleDisplayEmulator(tmp_path / "dev" / "pole-1", protocol)
    await emu.start()
    cfg = PoleDisplayConfig(id="pole-1", kind="display.pole", port=str(emu.path), protocol=protocol,
                            station="kiosk-1", thank_you_s=thank_you_s)
    bus = EventBus()
    driver = PoleDisplay(cfg, DriverContext(cfg.id, bus, logging.getLogger("test.pole")))
    await driver.open()
    task = asyncio.create_task(driver.run())
    try:
        await emu.wait_for(lambda s: s.inits == 1, WAIT_S)
        # run() subscribes on its first step: wait until it has, or the first event would be missed.
        while not bus._subs:
            await asyncio.sleep(0.01)
        yield bus, driver, emu
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await driver.close()
        await emu.stop()


@pytest.mark.parametrize("protocol", list(Protocol))
def test_items_total_thank_you_then_blank(tmp_path, protocol):
    async def go():
        async with rig(tmp_path, protocol) as (bus, driver, emu):
            bus.publish("scan", scan("kiosk-1", "Lipstick Red", "189.00",
                                     promo={"price": "159.00", "starts_at": None, "ends_at": None}))
            await emu.wait_for(lambda s: s.lines == ("Lipstick Red  159.00", "TOTAL     CNY 159.00"), WAIT_S)
            bus.publish("scan", scan("kiosk-2", "Not ours", "1.00"))  # another kiosk's scan
            bus.publish("scan", scan("kiosk-1", "帆布袋 Canvas Tote", "49.90"))
            await emu.wait_for(lambda s: s.lines == ("Canvas Tote    49.90", "TOTAL     CNY 208.90"), WAIT_S)
            bus.publish("sale.completed", {"station": "kiosk-1", "sale_id": "s1", "total": "208.90",
                                           "currency": "CNY"})
            await emu.wait_for(lambda s: s.lines[0].strip() == "Thank you", WAIT_S)
            assert emu.screen.lines[1] == "TOTAL     CNY 208.90"
            # The thank-you's timer (0.5 s here) blanks the screen and the total starts again.
            await emu.wait_for(lambda s: s.text == "\n", WAIT_S)
            bus.publish("scan", scan("kiosk-1", "Tote", "49.90"))
            await emu.wait_for(lambda s: s.lines[1] == "TOTAL      CNY 49.90", WAIT_S)
            # Counted once the write returns, which may be after the emulator showed it.
            await counted(driver, {"items": 3, "sales": 1, "screens": 5})
            assert emu.screen.unknown == 0
    run(go())


def test_bad_scans_member_cards_and_unknown_codes_show_nothing(tmp_path):
    async def go():
        async with rig(tmp_path) as (bus, driver, emu):
            bus.publish("scan", {**scan("kiosk-1", "x", "1.00"), "ok": False, "reason": "bad check digit"})
            bus.publish("scan", {**scan("kiosk-1", "x", "1.00"), "kind": "member", "product": None})
            bus.publish("scan", {**scan("kiosk-1", "x", "1.00"), "product": None, "unknown_code": True})
            bus.publish("scan", scan("kiosk-1", "Odd price", "-3"))  # no price to add
            bus.publish("scan", scan("kiosk-1", "Glasses", "399.00"))
            await emu.wait_for(lambda s: s.lines[0] == "Glasses       399.00", WAIT_S)
            assert emu.screen.lines[1] == "TOTAL     CNY 399.00"
    run(go())


def test_a_customer_who_leaves_blanks_it_and_a_new_one_starts_from_zero(tmp_path):
    async def go():
        async with rig(tmp_path, thank_you_s=600) as (bus, driver, emu):
            bus.publish("scan", scan("kiosk-1", "Glasses", "399.00"))
            await emu.wait_for(lambda s: "399.00" in s.lines[1], WAIT_S)
            bus.publish("session.ended", {"station": "kiosk-1", "reason": "idle"})
            await emu.wait_for(lambda s: s.text == "\n", WAIT_S)
            bus.publish("scan", scan("kiosk-1", "Tote", "49.90"))
            await emu.wait_for(lambda s: s.lines[1] == "TOTAL      CNY 49.90", WAIT_S)
            # A long thank-you is cut short by the next customer's first item, whose total starts at zero.
            bus.publish("sale.completed", {"station": "kiosk-1", "sale_id": "s1", "total": "49.90", "currency": "CNY"})
            await emu.wait_for(lambda s: "Thank you" in s.lines[0], WAIT_S)
            bus.publish("scan", scan("kiosk-1", "Tote", "49.90"))
            await emu.wait_for(lambda s: s.lines == ("Tote           49.90", "TOTAL      CNY 49.90"), WAIT_S)
    run(go())


def test_clear_display_action_and_a_replug_redraws_the_last_screen(tmp_path):
    async def go():
        async with rig(tmp_path) as (bus, driver, emu):
            assert PoleDisplay.actions() == ("reopen", "clear_display")
            bus.publish("scan", scan("kiosk-1", "Glasses", "399.00"))
            await emu.wait_for(lambda s: "Glasses" in s.lines[0], WAIT_S)
            # Unplugged: the health check says so, as for a scanner.
            await emu.stop()
            with pytest.raises(DeviceMissing, match="unplugged"):
                await driver.check()
            await driver.close()
            await emu.start()  # a fresh display, blank, at the same path
            await driver.open()
            await emu.wait_for(lambda s: s.lines[0] == "Glasses       399.00", WAIT_S)
            assert await driver.command("clear_display", {}) == {"cleared": True}
            await emu.wait_for(lambda s: s.text == "\n", WAIT_S)
    run(go())


def test_unit_price_is_the_promo_price_only_while_it_runs():
    from datetime import datetime, timezone
    at = datetime(2026, 1, 10, tzinfo=timezone.utc)
    promo = {"price": "159.00", "starts_at": "2026-01-01T00:00:00+00:00", "ends_at": "2026-01-31T00:00:00+00:00"}
    assert str(unit_price({"price": "189.00", "promo": promo}, at)) == "159.00"
    assert str(unit_price({"price": "189.00", "promo": {**promo, "ends_at": "2026-01-05T00:00:00+00:00"}}, at)) \
        == "189.00"
    assert str(unit_price({"price": "189.00", "promo": {**promo, "starts_at": "junk"}}, at)) == "189.00"
    assert unit_price({"price": "NaN"}) is None and unit_price({"price": None}) is None
