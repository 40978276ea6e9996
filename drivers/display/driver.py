"""``display.pole``: shows its station's scans, running total and "Thank you" on a 2x20 pole display.

It reads the agent's bus (edge_core.bus.Bus) and nothing else:

- ``scan`` (the feed's event, edge_agent/scans.py): a product scanned at its
  station goes on line 1 with the price the checkout charges now (the promo
  price while one runs), and the running total on line 2;
- ``sale.completed`` (edge_agent/usecases/checkout.py, after the sale is on
  disk): "Thank you" and the sale's total, until ``thank_you_s`` seconds
  later the screen clears and the total starts again from zero;
- ``session.ended`` other than by a sale (idle, a new customer): blank, total
  back to zero.

One task writes: ``run`` handles the events in order and clears the thank-you
when its time is up; ``clear_display`` (a remote action) takes the same lock.
Events while the display is closed are not shown later: it shows what
happens now. On every open the display is set up and the last screen drawn
again, so an unplug in the middle of a sale loses nothing on the glass.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from drivers.base import DemoEmulator, DemoSite, DeviceConfig, Driver, DriverContext, Reporting
from drivers.display import protocol
from drivers.display.config import PoleDisplayConfig
from drivers.transport import Transport
from drivers.transport.serial import SerialTransport
from edge_core.bus import BusEvent, utcnow
from edge_core.errors import DeviceMissing

SCAN = "scan"                       # the feed's scan, with the product looked up
SALE_COMPLETED = "sale.completed"   # a sale on disk: {station, sale_id, total, currency}
SESSION_ENDED = "session.ended"     # a kiosk session's end: {station, reason}
CLEAR = "clear_display"
BLANK = ("", "")


class PoleDisplay(Driver):
    """A customer-facing 2x20 VFD on a serial line."""

    kind = "display.pole"
    Config = PoleDisplayConfig
    capabilities = frozenset({"display"})
    commands = frozenset({CLEAR})
    health_fields = ("items", "sales", "screens")
    reporting = Reporting.PUSH

    @classmethod
    def demo_emulator(cls, config: DeviceConfig, site: DemoSite) -> DemoEmulator | None:
        """A pty display for a relative ``port`` (drivers/display/emulator.py)."""
        from drivers.display.emulator import demo_emulator
        if not isinstance(config, PoleDisplayConfig):
            return None
        return demo_emulator(config.port, config.protocol, config.id, site)

    def __init__(self, config: PoleDisplayConfig, ctx: DriverContext, transport: Transport | None = None):
        super().__init__(config, ctx)
        self.cfg = config
        self.cmds = protocol.COMMANDS[config.protocol]
        self.transport = transport or SerialTransport(config.port, config.baudrate)
        self.lines: tuple[str, str] = BLANK   # what the glass shows (or will, once open)
        self.total = Decimal(0)
        self.currency = ""
        self._clear_at: float | None = None   # loop time the thank-you ends
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the port, set the display up and draw the last screen again."""
        await self.transport.open()
        async with self._write_lock:
            await self.transport.write(protocol.setup(self.cmds) + protocol.screen(self.cmds, *self.lines))

    async def close(self) -> None:
        """Close the port; safe to call twice."""
        await self.transport.close()

    async def check(self) -> None:
        """DeviceMissing when the port's path is gone (the display was unplugged)."""
        if isinstance(self.transport, SerialTransport) and not os.path.exists(self.cfg.port):
            raise DeviceMissing(f"{self.cfg.port} is gone: pole display unplugged")

    async def run(self) -> None:
        """Show the station's events as they come; clear the thank-you when its time is up."""
        loop = asyncio.get_running_loop()
        sub = self.ctx.bus.subscribe(SCAN, SALE_COMPLETED, SESSION_ENDED, maxsize=1000)
        try:
            while True:
                wait = None if self._clear_at is None else max(0.0, self._clear_at - loop.time())
                try:
                    event = await asyncio.wait_for(sub.get(), wait)
                except asyncio.TimeoutError:
                    self._clear_at = None
                    await self._show(BLANK)
                    continue
                await self.handle(event)
        finally:
            sub.close()

    async def handle(self, event: BusEvent) -> None:
        """Show what one bus event means for this station, if anything."""
        data = event.data
        if data.get("station") != self.cfg.station:
            return
        if event.type == SCAN:
            await self._scanned(data)
        elif event.type == SALE_COMPLETED:
            await self._sold(data)
        elif event.type == SESSION_ENDED and data.get("reason") != "sale":
            self._reset()
            await self._show(BLANK)

    async def command(self, action: str, args: dict[str, Any]) -> Any:
        """``clear_display``: blank the screen and start the total again."""
        if action != CLEAR:
            raise NotImplementedError(action)
        self._reset()
        await self._show(BLANK)
        return {"cleared": True}

    async def _scanned(self, data: dict[str, Any]) -> None:
        product = data.get("product")
        if not data.get("ok") or data.get("kind") != "product" or not isinstance(product, dict):
            return  # a bad scan, a member card, a code the store does not sell: nothing to charge
        price = unit_price(product)
        if price is None:
            return
        if self._clear_at is not None:  # the next customer's first item while "Thank you" shows
            self._reset()
        self.total += price
        self.currency = str(product.get("currency") or self.currency)
        self.ctx.count("items")
        await self._show((protocol.item_line(str(product.get("name") or ""), price, str(product.get("sku") or "")),
                          protocol.total_line(self.total, self.currency)))

    async def _sold(self, data: dict[str, Any]) -> None:
        total = _decimal(data.get("total"))
        currency = str(data.get("currency") or self.currency)
        self._reset()
        self.ctx.count("sales")
        self._clear_at = asyncio.get_running_loop().time() + self.cfg.thank_you_s
        await self._show((protocol.centred("Thank you"),
                          protocol.total_line(total, currency) if total is not None else ""))

    def _reset(self) -> None:
        self.total = Decimal(0)
        self._clear_at = None

    async def _show(self, lines: tuple[str, str]) -> None:
        """Remember ``lines`` and draw them (DeviceError from the transport ends the session)."""
        self.lines = lines
        async with self._write_lock:
            await self.transport.write(protocol.screen(self.cmds, *lines))
        self.ctx.count("screens")


def _decimal(value: Any) -> Decimal | None:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return out if out.is_finite() and out >= 0 else None


def unit_price(product: dict[str, Any], at: datetime | None = None) -> Decimal | None:
    """What the checkout charges for ``product`` (as the feed shows it) now: the promo price while it runs."""
    price = _decimal(product.get("price"))
    promo = product.get("promo")
    if price is None or not isinstance(promo, dict):
        return price
    promo_price = _decimal(promo.get("price"))
    now = at or utcnow()
    try:
        starts = datetime.fromisoformat(promo["starts_at"]) if promo.get("starts_at") else None
        ends = datetime.fromisoformat(promo["ends_at"]) if promo.get("ends_at") else None
    except (TypeError, ValueError):
        return price
    running = (starts is None or starts <= now) and (ends is None or now < ends)
    return promo_price if running and promo_price is not None and promo_price < price else price
