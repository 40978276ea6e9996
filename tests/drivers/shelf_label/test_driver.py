"""The two label back ends as drivers: the access point over real HTTP (emulated), and PNG files."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from PIL import Image

from drivers.base import DriverContext
from drivers.shelf_label.ap_emulator import ApEmulator, Fault
from drivers.shelf_label.config import FilesConfig, OeplConfig
from drivers.shelf_label.driver import LabelFiles, OeplLabels, Snapshot
from drivers.shelf_label.models import get_model
from drivers.shelf_label.oepl import TagNotFound, encode_jpeg
from drivers.shelf_label.render import LabelContent, render
from edge_agent.bus import EventBus
from edge_core.errors import DeviceError, DeviceMissing, DeviceProtocolError, DeviceTimeout

MAC = "0000021D4E83B4A1"


def run(coro, timeout: float = 10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Sink:
    """Records what a driver reports."""

    def __init__(self, watched: list[str] | None = None):
        self.snapshots: list[Snapshot] = []
        self._watched = watched or []
        self.refreshed: list[Any] = []

    def watched(self, device_id: str) -> list[str]:
        return self._watched

    def observed(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    async def refresh(self, device_id: str, labels: list[str] | None) -> dict:
        self.refreshed.append((device_id, labels))
        return {"device": device_id, "queued": len(labels or [])}


def ctx(device: str = "labels-1") -> DriverContext:
    return DriverContext(device, EventBus(), logging.getLogger("test"))


def oepl(url: str, **keys) -> OeplLabels:
    cfg = OeplConfig.model_validate({"id": "labels-1", "kind": "shelf_label.oepl", "url": url, "timeout": 0.3,
                                     "upload_timeout": 0.3, **keys})
    return OeplLabels(cfg, ctx())


def picture() -> Image.Image:
    return render(LabelContent(sku="MILK", name="Milk 1 L", price=Decimal("12.80"), currency="CNY"),
                  get_model("m2-2.9-bwr"))


@pytest.fixture
def ap() -> Iterator[ApEmulator]:
    emulator = ApEmulator()
    emulator.add_tag(MAC, 0x01, last_seen=int(time.time()), battery_mv=2710)
    emulator.start()
    yield emulator
    emulator.stop()


def test_open_polls_the_tags_and_a_push_reaches_the_tag(ap):
    async def scenario():
        driver = oepl(ap.url)
        sink = Sink([MAC])
        driver.attach(sink)
        await driver.open()
        try:
            assert driver.info.env == "emulator"
            [snap] = sink.snapshots
            state = snap.tags[MAC]
            assert (state.known, state.hw_type, state.battery_mv, state.pending, state.token) == (True, 1, 2710, 0,
                                                                                                 None)
            result = await driver.push(MAC, encode_jpeg(picture()), content_hash="h", alias="MILK")
            assert result.confirmed is False
            await driver.check()
            assert sink.snapshots[-1].tags[MAC].pending == 1
            assert sink.snapshots[-1].polled_at > snap.polled_at
            assert driver.ctx.counters["pushes"] == 1 and driver.ctx.counters["tags"] == 1
        finally:
            await driver.close()

    run(scenario())
    assert ap.tags[MAC].alias == "MILK"
    ap.checkin(MAC)
    assert ap.shown(MAC).convert("RGB").tobytes() == picture().convert("RGB").tobytes()


def test_bound_tags_missing_from_the_tag_list_are_asked_for_one_by_one(ap):
    other = "00000000DEADBEEF"

    async def scenario():
        driver = oepl(ap.url)
        sink = Sink([other, MAC])
        driver.attach(sink)
        await driver.open()
        await driver.close()
        return sink.snapshots[-1]

    snap = run(scenario())
    assert snap.tags[other].known is False and snap.tags[MAC].known is True
    assert any("mac=00000000DEADBEEF" in r for r in ap.requests)


@pytest.mark.parametrize("fault, error", [(Fault.ERROR_500, DeviceProtocolError), (Fault.GARBAGE, DeviceProtocolError),
                                          (Fault.HANG, DeviceTimeout)])
def test_an_unwell_access_point_fails_the_health_check(ap, fault, error):
    async def scenario():
        driver = oepl(ap.url)
        await driver.open()
        try:
            ap.fault = fault
            with pytest.raises(error):
                await driver.check()
            with pytest.raises(DeviceError):
                await driver.push(MAC, picture(), content_hash="h")
        finally:
            ap.fault = Fault.NONE
            await driver.close()

    run(scenario())


def test_an_access_point_that_is_not_there_is_missing_and_a_closed_driver_pushes_nothing(ap):
    ap.stop()

    async def scenario():
        driver = oepl(ap.url)
        with pytest.raises(DeviceMissing):
            await driver.open()
        await driver.close()
        with pytest.raises(DeviceMissing, match="not connected"):
            await driver.push(MAC, picture(), content_hash="h")

    run(scenario())


def test_a_tag_the_ap_does_not_know_is_tag_not_found(ap):
    async def scenario():
        driver = oepl(ap.url)
        await driver.open()
        try:
            with pytest.raises(TagNotFound):
                await driver.push("00000000DEADBEEF", picture(), content_hash="h")
            assert driver.ctx.counters["push_errors"] == 1
        finally:
            await driver.close()

    run(scenario())


def test_refresh_labels_asks_the_label_service_with_normalised_macs(ap):
    async def scenario():
        driver = oepl(ap.url)
        with pytest.raises(DeviceError, match="no label service"):
            await driver.command("refresh_labels", {})
        sink = Sink()
        driver.attach(sink)
        assert await driver.command("refresh_labels", {"labels": ["00:00:02:1d:4e:83:b4:a1"]}) == \
            {"device": "labels-1", "queued": 1}
        with pytest.raises(ValueError, match="list of label ids"):
            await driver.command("refresh_labels", {"labels": "all"})
        with pytest.raises(ValueError, match="not a tag MAC"):
            await driver.command("refresh_labels", {"labels": ["shelf-1"]})
        return sink.refreshed

    assert run(scenario()) == [("labels-1", [MAC])]
    assert OeplLabels.commands == LabelFiles.commands == frozenset({"refresh_labels"})


def test_the_file_back_end_writes_and_reports_each_label(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        cfg = FilesConfig.model_validate({"id": "paper-1", "kind": "shelf_label.files", "dir": str(folder)})
        driver = LabelFiles(cfg, ctx("paper-1"))
        sink = Sink(["shelf-1", "shelf-2"])
        driver.attach(sink)
        await driver.open()
        result = await driver.push("shelf-1", picture(), content_hash="abc123")
        assert (result.confirmed, result.token) == (True, "abc123")
        await driver.check()
        tags = sink.snapshots[-1].tags
        assert (tags["shelf-1"].known, tags["shelf-1"].token) == (True, "abc123")
        assert tags["shelf-2"].known is False
        assert driver.label_id("shelf-1") == "shelf-1" and driver.label_id("1d:4e:83:b4:a1:00") == "00001D4E83B4A100"
        with pytest.raises(ValueError):
            driver.label_id("../etc")
        folder.rename(tmp_path / "moved")
        with pytest.raises(DeviceMissing, match="gone"):
            await driver.check()

    run(scenario())
    assert (tmp_path / "moved" / "shelf-1.png").exists()


def test_a_folder_that_cannot_be_created_is_missing(tmp_path):
    (tmp_path / "file").write_text("x")

    async def scenario():
        cfg = FilesConfig.model_validate({"id": "paper-1", "kind": "shelf_label.files", "dir": str(tmp_path / "file" / "x")})
        with pytest.raises(DeviceMissing, match="cannot create"):
            await LabelFiles(cfg, ctx("paper-1")).open()

    run(scenario())
