"""The label flows of edge_agent/usecases/labels.py (bind, unbind, repush) on a real Store in a
tmp SQLite file, the real label service and drivers, and an emulated access point over HTTP:
each flow's write, its effects once on disk, and the domain errors it refuses with."""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers.shelf_label.ap_emulator import ApEmulator
from edge_agent.errors import Conflict, Invalid, NotFound
from edge_agent.labels.table import load
from edge_agent.usecases import labels as flows
from support.labelrig import LabelRig, files_device, item, oepl_device

A, B, C = "0000021D4E83B401", "0000021D4E83B402", "0000021D4E83B403"
TAGS = (A, B, C)  # the tags on the access point (conftest.ap)


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def uploads(ap: ApEmulator, mac: str) -> list:
    with ap.lock:
        return [u for u in ap.uploads if u.mac == mac and not u.error]


def confirmed(rig: LabelRig, mac: str) -> bool:
    label = rig.service.label(mac)
    return label is not None and label.confirmed_at is not None and not label.outstanding


async def stored(rig: LabelRig, mac: str):
    [row] = await rig.store.read(lambda c: load(c, [mac]))
    return row


def test_bind_writes_the_label_then_pushes_it_and_says_so_on_the_bus(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url)], [item("MILK", "12.80"), item("TEA", "5.00")]) as rig:
            events = rig.bus.subscribe("label.")
            bound = await flows.bind(rig.service, "00:00:02:1d:4e:83:b4:01", "BC-MILK", zone="dairy")
            assert bound.new and (bound.label.mac, bound.label.sku, bound.label.zone) == (A, "MILK", "dairy")
            # On disk before the flow returns, and in the service's memory.
            row = await stored(rig, A)
            assert (row.sku, row.zone, row.source, row.device) == ("MILK", "dairy", "api", "labels-1")
            assert rig.service.label(A).sku == "MILK"
            event = await asyncio.wait_for(anext(aiter(events)), 5)
            assert event.type == "label.bound"
            assert {k: event.data[k] for k in ("mac", "device", "sku", "zone", "new")} == \
                {"mac": A, "device": "labels-1", "sku": "MILK", "zone": "dairy", "new": True}
            # Queued ahead of everything when the flow returns; the access point gets the picture.
            await rig.until(lambda: confirmed(rig, A), what="the bound label confirmed")
            assert len(uploads(ap, A)) == 1

            # Bound again to another product: not new; the zone stays when none is given.
            again = await flows.bind(rig.service, A, "TEA")
            assert not again.new and (again.label.sku, again.label.zone) == ("TEA", "dairy")
            # What it showed stays true until the new picture is confirmed.
            assert again.label.shown_sku == "MILK"
            await rig.until(lambda: confirmed(rig, A) and rig.service.label(A).shown_sku == "TEA")
            # None clears the zone.
            cleared = await flows.bind(rig.service, A, "TEA", zone=None)
            assert cleared.label.zone is None and (await stored(rig, A)).zone is None
            events.close()

    run(scenario())


def test_bind_refuses_with_the_domain_errors(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url)], [item("MILK", "12.80")]) as rig:
            with pytest.raises(NotFound, match="NOPE"):
                await flows.bind(rig.service, A, "NOPE")
            with pytest.raises(Invalid, match="label"):
                await flows.bind(rig.service, "not-a-mac", "MILK")
            with pytest.raises(Invalid, match="known models"):
                await flows.bind(rig.service, A, "MILK", model="m9")
            with pytest.raises(Invalid, match="labels-1"):
                await flows.bind(rig.service, A, "MILK", device="nope")
            for zone in ("", "a/b", "x" * 33, "   ", " dairy", "_x", "生鲜", "dairy\n"):
                with pytest.raises(Invalid, match="zone"):
                    await flows.bind(rig.service, A, "MILK", zone=zone)
            # Nothing refused was written.
            assert await rig.store.read(lambda c: load(c)) == [] and rig.service.label(A) is None
            with pytest.raises(NotFound):
                await flows.unbind(rig.service, A)
            with pytest.raises(NotFound):
                await flows.repush(rig.service, A)

    run(scenario())


def test_a_store_without_label_devices_has_nothing_to_bind_to(tmp_path):
    async def scenario():
        async with LabelRig(tmp_path, [{"id": "heartbeat-1", "kind": "sensor.heartbeat", "interval": 0.5}],
                            [item("MILK", "12.80")]) as rig:
            with pytest.raises(Conflict, match="no shelf-label device"):
                await flows.bind(rig.service, A, "MILK")

    run(scenario())


