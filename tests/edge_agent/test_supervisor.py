"""The device supervisor, watched the way the rest of the agent sees it:
``device.state`` events on the bus and ``snapshot()``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import pytest

from drivers.base import DeviceConfig, DeviceState, Driver, DriverContext
from drivers.heartbeat import protocol
from drivers.heartbeat.driver import HeartbeatConfig, HeartbeatSensor
from drivers.transport.fake import FakeTransport
from edge_agent.bus import EventBus
from edge_agent.supervisor import DeviceSnapshot, Supervisor
from edge_core.backoff import Backoff
from edge_core.errors import DeviceMissing

FAST = Backoff(initial=0.01, cap=0.05)
SLOW = Backoff(initial=60, cap=60, jitter=0)  # a retry that will not come during a test
LOGGER = "edge_agent.supervisor"


def run(coro, timeout: float = 60.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# Helpers -------------------------------------------------------------------


class Watcher:
    """Reads ``device.state`` events off the bus and keeps every one it saw."""

    def __init__(self, bus: EventBus):
        self.sub = bus.subscribe("device.state")
        self.seen: list[dict] = []

    async def until(self, device: str, state: str, timeout: float = 20.0) -> dict:
        """The next event putting ``device`` in ``state``."""
        async with asyncio.timeout(timeout):
            while True:
                data = (await self.sub.get()).data
                self.seen.append(data)
                if data["id"] == device and data["state"] == state:
                    return data

    def states(self, device: str) -> list[str]:
        return [d["state"] for d in self.seen if d["id"] == device]


class Pinged:
    """A FakeTransport reply rule answering PING like a heartbeat device; counts pings."""

    def __init__(self) -> None:
        self.pings = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def __call__(self, data: bytes) -> bytes | None:
        if data != protocol.PING:
            return None
        self.pings += 1
        for n, event in self._waiters:
            if self.pings >= n:
                event.set()
        return protocol.pong(self.pings)

    async def reach(self, n: int, timeout: float = 20.0) -> None:
        """Wait until ``n`` pings in all have been answered."""
        event = asyncio.Event()
        self._waiters.append((n, event))
        if self.pings >= n:
            event.set()
        await asyncio.wait_for(event.wait(), timeout)


def heartbeat(device_id: str, interval: float = 0.01) -> HeartbeatConfig:
    return HeartbeatConfig(id=device_id, kind="sensor.heartbeat", interval=interval, timeout=0.5)


class ScriptedConfig(DeviceConfig):
    kind: Literal["test.scripted"]


Hook = Callable[[int], Awaitable[None]]


class ScriptedDriver(Driver):
    """A driver whose open/check/run/close do what a test says; ``n`` is the open attempt (1-based)."""

    kind = "test.scripted"
    Config = ScriptedConfig
    check_interval = 0.01
    op_timeout = 0.1

    def __init__(self, config, ctx, *, open: Hook | None = None, check: Hook | None = None,
                 run: Hook | None = None, close: Hook | None = None):
        super().__init__(config, ctx)
        self.hooks = {"open": open, "check": check, "run": run, "close": close}
        self.opens = 0
        self.open_calls: asyncio.Queue[int] = asyncio.Queue()

    async def _hook(self, name: str) -> None:
        if self.hooks[name] is not None:
            await self.hooks[name](self.opens)

    async def open(self) -> None:
        self.opens += 1
        self.open_calls.put_nowait(self.opens)
        await self._hook("open")

    async def check(self) -> None:
        await self._hook("check")

    async def run(self) -> None:
        if self.hooks["run"] is None:
            await super().run()
        else:
            await self._hook("run")

    async def close(self) -> None:
        await self._hook("close")

    async def opened(self, n: int, timeout: float = 20.0) -> None:
        """Wait until open has been called ``n`` times in all."""
        async with asyncio.timeout(timeout):
            while self.opens < n:
                await self.open_calls.get()


def scripted(device_id: str) -> ScriptedConfig:
    return ScriptedConfig(id=device_id, kind="test.scripted")


def supervisor(builders: dict[str, Callable[[DeviceConfig, DriverContext], Driver]], configs: list[DeviceConfig],
               backoff: Backoff = FAST) -> tuple[Supervisor, Watcher]:
    bus = EventBus()
    watcher = Watcher(bus)
    sup = Supervisor(configs, {}, bus, backoff, factory=lambda cfg, ctx: builders[cfg.id](cfg, ctx))
    return sup, watcher


def hb_builder(transport: FakeTransport):
    return lambda cfg, ctx: HeartbeatSensor(cfg, ctx, transport)


async def _forever(_: int) -> None:
    await asyncio.Event().wait()


# Lifecycle ---------------------------------------------------------------


def test_starting_then_online():
    async def main():
        t = FakeTransport("tcp", replies=Pinged())
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")])
        await sup.start()
        online = await w.until("hb-1", "online")
        assert w.states("hb-1") == ["starting", "online"]
        assert w.seen[0]["previous"] == "offline"
        assert online["previous"] == "starting"
        assert online["kind"] == "sensor.heartbeat" and online["last_error"] is None
        snap = sup.snapshot()[0]
        assert snap.state is DeviceState.ONLINE and snap.since.isoformat() == online["since"]
        await sup.stop()

    run(main())


def test_disabled_devices_get_no_owner():
    cfg = HeartbeatConfig(id="hb-off", kind="sensor.heartbeat", enabled=False)
    sup = Supervisor([cfg], {"sensor.heartbeat": HeartbeatSensor}, EventBus())
    assert sup.owners == {}


def test_unplug_goes_offline_and_plug_comes_back_by_itself():
    async def main():
        replies = Pinged()
        t = FakeTransport("tcp", replies=replies)
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")])
        await sup.start()
        online = await w.until("hb-1", "online")
        t.unplug()
        offline = await w.until("hb-1", "offline")
        assert offline["previous"] == "online"
        assert offline["last_error"]
        assert offline["since"] > online["since"]
        assert sup.snapshot()[0].state is DeviceState.OFFLINE
        t.plug()
        back = await w.until("hb-1", "online")
        assert back["previous"] == "offline"  # retries do not flap through "starting"
        assert back["since"] > offline["since"]
        assert t.opens == 2
        await replies.reach(replies.pings + 2)  # health checks run again
        await sup.stop()

    run(main())


def test_missing_at_start_is_offline_and_retried_not_fatal():
    async def main():
        t = FakeTransport("tcp", replies=Pinged())
        t.unplug()
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")])
        await sup.start()  # returns although the device is not there
        offline = await w.until("hb-1", "offline")
        assert "unplugged" in offline["last_error"]
        t.plug()
        await w.until("hb-1", "online")
        snap = sup.snapshot()[0]
        assert snap.last_error == offline["last_error"]  # kept: why it last failed
        assert snap.counters["failures"] >= 1
        await sup.stop()

    run(main())


# Failures ------------------------------------------------------------------


def test_driver_bug_is_error_and_other_device_stays_online(caplog):
    async def main():
        async def boom(_: int) -> None:
            raise RuntimeError("boom")

        bugs: list[ScriptedDriver] = []

        def buggy(cfg, ctx):
            bugs.append(ScriptedDriver(cfg, ctx, open=boom, close=boom))  # close is buggy too
            return bugs[-1]

        replies = Pinged()
        t = FakeTransport("tcp", replies=replies)
        sup, w = supervisor({"bug-1": buggy, "hb-1": hb_builder(t)}, [scripted("bug-1"), heartbeat("hb-1")])
        await sup.start()
        error = await w.until("bug-1", "error")
        assert "RuntimeError" in error["last_error"] and "boom" in error["last_error"]
        await bugs[0].opened(4)  # it keeps being retried: the owner survived the bug
        snaps = {s.id: s for s in sup.snapshot()}
        assert snaps["bug-1"].state is DeviceState.ERROR
        assert snaps["hb-1"].state is DeviceState.ONLINE
        await replies.reach(replies.pings + 3)  # and the healthy one keeps being checked
        assert "offline" not in w.states("hb-1") and "error" not in w.states("hb-1")
        await sup.stop()

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(main())
    failures = [r for r in caplog.records if r.name == LOGGER and "bug-1" in r.getMessage()]
    assert len(failures) == 1  # once, with the traceback, not once per retry
    assert failures[0].exc_info is not None


def test_check_that_hangs_is_error_after_op_timeout():
    async def main():
        sup, w = supervisor({"dev-1": lambda cfg, ctx: ScriptedDriver(cfg, ctx, check=_forever)},
                            [scripted("dev-1")], SLOW)
        await sup.start()
        online = await w.until("dev-1", "online")
        error = await w.until("dev-1", "error")
        assert "health check took over 0.1 s" in error["last_error"]
        assert error["since"] > online["since"]
        await sup.stop()

    run(main())


def test_open_that_hangs_is_offline_after_op_timeout():
    async def main():
        sup, w = supervisor({"dev-1": lambda cfg, ctx: ScriptedDriver(cfg, ctx, open=_forever)},
                            [scripted("dev-1")], SLOW)
        await sup.start()
        offline = await w.until("dev-1", "offline")
        assert "no answer while opening" in offline["last_error"]
        await sup.stop()

    run(main())


def test_run_returning_ends_the_session_and_the_device_is_reopened():
    async def main():
        async def ends_first_time(n: int) -> None:
            if n > 1:
                await _forever(n)

        drivers: list[ScriptedDriver] = []

        def build(cfg, ctx):
            drivers.append(ScriptedDriver(cfg, ctx, run=ends_first_time))
            return drivers[-1]

        sup, w = supervisor({"dev-1": build}, [scripted("dev-1")])
        sup.driver("dev-1").check_interval = 60  # only run() can end the session
        await sup.start()
        await w.until("dev-1", "online")
        offline = await w.until("dev-1", "offline")
        assert "run() returned" in offline["last_error"]
        await w.until("dev-1", "online")
        assert drivers[0].opens == 2
        await sup.stop()

    run(main())


def test_cancelled_error_from_a_driver_does_not_kill_its_owner():
    async def open_cancelled_first_time(n: int) -> None:
        if n == 1:
            raise asyncio.CancelledError()

    async def run_cancelled_second_time(n: int) -> None:
        if n == 2:
            raise asyncio.CancelledError()
        await _forever(n)

    async def main():
        sup, w = supervisor({"dev-1": lambda cfg, ctx: ScriptedDriver(
            cfg, ctx, open=open_cancelled_first_time, run=run_cancelled_second_time)}, [scripted("dev-1")])
        sup.driver("dev-1").check_interval = 60
        await sup.start()
        for state in ("error", "online", "error", "online"):  # each a driver bug; the owner lives on
            data = await w.until("dev-1", state)
            if state == "error":
                assert "CancelledError" in data["last_error"]
        assert sup.driver("dev-1").opens == 3
        await sup.stop()

    run(main())


def test_failure_logged_once_while_failing_and_once_on_recovery(caplog):
    async def main():
        class CountingTransport(FakeTransport):
            attempts: asyncio.Queue[int]

            async def open(self) -> None:
                self.attempts.put_nowait(1)
                await super().open()

        t = CountingTransport("tcp", replies=Pinged())
        t.attempts = asyncio.Queue()
        t.unplug()
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")])
        await sup.start()
        for _ in range(5):  # five failed opens in a row
            await asyncio.wait_for(t.attempts.get(), 2)
        t.plug()
        await w.until("hb-1", "online")
        assert sup.snapshot()[0].counters["failures"] >= 5
        assert w.states("hb-1") == ["starting", "offline", "online"]  # no event per retry either
        await sup.stop()

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(main())
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert len(records) == 2, [r.getMessage() for r in records]
    assert "offline" in records[0].getMessage()
    assert "back online" in records[1].getMessage()


# Backoff -------------------------------------------------------------------


def test_supervisor_backoff_grows_while_failing_and_restarts_after_recovery():
    async def main():
        attempts: list[int] = []

        @dataclasses.dataclass(frozen=True)
        class Recording(Backoff):
            def delay(self, attempt: int) -> float:
                attempts.append(attempt)
                return 0.001

        async def fails(n: int) -> None:
            if n in (1, 2, 3, 5, 6):  # the end of session 4 is the first failure of the second outage
                raise DeviceMissing("not yet")

        async def first_session_ends(n: int) -> None:
            if n == 4:
                return
            await _forever(n)

        d: list[ScriptedDriver] = []

        def build(cfg, ctx):
            d.append(ScriptedDriver(cfg, ctx, open=fails, run=first_session_ends))
            return d[-1]

        sup, w = supervisor({"dev-1": build}, [scripted("dev-1")], Recording())
        sup.driver("dev-1").check_interval = 60
        await sup.start()
        await d[0].opened(7)
        await w.until("dev-1", "online")
        await w.until("dev-1", "online")
        assert attempts == [0, 1, 2, 0, 1, 2]  # back online resets the backoff
        await sup.stop()

    run(main())


# Reopen, busy, stop, snapshot ------------------------------------------------


def test_reopen_closes_and_reopens_at_once():
    async def main():
        closes: list[int] = []

        async def record_close(n: int) -> None:
            closes.append(n)

        sup, w = supervisor({"dev-1": lambda cfg, ctx: ScriptedDriver(cfg, ctx, close=record_close)},
                            [scripted("dev-1")], SLOW)
        sup.driver("dev-1").check_interval = 60
        await sup.start()
        await w.until("dev-1", "online")
        sup.owners["dev-1"].reopen()
        await w.until("dev-1", "starting")
        await w.until("dev-1", "online")
        assert closes == [1]
        assert sup.driver("dev-1").opens == 2
        await sup.stop()

    run(main())


def test_reopen_skips_the_backoff_wait():
    async def main():
        t = FakeTransport("tcp", replies=Pinged())
        t.unplug()
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")], SLOW)  # next retry in 60 s
        await sup.start()
        await w.until("hb-1", "offline")
        t.plug()
        sup.owners["hb-1"].reopen()
        await w.until("hb-1", "online", timeout=20)
        await sup.stop()

    run(main())


def test_busy_shows_busy_then_online():
    async def main():
        sup, w = supervisor({"dev-1": lambda cfg, ctx: ScriptedDriver(cfg, ctx)}, [scripted("dev-1")], SLOW)
        await sup.start()
        await w.until("dev-1", "online")
        async with sup.driver("dev-1").busy():
            busy = await w.until("dev-1", "busy")
            assert busy["previous"] == "online"
            assert sup.snapshot()[0].state is DeviceState.BUSY
        back = await w.until("dev-1", "online")
        assert back["previous"] == "busy"
        await sup.stop()

    run(main())


def test_busy_on_an_offline_device_does_not_make_it_look_online():
    async def main():
        t = FakeTransport("tcp")
        t.unplug()
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")], SLOW)
        await sup.start()
        await w.until("hb-1", "offline")
        async with sup.driver("hb-1").busy():
            pass
        assert sup.snapshot()[0].state is DeviceState.OFFLINE
        await sup.stop()
        assert w.states("hb-1") == ["starting", "offline"]

    run(main())


def test_stop_is_prompt_mid_backoff_and_mid_open_and_leaves_no_task():
    async def main():
        t = FakeTransport("tcp")
        t.unplug()
        closed: list[int] = []

        async def record_close(n: int) -> None:
            closed.append(n)

        def hanging(cfg, ctx):
            d = ScriptedDriver(cfg, ctx, open=_forever, close=record_close)
            d.op_timeout = 60
            return d

        sup, w = supervisor({"hb-1": hb_builder(t), "dev-1": hanging},
                            [heartbeat("hb-1"), scripted("dev-1")], SLOW)
        before = asyncio.all_tasks()
        await sup.start()
        await w.until("hb-1", "offline")  # now waiting 60 s to retry
        await w.until("dev-1", "starting")
        await sup.driver("dev-1").opened(1)  # now inside a 60 s open
        await asyncio.wait_for(sup.stop(), 1)
        assert closed == [1]  # the half-opened device was closed
        assert asyncio.all_tasks() == before

    run(main())


def test_start_twice_runs_one_owner_and_stop_twice_is_safe():
    async def main():
        t = FakeTransport("tcp", replies=Pinged())
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1", interval=60)])
        before = asyncio.all_tasks()
        await sup.start()
        await sup.start()
        await w.until("hb-1", "online")
        owners = [t for t in asyncio.all_tasks() - before if t.get_name().startswith("device:")]
        assert len(owners) == 1
        await sup.stop()
        await sup.stop()
        assert asyncio.all_tasks() == before
        assert t.opens == 1

    run(main())


def test_snapshot_is_frozen_and_counters_are_a_copy():
    async def main():
        replies = Pinged()
        t = FakeTransport("tcp", replies=replies)
        sup, w = supervisor({"hb-1": hb_builder(t)}, [heartbeat("hb-1")])
        await sup.start()
        await w.until("hb-1", "online")
        snap = sup.snapshot()[0]
        assert isinstance(snap, DeviceSnapshot)
        with pytest.raises(dataclasses.FrozenInstanceError):
            snap.state = DeviceState.ERROR  # type: ignore[misc]
        beats = snap.counters["beats"]
        snap.counters["beats"] = -1
        snap.as_dict()["counters"]["beats"] = -2
        assert sup.driver("hb-1").ctx.counters["beats"] >= beats
        await replies.reach(replies.pings + 1)
        assert snap.counters["beats"] == -1  # an old snapshot does not change under its reader
        d = sup.snapshot()[0].as_dict()
        assert set(d) == {"id", "kind", "state", "since", "last_error", "counters", "actions"}
        assert d["state"] == "online" and d["counters"]["beats"] > beats
        assert d["actions"] == ["reopen"]
        json.dumps(d)
        await sup.stop()

    run(main())


# Changing the devices while running (a new devices.yaml from the hub) -------


def test_add_remove_and_replace_touch_only_the_device_named():
    async def main():
        keep, gone, changed, new = (FakeTransport("tcp", replies=Pinged()) for _ in range(4))
        changed2 = FakeTransport("tcp", replies=Pinged())
        made: dict[str, list[FakeTransport]] = {"keep": [keep], "gone": [gone], "changed": [changed, changed2],
                                                "new": [new]}
        bus = EventBus()
        w = Watcher(bus)
        sup = Supervisor([heartbeat("keep"), heartbeat("gone"), heartbeat("changed")], {}, bus, FAST,
                         factory=lambda cfg, ctx: HeartbeatSensor(cfg, ctx, made[cfg.id].pop(0)))
        await sup.start()
        for d in ("keep", "gone", "changed"):
            await w.until(d, "online")
        since = {s.id: s.since for s in sup.snapshot()}
        seen_before = len(w.seen)
        removed = bus.subscribe("device.removed")

        await sup.remove("gone")
        assert (await removed.get()).data == {"id": "gone", "kind": "sensor.heartbeat"}
        await sup.replace(heartbeat("changed", interval=0.02))
        await sup.add(heartbeat("new"))
        await w.until("changed", "online")
        await w.until("new", "online")
        with pytest.raises(ValueError, match="already supervised"):
            await sup.add(heartbeat("keep"))

        snaps = {s.id: s for s in sup.snapshot()}
        assert set(snaps) == {"keep", "changed", "new"} and set(sup.configs) == set(snaps)
        assert sup.configs["changed"].interval == 0.02
        assert snaps["keep"].since == since["keep"] and keep.opens == 1  # untouched
        assert changed.opens == 1 and changed2.opens == 1 and snaps["changed"].since > since["changed"]
        assert "keep" not in [d["id"] for d in w.seen[seen_before:]]  # no state change at all on the one left alone
        await sup.remove("nobody")  # nothing to do
        await sup.stop()

    run(main())


def test_a_device_added_before_start_waits_for_it():
    async def main():
        t = FakeTransport("tcp", replies=Pinged())
        sup, w = supervisor({"hb-1": hb_builder(t)}, [])
        await sup.add(heartbeat("hb-1"))
        assert t.opens == 0 and sup.snapshot()[0].state == DeviceState.OFFLINE
        await sup.start()
        await w.until("hb-1", "online")
        await sup.stop()

    run(main())
