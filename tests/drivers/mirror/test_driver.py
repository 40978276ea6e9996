"""The mirror as a supervised device: its own process, restarted when it dies or its camera stalls."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from drivers.base import DeviceState, DriverContext  # noqa: E402
from drivers.mirror.driver import SESSION_ENDED, MirrorCamera, StallWatch  # noqa: E402
from drivers.registry import drivers  # noqa: E402
from edge_agent.bus import EventBus  # noqa: E402
from edge_core.errors import DeviceError, DeviceMissing  # noqa: E402
from edge_agent.supervisor import Supervisor  # noqa: E402
from edge_core.backoff import Backoff  # noqa: E402


def run(coro, timeout: float = 180.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging (generous: a mirror process
    loads MediaPipe at each start, which a busy machine makes slow, not wrong)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def config(**keys):
    entry = {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic", "station": "mirror-1",
             "width": 320, "height": 240, **keys}
    return MirrorCamera.Config.model_validate(entry)


def make_driver(bus: EventBus, **keys) -> MirrorCamera:
    return MirrorCamera(config(**keys), DriverContext("mirror-1", bus, logging.getLogger("test.mirror")))


async def next_state(sub, wanted: DeviceState, timeout: float = 30.0) -> dict:
    """The next device.state event that enters ``wanted``."""
    async with asyncio.timeout(timeout):
        while True:
            event = await sub.get()
            if event.data["state"] == wanted.value:
                return event.data


def test_the_stall_watch_counts_from_the_last_new_frame():
    now = [0.0]
    watch = StallWatch(5.0, clock=lambda: now[0])
    watch.saw(10)
    now[0] = 4.0
    watch.saw(10)  # the same count again is no progress
    assert watch.remaining() == pytest.approx(1.0)
    watch.saw(11)
    assert watch.remaining() == pytest.approx(5.0)


def test_a_killed_mirror_process_ends_the_session_with_why():
    run(_a_killed_mirror_process_ends_the_session_with_why())


async def _a_killed_mirror_process_ends_the_session_with_why():
    driver = make_driver(EventBus())
    await driver.open()
    try:
        assert driver.stream_name and driver.pid
        run = asyncio.create_task(driver.run())
        os.kill(driver.pid, signal.SIGKILL)
        with pytest.raises(DeviceError, match="killed by SIGKILL"):
            await asyncio.wait_for(run, 30)
    finally:
        await driver.close()
    assert driver.pid is None and driver.stream_name is None


def test_a_missing_camera_shows_offline_not_error():
    run(_a_missing_camera_shows_offline_not_error())


async def _a_missing_camera_shows_offline_not_error():
    driver = make_driver(EventBus(), source="/dev/v4l/by-id/usb-no-such-camera-video-index0")
    with pytest.raises(DeviceMissing, match="no such camera"):
        await driver.open()
    await driver.close()


def test_the_supervisor_restarts_a_killed_or_stalled_mirror_and_keeps_the_look():
    run(_the_supervisor_restarts_a_killed_or_stalled_mirror_and_keeps_the_look())


async def _the_supervisor_restarts_a_killed_or_stalled_mirror_and_keeps_the_look():
    bus = EventBus()
    sub = bus.subscribe("device.state")
    # Short enough to wait for, long enough that a busy machine's pause between two frames is no stall:
    # at 1 s such a pause before the SIGKILL would show as "stalled" instead of the kill.
    cfg = config(stall_timeout=5.0)
    supervisor = Supervisor([cfg], drivers(), bus, Backoff(initial=0.1, cap=0.2, jitter=0))
    driver: MirrorCamera = supervisor.driver("mirror-1")  # type: ignore[assignment]
    await supervisor.start()
    try:
        await next_state(sub, DeviceState.ONLINE)
        tryons = driver.tryons()
        driver.set_look([tryons["LIP-RED-01"].layer("LIP-RED-01")])
        first = driver.pid
        # A crash: the device shows error with the reason, then comes back by itself.
        os.kill(first, signal.SIGKILL)
        failed = await next_state(sub, DeviceState.ERROR)
        assert "SIGKILL" in failed["last_error"]
        await next_state(sub, DeviceState.ONLINE)
        second = driver.pid
        assert second not in (None, first)
        # A stall: a process that makes no progress (stopped here) is killed and replaced.
        os.kill(second, signal.SIGSTOP)
        failed = await next_state(sub, DeviceState.ERROR)
        assert "camera stalled" in failed["last_error"]
        await next_state(sub, DeviceState.ONLINE)
        assert driver.pid not in (None, first, second)
        assert [layer.sku for layer in driver.look.layers] == ["LIP-RED-01"]
        assert driver.ctx.counters["starts"] == 3
    finally:
        await supervisor.stop()
    assert driver.pid is None


def test_a_session_ends_on_done_and_is_published_with_its_basket():
    run(_a_session_ends_on_done_and_is_published_with_its_basket())


async def _a_session_ends_on_done_and_is_published_with_its_basket():
    bus = EventBus()
    sub = bus.subscribe(SESSION_ENDED)
    driver = make_driver(bus)
    tryons = driver.tryons()
    driver.set_look([tryons["GLS-ROUND-BLK"].layer("GLS-ROUND-BLK")])
    driver.add_to_basket("GLS-ROUND-BLK", 1, "online")
    data = driver.end_session()
    assert data is not None and (await sub.get()).data == data
    assert data["tried"][0]["sku"] == "GLS-ROUND-BLK"
    assert data["basket"] == [{"sku": "GLS-ROUND-BLK", "qty": 1, "channel": "online"}]
    assert driver.look.layers == ()  # the next customer starts with nothing on
    assert driver.basket.as_dict()["lines"][0]["sku"] == "GLS-ROUND-BLK"  # the basket waits for the kiosk


def test_a_bad_products_file_is_a_device_error_before_any_process_starts(tmp_path):
    (tmp_path / "tryon.yaml").write_text("LIP-1:\n  kind: lipstick\n  shade: red\n")
    driver = make_driver(EventBus(), products=str(tmp_path / "tryon.yaml"))
    with pytest.raises(DeviceError, match="LIP-1"):
        run(driver.open())
    assert driver.pid is None
