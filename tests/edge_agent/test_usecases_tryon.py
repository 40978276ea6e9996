"""The try-on mirror's flows called directly (edge_agent/usecases/tryon.py): a real agent's Store on a tmp SQLite with
the demo catalog, its real bus, sessions and mirror driver (its process never started: these flows need its state,
not its picture); what each flow does, and each refusal answered with the status and the words the API has always
given it (edge_agent/api/errors.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from support.agent import DEMO_CATALOG, config_dict
from support.usecases import heard, load_catalog, refused

from drivers.mirror.driver import MirrorCamera
from edge_agent import catalog, orders
from edge_agent.agent import Agent
from edge_agent.config import ClientConfig, Role, parse
from edge_agent.errors import DomainError
from edge_agent.usecases import tryon

T = TypeVar("T")
MIRROR = {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic", "station": "mirror-1"}
TRYONS = ["LIP-RED-01", "LIP-NUDE-02", "SHADOW-BRONZE", "BLUSH-PEACH", "GLS-ROUND-BLK",  # ar_mirror/products.yaml
          "TEE-CREW-NAVY", "SHIRT-OXF-BLUE", "JKT-BOMBER-OLIVE"]
SCREEN = ClientConfig(name="mirror-1", role=Role.MIRROR, token_sha256="0" * 64)
OWN_KIOSK = ClientConfig(name="kiosk-1", role=Role.KIOSK, token_sha256="1" * 64)
OTHER_KIOSK = ClientConfig(name="kiosk-2", role=Role.KIOSK, token_sha256="2" * 64)


def run(tmp_path: Path, body: Callable[[Agent, MirrorCamera], Awaitable[T]], *, items: list[dict] | None = None,
        **mirror: Any) -> T:
    """``body(agent, mirror)`` with the agent's store started on ``tmp_path`` and the demo catalog (or ``items``)
    in it, and a mirror.camera device ``mirror-1`` (with ``mirror``'s keys); nothing else of the agent runs."""
    config = config_dict(8080, [{**MIRROR, **mirror}])
    config["api"]["clients"].append({"name": "kiosk-2", "role": "kiosk",
                                     "token_sha256": hashlib.sha256(b"kiosk-2").hexdigest()})

    async def main() -> T:
        agent = Agent(parse(yaml.safe_dump(config)), tmp_path / "data")
        await agent.store.start()
        try:
            await load_catalog(agent, items)
            driver = agent.supervisor.owners["mirror-1"].driver
            assert isinstance(driver, MirrorCamera)
            return await body(agent, driver)
        finally:
            await agent.store.stop()

    return asyncio.run(main())


async def raises(flow: Awaitable[Any]) -> DomainError:
    """The domain error ``flow`` raised (it must raise one)."""
    with pytest.raises(DomainError) as caught:
        await flow
    return caught.value


def test_offers_are_the_try_on_products_the_store_has_or_can_order(tmp_path):
    items = json.loads(DEMO_CATALOG.read_text())
    for item in items:
        if item["sku"] == "BLUSH-PEACH":
            item.update(stock_store=0, stock_online=0)  # neither here nor online: not on the mirror
        if item["sku"] == "SHADOW-BRONZE":
            item.update(stock_store=0)  # online only: still offered

    offered = run(tmp_path, lambda agent, mirror: tryon.offers(agent, mirror), items=items)
    assert list(offered) == [sku for sku in TRYONS if sku != "BLUSH-PEACH"]
    red = offered["LIP-RED-01"]
    assert (red.kind, str(red.price), red.promo, red.stock_store) == ("lipstick", "159.00", "Double 11", 24)
    assert offered["SHADOW-BRONZE"].stock_store == 0 and offered["SHADOW-BRONZE"].stock_online == 640


def test_a_look_is_one_product_of_each_kind_drawn_makeup_first_and_glasses_on_top(tmp_path):
    async def body(agent: Agent, mirror: MirrorCamera):
        look = await tryon.set_look(agent, mirror, ["GLS-ROUND-BLK", "LIP-RED-01", "BLUSH-PEACH"], 0.5, "right")
        two = await raises(tryon.set_look(agent, mirror, ["LIP-RED-01", "LIP-NUDE-02"]))
        tote = await raises(tryon.set_look(agent, mirror, ["TOTE-CANVAS", "NOPE"]))
        return look, two, tote, mirror.look, mirror.sessions.summary()

    look, two, tote, drawn, session = run(tmp_path, body)
    assert [layer.sku for layer in look.layers] == ["BLUSH-PEACH", "LIP-RED-01", "GLS-ROUND-BLK"]
    assert (look.compare, look.compare_side) == (0.5, "right") and drawn == look  # a refused look draws nothing
    assert set(session["tried"]) == {"BLUSH-PEACH", "LIP-RED-01", "GLS-ROUND-BLK"}
    assert refused(two) == (422, "one product of each kind at a time; more than one lipstick")
    assert refused(tote) == (422, "not a try-on product this store has or can order: TOTE-CANVAS, NOPE")
    assert [layer.kind for layer in look.layers] == sorted((layer.kind for layer in look.layers),
                                                           key=tryon.LAYER_ORDER.index)


def test_without_a_kiosk_the_basket_is_the_mirrors_own_up_to_each_channels_stock(tmp_path):
    async def body(agent: Agent, mirror: MirrorCamera):
        sub = agent.bus.subscribe("mirror.", "session.")
        await tryon.add_to_basket(agent, mirror, "GLS-ROUND-BLK", 2, "store")
        over = await raises(tryon.add_to_basket(agent, mirror, "GLS-ROUND-BLK", 4, "store"))
        await tryon.add_to_basket(agent, mirror, "GLS-ROUND-BLK", 80, "online")  # 88 online: another channel
        online = await raises(tryon.add_to_basket(agent, mirror, "GLS-ROUND-BLK", 9, "online"))
        tote = await raises(tryon.add_to_basket(agent, mirror, "TOTE-CANVAS", 1, "store"))
        return over, online, tote, heard(sub), tryon.basket(agent, mirror, OWN_KIOSK), mirror.end_session("done")

    over, online, tote, events, view, ended = run(tmp_path, body)
    assert refused(over) == (409, "only 5 of GLS-ROUND-BLK in the store; the basket would hold 6")
    assert refused(online) == (409, "only 88 of GLS-ROUND-BLK online; the basket would hold 89")
    assert refused(tote) == (422, "'TOTE-CANVAS' is not a try-on product this store has or can order")
    assert [(ln["sku"], ln["qty"], ln["channel"]) for ln in view["lines"]] == [
        ("GLS-ROUND-BLK", 2, "store"), ("GLS-ROUND-BLK", 80, "online")]
    assert "kiosk" not in view
    assert [t for t, _ in events] == ["mirror.basket", "mirror.basket"]  # the driver tells of its own basket
    assert ended["basket"] == [{"sku": "GLS-ROUND-BLK", "qty": 2, "channel": "store"},
                               {"sku": "GLS-ROUND-BLK", "qty": 80, "channel": "online"}]


def test_a_full_mirror_basket_is_a_conflict(tmp_path):
    async def body(agent: Agent, mirror: MirrorCamera):
        mirror.basket.max_lines = 1
        await tryon.add_to_basket(agent, mirror, "LIP-RED-01", 1, "store")
        return await raises(tryon.add_to_basket(agent, mirror, "LIP-NUDE-02", 1, "store"))

    assert refused(run(tmp_path, body)) == (409, "the basket holds at most 1 lines")


def test_with_a_kiosk_a_store_line_goes_to_its_session_and_only_that_kiosk_and_staff_see_it(tmp_path):
    async def body(agent: Agent, mirror: MirrorCamera):
        sub = agent.bus.subscribe("mirror.", "session.")
        await tryon.add_to_basket(agent, mirror, "GLS-ROUND-BLK", 4, "store")
        over = await raises(tryon.add_to_basket(agent, mirror, "GLS-ROUND-BLK", 2, "store"))
        await tryon.add_to_basket(agent, mirror, "SHADOW-BRONZE", 1, "online")  # a wish: the mirror's own
        views = {c.name: tryon.basket(agent, mirror, c) for c in (SCREEN, OWN_KIOSK, OTHER_KIOSK)}
        return over, heard(sub), agent.sessions.get("kiosk-1"), views, mirror.end_session("done")

    over, events, session, views, ended = run(tmp_path, body, kiosk="kiosk-1")
    assert refused(over) == (409, "only 5 of GLS-ROUND-BLK in the store; the basket at kiosk-1 would hold 6: take "
                                  "fewer, or order it online")
    assert [(ln.sku, ln.qty, ln.source) for ln in session.basket] == [("GLS-ROUND-BLK", 4, "mirror-1")]
    assert [(t, d.get("change")) for t, d in events] == [("session.basket", "added"), ("mirror.basket", None)]
    assert views["mirror-1"] == views["kiosk-1"] == {
        "lines": [{"sku": "SHADOW-BRONZE", "qty": 1, "channel": "online", "session_id": ended["session_id"]}],
        "kiosk": {"station": "kiosk-1", "lines": [
            {"sku": "GLS-ROUND-BLK", "name": "圆框眼镜 Round Frame Glasses Black", "qty": 4}]}}
    assert "kiosk" not in views["kiosk-2"]  # part of another kiosk's session
    assert ended["basket"] == [{"sku": "GLS-ROUND-BLK", "qty": 4, "channel": "store", "kiosk": "kiosk-1"},
                               {"sku": "SHADOW-BRONZE", "qty": 1, "channel": "online"}]


def test_order_online_is_a_pickup_order_of_try_on_products_recorded_once(tmp_path):
    async def body(agent: Agent, mirror: MirrorCamera):
        sub = agent.bus.subscribe("order.")
        request = orders.OrderIn(client_order_id=uuid.uuid4(), lines=[catalog.ItemIn(sku="LIP-RED-01", qty=2)])
        placed = await tryon.order_online(agent, mirror, request, SCREEN)
        again = await tryon.order_online(agent, mirror, request, SCREEN)
        tote = await raises(tryon.order_online(agent, mirror, orders.OrderIn(
            client_order_id=uuid.uuid4(), lines=[catalog.ItemIn(code="TOTE01"), catalog.ItemIn(sku="NOPE")]), SCREEN))
        over = await raises(tryon.order_online(agent, mirror, orders.OrderIn(
            client_order_id=uuid.uuid4(), lines=[catalog.ItemIn(sku="GLS-ROUND-BLK", qty=89)]), SCREEN))
        return placed, again, tote, over, heard(sub), mirror.end_session("done")

    placed, again, tote, over, events, ended = run(tmp_path, body)
    order = placed.order
    assert not placed.replayed and again.replayed and again.order == order
    assert (order["origin"], order["device"], order["station"], order["total"]) == (
        "mirror", "mirror-1", "mirror-1", "318.00")
    assert [t for t, _ in events] == ["order.created"]  # the replay told nobody
    assert ended["orders"] == [{"order_id": order["order_id"], "lines": [{"sku": "LIP-RED-01", "qty": 2}]}]
    assert refused(tote) == (422, "not a try-on product of this mirror: TOTE01, NOPE")
    status, detail = refused(over)
    assert status == 409 and "only 88 of GLS-ROUND-BLK online" in detail


def test_a_try_on_file_that_cannot_be_read_makes_every_flow_unavailable(tmp_path):
    bad = tmp_path / "tryon.yaml"
    bad.write_text("LIP-RED-01: [not, a, mapping]\n")
    order = orders.OrderIn(client_order_id=uuid.uuid4(), lines=[catalog.ItemIn(sku="LIP-RED-01")])
    flows: list[Callable[[Agent, MirrorCamera], Awaitable[Any]]] = [
        lambda agent, mirror: tryon.offers(agent, mirror),
        lambda agent, mirror: tryon.set_look(agent, mirror, ["LIP-RED-01"]),
        lambda agent, mirror: tryon.add_to_basket(agent, mirror, "LIP-RED-01", 1, "store"),
        lambda agent, mirror: tryon.order_online(agent, mirror, order, SCREEN),
    ]

    async def body(agent: Agent, mirror: MirrorCamera):
        return [await raises(flow(agent, mirror)) for flow in flows]

    for err in run(tmp_path, body, products=str(bad)):
        assert isinstance(err, tryon.TryOnUnavailable) and not hasattr(err, "status")
        status, detail = refused(err)
        assert status == 503 and detail.startswith(f"the mirror's try-on products cannot be read: {bad}: LIP-RED-01")
