"""The basket's flows called directly (edge_agent/usecases/basket.py): a real agent's Store on a tmp SQLite with the
demo catalog, its real bus and sessions; what each flow changes, what it tells the bus, and each refusal answered
with the status and the words the API has always given it (edge_agent/api/errors.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from support.agent import config_dict
from support.usecases import heard, load_catalog, refused

from edge_agent import catalog, sessions
from edge_agent.agent import Agent
from edge_agent.config import parse
from edge_agent.errors import DomainError
from edge_agent.usecases import basket

T = TypeVar("T")
ItemIn = catalog.ItemIn


def run(tmp_path: Path, body: Callable[[Agent], Awaitable[T]], items: list[dict] | None = None) -> T:
    """``body(agent)`` with the agent's store started on ``tmp_path`` and the demo catalog (or ``items``) in it;
    nothing else of the agent runs (no devices, no hub, no API: its port is never bound)."""
    async def main() -> T:
        agent = Agent(parse(yaml.safe_dump(config_dict(8080))), tmp_path)
        await agent.store.start()
        try:
            await load_catalog(agent, items)
            return await body(agent)
        finally:
            await agent.store.stop()

    return asyncio.run(main())


def test_a_line_added_is_in_the_basket_priced_and_on_the_bus(tmp_path):
    async def body(agent: Agent):
        sub = agent.bus.subscribe("session.")
        first = await basket.add_line(agent, "kiosk-1", ItemIn(code="6901234567892", qty=2), "kiosk-1")
        again = await basket.add_line(agent, "kiosk-1", ItemIn(sku="LIP-RED-01"), "kiosk-1")
        other = await basket.add_line(agent, "kiosk-1", ItemIn(code="TOTE01"), "associate-1")
        return first, again, other, heard(sub), await basket.view(agent, "kiosk-1")

    first, again, other, events, view = run(tmp_path, body)
    assert first.session.id is not None and again.session.id == first.session.id == view.session.id
    assert [(ln.sku, ln.qty, ln.source) for ln in view.session.basket] == [
        ("LIP-RED-01", 3, "kiosk-1"), ("TOTE-CANVAS", 1, "associate-1")]
    assert view.prices == (sessions.LinePrice("159.00", "CNY", 24), sessions.LinePrice("49.90", "CNY", 40))
    wire = view.as_dict()
    assert list(wire) == ["station", "session_id", "member_id", "attached_at", "basket"]
    assert wire["basket"]["items"] == 4
    assert list(wire["basket"]["lines"][0]) == ["sku", "name", "qty", "source", "added_at", "unit_price", "currency",
                                                "stock_store"]
    assert other.as_dict() == wire
    assert [t for t, _ in events] == ["session.basket"] * 3
    added = events[-1][1]
    assert {k: added[k] for k in ("station", "session_id", "change", "sku", "qty", "source", "items")} == {
        "station": "kiosk-1", "session_id": first.session.id, "change": "added", "sku": "TOTE-CANVAS", "qty": 1,
        "source": "associate-1", "items": 4}
    assert added["lines"] == other.session.basket_dict()["lines"]


def test_an_empty_session_is_priced_without_a_read_and_shows_as_before(tmp_path):
    view = run(tmp_path, lambda agent: basket.view(agent, "kiosk-1"))
    assert view.as_dict() == {"station": "kiosk-1", "session_id": None, "member_id": None, "attached_at": None,
                              "basket": {"lines": [], "items": 0}}


def test_clearing_tells_the_bus_only_when_the_basket_held_something(tmp_path):
    async def body(agent: Agent):
        sub = agent.bus.subscribe("session.")
        empty = await basket.clear(agent, "kiosk-1")
        quiet = heard(sub)
        await basket.add_line(agent, "kiosk-1", ItemIn(code="TOTE01", qty=2), "kiosk-1")
        cleared = await basket.clear(agent, "kiosk-1")
        return empty, quiet, cleared, heard(sub)

    empty, quiet, cleared, events = run(tmp_path, body)
    assert empty.as_dict()["basket"] == {"lines": [], "items": 0} and quiet == []
    assert cleared.session.basket == () and cleared.session.id is not None  # the customer is still there
    assert [(t, d["change"]) for t, d in events] == [("session.basket", "added"), ("session.basket", "cleared")]
    assert events[-1][1]["lines"] == [] and events[-1][1]["items"] == 0


def test_new_customer_ends_the_session_once_and_says_what_was_left(tmp_path):
    async def body(agent: Agent):
        added = await basket.add_line(agent, "kiosk-1", ItemIn(code="TOTE01", qty=2), "mirror-1")
        sub = agent.bus.subscribe("session.")
        first = await basket.end_session(agent, "kiosk-1")
        second = await basket.end_session(agent, "kiosk-1")
        return added, first, second, heard(sub)

    added, first, second, events = run(tmp_path, body)
    assert first.ended == sessions.Ended("kiosk-1", added.session.id, sessions.EndReason.NEW_CUSTOMER,
                                         added.session.basket)
    wire = first.as_dict()
    assert wire == {"station": "kiosk-1", "ended": {
        "station": "kiosk-1", "session_id": added.session.id, "reason": "new_customer",
        "left": [{"sku": "TOTE-CANVAS", "name": "帆布托特包 Canvas Tote", "qty": 2, "source": "mirror-1"}],
        "items": 2}, "session": {"station": "kiosk-1", "session_id": None, "member_id": None, "attached_at": None,
                                 "basket": {"lines": [], "items": 0}}}
    assert events == [("session.ended", wire["ended"])]  # the second press ended nothing and said nothing
    assert second.ended is None and second.as_dict()["ended"] is None


# Refusals: the domain's errors, each answered with the status and the words the API always gave it -------------

def refusal(tmp_path: Path, flow: Callable[[Agent], Awaitable[Any]], items: list[dict] | None = None,
            before: Callable[[Agent], Awaitable[Any]] | None = None) -> tuple[DomainError, list, dict]:
    """The error ``flow`` raised, what the bus carried meanwhile and the kiosk's session after it."""
    async def body(agent: Agent):
        if before is not None:
            await before(agent)
        sub = agent.bus.subscribe("session.")
        with pytest.raises(DomainError) as caught:
            await flow(agent)
        return caught.value, heard(sub), agent.sessions.get("kiosk-1").as_dict()

    return run(tmp_path, body, items)


