"""The store's open alerts (edge_agent/health.py): every label's own, across bursts and restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.bus import EventBus
from edge_agent.health import OpenAlerts
from edge_agent.labels.alerts import Alerts, Change
from edge_agent.store import Store


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.01)  # polling interval of a condition


def price(mac: str, wrong: bool) -> Change:
    return Change(mac, "price", wrong, None, {"device": "labels-1", "mac": mac, "message": f"label {mac}"})


def subjects(alerts: OpenAlerts, code: str = "label_price_mismatch") -> list[str]:
    return sorted(a["subject"] for a in alerts.list() if a["code"] == code)


def test_every_label_alert_is_open_through_bursts_and_restarts(tmp_path: Path):
    async def scenario() -> None:
        store, bus = Store(tmp_path / "store.db"), EventBus()
        await store.start()
        watching = OpenAlerts(bus, store)
        await watching.start()
        labels = Alerts(store, bus, burst=2)  # past two events in one update, the rest is one summary
        macs = [f"0000021D4E83B40{i}" for i in range(5)]
        try:
            await labels.apply([price(m, True) for m in macs])
            # Six labels of one access point were one alert on the console: here each is its own.
            await until(lambda: subjects(watching) == macs, "five open label alerts")
            assert {a["device"] for a in watching.list()} == {"labels-1"}

            restarted = OpenAlerts(EventBus(), store)  # an agent started again reads them back
            await restarted.start()
            assert subjects(restarted) == macs
            await restarted.stop()

            await labels.apply([price(m, False) for m in macs[:4]])  # two cleared on the bus, two in a summary
            await until(lambda: subjects(watching) == macs[4:], "only the last label still wrong")

            bus.publish("alert.raised", {"device": "printer-1", "code": "paper_out", "state": "raised",
                                         "severity": "error", "message": "printer-1: paper out"})
            await until(lambda: subjects(watching, "paper_out") == ["printer-1"], "paper out open")
            [worst, *_] = watching.for_hub()
            assert (worst["device"], worst["code"]) == ("printer-1", "paper_out")  # the worst first
            bus.publish("alert.cleared", {"device": "printer-1", "code": "paper_out", "state": "cleared"})
            await until(lambda: subjects(watching, "paper_out") == [], "paper out cleared")
        finally:
            await watching.stop()
            await store.stop()

    asyncio.run(scenario())


def test_a_store_error_while_following_the_alerts_does_not_freeze_them(tmp_path: Path):
    async def scenario() -> None:
        from edge_agent.errors import StoreError

        store, bus = Store(tmp_path / "store.db"), EventBus()
        await store.start()
        watching = OpenAlerts(bus, store)
        await watching.start()
        real_read, failed = store.read, []

        async def read_once_broken(fn):
            if not failed:
                failed.append(True)
                raise StoreError("injected: the disk went away for a moment")
            return await real_read(fn)

        store.read = read_once_broken
        try:
            # A burst's summary makes it read label_alerts back: that read fails.
            bus.publish("alert.raised", {"device": "labels-1", "code": "label_price_mismatch", "count": 40,
                                         "state": "raised", "severity": "warning", "message": "40 more"})
            await until(lambda: failed, "the failed read")
            bus.publish("alert.raised", {"device": "printer-1", "code": "paper_out", "state": "raised",
                                         "severity": "error", "message": "printer-1: paper out"})
            await until(lambda: subjects(watching, "paper_out") == ["printer-1"], "paper out open after the failure")
        finally:
            store.read = real_read
            await watching.stop()
            await store.stop()

    asyncio.run(scenario())


def test_hub_not_acknowledging_waits_for_no_ack_progress_not_for_an_old_backlog(tmp_path: Path, monkeypatch):
    """Right after a reconnect the outbox holds the outage's events, older than the grace, while the hub
    acknowledges them as they drain: that is no reason. Past the grace without progress, it is."""
    from datetime import timedelta
    from types import SimpleNamespace

    from edge_agent import health
    from edge_core.bus import utcnow

    async def scenario() -> None:
        store = Store(tmp_path / "store.db")
        await store.start()
        try:
            link = SimpleNamespace(connected=True, offline_since=None, last_error=None, ack_progress_at=None,
                                   recent_trouble=lambda: [])
            agent = SimpleNamespace(link=link, store=store)

            async def reasons() -> list[str]:
                return [r["code"] for r in await health._hub_reasons(agent)]

            start = utcnow()
            assert await reasons() == []  # an empty outbox: nothing to acknowledge
            await store.emit("retail.device.alert", {"device": "printer-1", "code": "paper_out"})
            later = start + timedelta(seconds=health.HUB_GRACE_S * 4)  # the event waited out a long outage
            monkeypatch.setattr(health, "utcnow", lambda: later)
            link.ack_progress_at = later - timedelta(seconds=1)  # reconnected a second ago
            assert await reasons() == []
            link.ack_progress_at = later - timedelta(seconds=health.HUB_GRACE_S - 1)  # last ack in the grace
            assert await reasons() == []
            link.ack_progress_at = later - timedelta(seconds=health.HUB_GRACE_S + 1)  # silent past it
            assert await reasons() == ["hub_not_acknowledging"]
            link.ack_progress_at = start - timedelta(hours=3)  # quiet for hours, then a new sale
            monkeypatch.setattr(health, "utcnow", lambda: start + timedelta(seconds=1))
            assert await reasons() == []
            link.connected, link.offline_since = False, start - timedelta(seconds=1)
            assert await reasons() == []  # offline within its grace: hub_offline's rule, not this one
        finally:
            await store.stop()

    asyncio.run(scenario())


def test_a_one_shot_alert_leaves_the_open_list_after_its_time(tmp_path: Path):
    """A bad payload from the hub is news: nothing will clear it, so it is listed for a while, not all day."""
    async def scenario() -> None:
        store, bus = Store(tmp_path / "store.db"), EventBus()
        await store.start()
        now = [1000.0]
        watching = OpenAlerts(bus, store, one_shot_for_s=600, clock=lambda: now[0])
        await watching.start()
        bad = {"device": "hub-link", "code": "bad_downlink", "severity": "warning", "one_shot": True,
               "message": "stock: not JSON"}
        paper = {"device": "printer-1", "code": "paper_out", "state": "raised", "severity": "error",
                 "message": "printer-1: paper out"}
        try:
            bus.publish("alert.raised", bad)
            bus.publish("alert.raised", paper)
            await until(lambda: len(watching.list()) == 2, "both listed")
            now[0] += 599
            assert {a["code"] for a in watching.for_hub()} == {"bad_downlink", "paper_out"}
            bus.publish("alert.raised", bad)  # it happened again: listed for another 600 s from now
            await until(lambda: watching.list()[-1]["code"] == "bad_downlink", "raised again")
            now[0] += 599
            assert {a["code"] for a in watching.list()} == {"bad_downlink", "paper_out"}
            now[0] += 2
            assert [a["code"] for a in watching.list()] == ["paper_out"]  # a problem still there stays
            assert [a["code"] for a in watching.for_hub()] == ["paper_out"]
            now[0] += 86_400
            assert [a["code"] for a in watching.list()] == ["paper_out"]
        finally:
            await watching.stop()
            await store.stop()

    asyncio.run(scenario())
