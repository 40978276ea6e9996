"""Drift with the real service, drivers and back ends: a picture someone else put on a label is
noticed and replaced, and the agent's own push, seen by a poll before it returned, is not taken
for one."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import pytest
from PIL import Image
from support.labelrig import LabelRig, files_device, item, oepl_device

from drivers.shelf_label.ap_emulator import ApEmulator
from drivers.shelf_label.driver import Snapshot
from drivers.shelf_label.files import FileLabels
from drivers.shelf_label.models import get_model
from drivers.shelf_label.oepl import OeplClient
from edge_core.bus import utcnow

MAC = "0000021D4E83B401"
TAGS = (MAC,)  # the one tag on the access point (conftest.ap)
KEY = "shelf-1"
MODEL = get_model("m2-2.9-bwr")
DRIFT = "no longer show what was pushed"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def compliant(rig: LabelRig, label: str) -> bool:
    return rig.service.monitor.wrong.get(label) is None and rig.label(label).confirmed_at is not None \
        and not rig.label(label).outstanding


def drift_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if DRIFT in r.getMessage()]


def setup(kind: str, tmp_path, ap: ApEmulator | None) -> tuple[dict, str, str]:
    """(device entry, label id, device id) of one label of MILK on the ``kind`` back end."""
    if kind == "oepl":
        return oepl_device(ap.url, [{"mac": MAC, "sku": "MILK"}]), MAC, "labels-1"
    return files_device(tmp_path / "labels", [{"key": KEY, "sku": "MILK"}]), KEY, "paper-1"


@pytest.fixture(params=["oepl", "files"])
def kind(request) -> str:
    return request.param


def test_a_push_seen_by_a_poll_before_it_returns_is_not_drift(tmp_path, ap, kind, caplog):
    """The back end shows the new picture (the file is renamed into place, the tag checks in during
    its upload) before ``push`` returns; a poll that reads it and is looked at in that window saw the
    agent's own push, not someone else's picture: no re-push, no alert."""
    caplog.set_level(logging.INFO, logger="edge_agent.labels.service")

    async def scenario():
        device, label, dev_id = setup(kind, tmp_path, ap)
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, label), what="first price confirmed")
            svc, driver = rig.service, rig.driver(dev_id)
            looked_at: list[Snapshot] = []
            apply = svc._apply

            def recording_apply(snapshot: Snapshot) -> None:
                apply(snapshot)
                looked_at.append(snapshot)

            svc._apply = recording_apply
            push, pushes = driver.push, []

            async def push_then_wait_for_a_poll(*args, **kwargs):
                result = await push(*args, **kwargs)
                pushes.append(args[0])
                shown: datetime = utcnow()  # the back end shows the new picture from now on
                # Hold the push until a poll begun after that has been looked at by the service.
                await rig.until(lambda: any(s.polled_at > shown for s in looked_at), what="a poll looked at")
                return result

            driver.push = push_then_wait_for_a_poll
            await rig.set_items(item("MILK", "9.90", version=2))
            await rig.until(lambda: rig.label(label).shown_price == rig.label(label).desired_price
                            and str(rig.label(label).shown_price) == "9.90" and compliant(rig, label),
                            what="new price confirmed")
            # A few more polls: none of them finds drift either.
            seen = len(looked_at)
            await rig.until(lambda: len(looked_at) >= seen + 3, what="more polls")
            assert drift_lines(caplog) == []
            assert pushes == [label] and rig.label(label).last_error is None
            assert rig.raised("label_price_mismatch") == []

    run(scenario())


def test_a_picture_someone_else_put_on_the_label_is_noticed_and_replaced(tmp_path, ap, kind, caplog):
    """Real drift still counts: a file replaced by another picture, a tag given another picture
    through the AP's own upload (its web page)."""
    caplog.set_level(logging.INFO, logger="edge_agent.labels.service")

    async def scenario():
        device, label, dev_id = setup(kind, tmp_path, ap)
        async with LabelRig(tmp_path, [device], [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: compliant(rig, label), what="first price confirmed")
            ours = rig.label(label).shown_token
            foreign = Image.new("RGB", (MODEL.width, MODEL.height), "black")
            if kind == "oepl":
                async with OeplClient(ap.url) as client:
                    await client.upload(MAC, foreign)

                def showing() -> str | None:
                    with ap.lock:
                        return ap.tags[MAC].md5.hex()
            else:
                files = FileLabels(tmp_path / "labels")
                await asyncio.to_thread(files.write, KEY, foreign, "someone-else")

                def showing() -> str | None:
                    info = files.info(KEY)
                    return info.content_hash if info is not None else None
            assert ours is not None and showing() != ours
            await rig.until(lambda: drift_lines(caplog) != [], what="drift noticed")
            # The agent's picture is put back and confirmed.
            await rig.until(lambda: compliant(rig, label) and rig.label(label).shown_token == ours,
                            what="the agent's picture back")
            assert showing() == ours

    run(scenario())