@pytest.mark.parametrize(("item", "status", "detail"), [
    (ItemIn(code="0000000000000"), 422,
     "no product with barcode or SKU '0000000000000' in this store's catalog; check the code"),
    (ItemIn(sku="6901234567892"), 422,  # a barcode is not a SKU
     "no product with SKU '6901234567892' in this store's catalog; check the sku"),
    (ItemIn(code="6901234567915", qty=6), 409,
     "only 5 of GLS-ROUND-BLK in the store; the basket at kiosk-1 would hold 6: take fewer, or order it online"),
])
def test_a_refused_line_changes_nothing_and_says_why(tmp_path, item, status, detail):
    err, events, session = refusal(tmp_path, lambda agent: basket.add_line(agent, "kiosk-1", item, "kiosk-1"))
    assert refused(err) == (status, detail)
    assert not hasattr(err, "status")  # the kind says it, in one place
    assert isinstance(err, sessions.BasketError) and events == [] and session["basket"]["lines"] == []


def test_more_than_the_store_has_counts_every_source(tmp_path):
    async def four(agent: Agent):
        await basket.add_line(agent, "kiosk-1", ItemIn(code="6901234567915", qty=4), "kiosk-1")

    err, events, session = refusal(
        tmp_path, lambda agent: basket.add_line(agent, "kiosk-1", ItemIn(sku="GLS-ROUND-BLK", qty=2), "mirror-1"),
        before=four)
    assert refused(err) == (409, "only 5 of GLS-ROUND-BLK in the store; the basket at kiosk-1 would hold 6: take "
                                 "fewer, or order it online")
    assert events == [] and [(ln["qty"], ln["source"]) for ln in session["basket"]["lines"]] == [(4, "kiosk-1")]


def test_a_basket_holds_at_most_max_lines_lines(tmp_path):
    items = [{"sku": f"SKU-{i:02d}", "barcodes": [], "name": f"Item {i}", "price": "1.00", "currency": "CNY",
              "stock_store": 10, "stock_online": 0, "version": 1} for i in range(sessions.MAX_LINES + 1)]

    async def full(agent: Agent):
        for i in range(sessions.MAX_LINES):
            await basket.add_line(agent, "kiosk-1", ItemIn(sku=f"SKU-{i:02d}"), "kiosk-1")

    last = ItemIn(sku=f"SKU-{sessions.MAX_LINES:02d}")
    err, events, session = refusal(tmp_path, lambda agent: basket.add_line(agent, "kiosk-1", last, "kiosk-1"),
                                   items, before=full)
    assert refused(err) == (409, f"the basket at kiosk-1 holds at most {sessions.MAX_LINES} lines; check it out first")
    assert events == [] and len(session["basket"]["lines"]) == sessions.MAX_LINES


@pytest.mark.parametrize("flow", [
    lambda agent: basket.view(agent, "associate-1"),
    lambda agent: basket.add_line(agent, "associate-1", ItemIn(code="TOTE01"), "admin-1"),
    lambda agent: basket.clear(agent, "associate-1"),
    lambda agent: basket.end_session(agent, "associate-1"),
], ids=["view", "add_line", "clear", "end_session"])
def test_a_station_that_is_no_kiosk_is_not_found(tmp_path, flow):
    err, events, _ = refusal(tmp_path, flow)
    assert isinstance(err, sessions.NoKiosk) and not hasattr(err, "status")
    assert refused(err) == (404, "no kiosk 'associate-1' in this store (an api client with role kiosk)")
    assert events == []
