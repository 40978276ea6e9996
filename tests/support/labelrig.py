"""An in-process label setup for tests: the real Store on disk, the real supervisor
and label drivers, the LabelService, and emulated access points over real HTTP.

    async with LabelRig(tmp_path, devices=[oepl_device(ap.url, labels=[...])], items=[...]) as rig:
        await rig.until(lambda: rig.label(MAC).confirmed_at is not None)

Everything waits on conditions with a deadline (``until``), never on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from drivers.registry import drivers
from edge_agent import catalog
from edge_agent.bus import EventBus
from edge_agent.config import AgentConfig, parse
from edge_agent.labels import LabelService
from edge_agent.labels.table import Label
from edge_agent.store import Store
from edge_agent.supervisor import Supervisor
from edge_core.backoff import Backoff
from edge_core.bus import BusEvent


def oepl_device(url: str, labels: list[dict] | None = None, id: str = "labels-1", **keys: Any) -> dict:
    """A ``shelf_label.oepl`` device entry with short intervals for tests."""
    return {"id": id, "kind": "shelf_label.oepl", "url": url, "poll_interval": 0.1, "timeout": 0.5,
            "upload_timeout": 0.5, "retries": 1, "compliance_grace": 0.5, "stock_delay": 0.2, "labels": labels or [],
            **keys}


def files_device(directory: Path, labels: list[dict] | None = None, id: str = "paper-1", **keys: Any) -> dict:
    """A ``shelf_label.files`` device entry with short intervals for tests."""
    return {"id": id, "kind": "shelf_label.files", "dir": str(directory), "poll_interval": 0.1,
            "compliance_grace": 0.5, "stock_delay": 0.2, "labels": labels or [], **keys}


def item(sku: str, price: str, version: int = 1, **extra: Any) -> catalog.CatalogItem:
    """A catalog item with a name and a barcode (``BC-<sku>``)."""
    return catalog.CatalogItem.model_validate({"sku": sku, "barcodes": [f"BC-{sku}"], "name": f"Product {sku}",
                                               "price": price, "currency": "CNY", "version": version, **extra})


def config(devices: list[dict]) -> AgentConfig:
    """A validated config with these devices (through the real YAML path)."""
    return parse(yaml.safe_dump({"store": {"id": "store-test", "name": "Test", "timezone": "Asia/Shanghai"},
                                 "devices": devices}))


class LabelRig:
    """Store + bus + supervisor + LabelService, started and stopped together."""

    def __init__(self, tmp_path: Path, devices: list[dict], items: list[catalog.CatalogItem] = (),
                 db: str = "store.db", render_processes: int = 0):
        self.config = config(devices)
        self.path = tmp_path / db
        self.items = list(items)
        self.bus = EventBus()
        self.store = Store(self.path)
        self.supervisor = Supervisor(self.config.devices, drivers(), self.bus, Backoff(initial=0.05, cap=0.2))
        # A render thread by default, not a process: a test starts many services and each would
        # spawn one. ``render_processes=1`` draws as the agent does, in a worker process.
        self.service = LabelService(self.config, self.store, self.bus, self.supervisor,
                                    render_processes=render_processes)
        self.alerts: list[BusEvent] = []
        self._sub = self.bus.subscribe("alert.")
        self._collect: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "LabelRig":
        await self.store.start()
        if self.items:
            await self.store.write(lambda tx: catalog.upsert(tx.conn, self.items))
        self._collect = asyncio.create_task(self._alerts())
        await self.service.start()
        await self.supervisor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stop()
        await self.supervisor.stop()
        await self.store.stop()
        if self._collect is not None:
            self._collect.cancel()
        self._sub.close()

    async def _alerts(self) -> None:
        async for event in self._sub:
            self.alerts.append(event)

    def label(self, mac: str) -> Label:
        """The service's label ``mac``."""
        return self.service.labels[mac]

    def driver(self, device: str = "labels-1") -> Any:
        """The driver of a device."""
        return self.supervisor.driver(device)

    async def until(self, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        """Return once ``condition()`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what or condition}")
            await asyncio.sleep(0.01)

    async def set_items(self, *items: catalog.CatalogItem) -> None:
        """Change the catalog as the hub downlink does: store, then ``catalog.updated`` on the bus."""
        await self.store.write(lambda tx: catalog.upsert(tx.conn, list(items)))
        self.bus.publish("catalog.updated", {"skus": [i.sku for i in items], "applied": len(items)})

    async def outbox_alerts(self) -> list[dict]:
        """The retail.device.alert events in the outbox, in seq order."""
        from edge_agent.store import outbox

        events = await self.store.read(lambda c: outbox.pending(c, 0, 10_000))
        return [e.data for e in events if e.type == "retail.device.alert"]

    def raised(self, code: str) -> list[dict]:
        """``alert.raised`` bus events with ``code``."""
        return [e.data for e in self.alerts if e.type == "alert.raised" and e.data.get("code") == code]

    def cleared(self, code: str) -> list[dict]:
        """``alert.cleared`` bus events with ``code``."""
        return [e.data for e in self.alerts if e.type == "alert.cleared" and e.data.get("code") == code]


def price(value: str) -> Decimal:
    """A Decimal price."""
    return Decimal(value)