def test_unbind_writes_then_shows_not_in_use(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": B, "sku": "MILK", "zone": "dairy"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: confirmed(rig, B))
            events = rig.bus.subscribe("label.")
            label = await flows.unbind(rig.service, "00:00:02:1D:4E:83:B4:02")
            assert (label.mac, label.sku, label.source, label.zone) == (B, None, "api", "dairy")
            row = await stored(rig, B)
            assert (row.sku, row.source) == (None, "api")
            event = await asyncio.wait_for(anext(aiter(events)), 5)
            assert (event.type, event.data["mac"], event.data["was"], event.data["zone"]) == \
                ("label.unbound", B, "MILK", "dairy")
            await rig.until(lambda: confirmed(rig, B) and rig.service.label(B).shown_sku is None,
                            what="the notice confirmed")
            # Unbinding a label bound to nothing writes and says nothing.
            assert (await flows.unbind(rig.service, B)).sku is None
            events.close()

    run(scenario())


def test_repush_sends_the_same_picture_again(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": C, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: confirmed(rig, C))
            [first] = uploads(ap, C)
            label = await flows.repush(rig.service, C)
            assert label.mac == C
            await rig.until(lambda: len(uploads(ap, C)) == 2, what="the picture uploaded again")
            second = uploads(ap, C)[1]
            # The same picture, though the agent knew the label already showed it.
            assert second.data == first.data
            await rig.until(lambda: confirmed(rig, C))
            assert rig.service.label(C).shown_hash == rig.service.label(C).desired_hash

    run(scenario())


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_hundred_repushes_upload_a_label_at_most_twice(tmp_path, ap):
    """Each re-push waits until the one before has been pushed, the worst case for the access point: the
    cooldown, not the queue, holds the uploads."""
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": C, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: confirmed(rig, C))
            clock = Ticks()
            flows.repush_guard(rig.service).clock = clock
            pusher = rig.service._pushers["labels-1"]
            answers = []
            for i in range(100):
                answers.append(await flows.repush_label(rig.service, C, client=f"pad-{i % 10}"))
                await rig.until(lambda: not pusher.forced(C), what="the re-push done")
                clock.now += 0.1  # 10 s in all
            assert answers[0].repush == "queued" and answers[0].retry_after is None
            assert {a.repush for a in answers[1:]} == {"cooldown"}
            assert answers[1].retry_after == 30 and answers[-1].retry_after == 21
            assert len(uploads(ap, C)) == 2
            clock.now += 20  # 30 s after the re-push that queued it
            assert (await flows.repush_label(rig.service, C, client="pad-0")).repush == "queued"
            await rig.until(lambda: len(uploads(ap, C)) == 3, what="the label pushed after its cooldown")

    run(scenario(), timeout=120)


def test_a_repush_while_a_forced_push_is_queued_queues_nothing(tmp_path, ap):
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url, [{"mac": C, "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: confirmed(rig, C))
            pusher = rig.service._pushers["labels-1"]
            pusher.set_online(False)  # the access point is down: the forced push waits in the queue
            first, again = await asyncio.gather(flows.repush_label(rig.service, C), flows.repush_label(rig.service, C))
            assert first.repush == "queued" and again.repush in ("cooldown", "already_pushing")
            flows.repush_guard(rig.service).clock = lambda: time.monotonic() + 60  # cooldown over, still queued
            later = await flows.repush_label(rig.service, C)
            assert later.repush == "already_pushing" and later.retry_after == 1
            pusher.set_online(True)
            await rig.until(lambda: len(uploads(ap, C)) == 2, what="the one forced push")

    run(scenario())


def test_one_client_may_ask_thirty_repushes_a_minute():
    clock = Ticks()
    guard = flows.RepushGuard(clock=clock)
    for _ in range(30):
        guard.admit("pad-anna")
        clock.now += 1
    with pytest.raises(flows.RepushTooMany) as refused:
        guard.admit("pad-anna")
    assert refused.value.retry_after == 30 and "30 label re-pushes in a minute" in str(refused.value)
    guard.admit("pad-ben")  # another client is not held
    clock.now += 30
    guard.admit("pad-anna")
    guard = flows.RepushGuard(clock=clock, kept=5)
    for i in range(50):
        guard.admit(f"pad-{i}")
    assert len(guard._calls) == 5


def test_repush_of_a_file_label_rewrites_its_png(tmp_path):
    folder = tmp_path / "labels"

    async def scenario():
        async with LabelRig(tmp_path, [files_device(folder, [{"key": "shelf-1", "sku": "MILK"}])],
                            [item("MILK", "12.80")]) as rig:
            await rig.until(lambda: confirmed(rig, "shelf-1"))
            png = folder / "shelf-1.png"
            png.unlink()  # a blank label at the shelf
            await flows.repush(rig.service, "shelf-1")
            await rig.until(lambda: png.exists(), what="the PNG written again")

    run(scenario())


def test_a_bind_whose_caller_hangs_up_during_the_write_still_takes_effect(tmp_path, ap):
    """The caller is cancelled while the write is on its way: once on disk, the label is in the service's
    memory and pushed all the same (memory behind the store would write the old binding back)."""
    async def scenario():
        async with LabelRig(tmp_path, [oepl_device(ap.url)], [item("MILK", "12.80")]) as rig:
            store, writes, gate = rig.store, [], asyncio.Event()
            write = store.write

            async def held(fn):
                writes.append(fn)
                await gate.wait()
                return await write(fn)

            store.write = held  # the real store's write, held until the caller has gone
            task = asyncio.create_task(flows.bind(rig.service, A, "MILK", zone="dairy"))
            await rig.until(lambda: writes, what="the bind's write submitted")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert rig.service.label(A) is None
            gate.set()
            await rig.until(lambda: rig.service.label(A) is not None, what="the label in memory")
            assert rig.service.label(A).zone == "dairy"
            await rig.until(lambda: confirmed(rig, A), what="the label pushed and confirmed")
            del store.write
            await rig.service.flush()
            assert (await stored(rig, A)).sku == "MILK"

    run(scenario())


def test_a_file_key_with_a_newline_is_not_a_label(tmp_path):
    async def scenario():
        async with LabelRig(tmp_path, [files_device(tmp_path / "labels")], [item("MILK", "12.80")]) as rig:
            for key in ("shelf-1\n", "../x", "a" * 65):
                with pytest.raises(Invalid, match="label"):
                    await flows.bind(rig.service, key, "MILK")
            assert (await flows.bind(rig.service, "shelf-1", "MILK")).new
            assert [p.name for p in (tmp_path / "labels").iterdir() if p.suffix == ".png"] in ([], ["shelf-1.png"])

    run(scenario())
