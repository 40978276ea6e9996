"""The downlink on its own: it parses, validates and allow-lists, then calls whatever ``DownlinkHandler``
it was given; nothing of the agent is needed (the agent's handler is edge_agent/downlink_apply.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sync import topics
from sync.downlink import Downlink

STORE = "store-wire"


class Recorder:
    """A ``DownlinkHandler`` that keeps what it is handed; one device, ``printer-1``, with ``test_page``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def catalog(self, items: list[topics.CatalogItem]) -> int:
        self.calls.append(("catalog", [i.sku for i in items]))
        return 1

    async def stock(self, sets: list[topics.StockSet]) -> None:
        self.calls.append(("stock", [(s.sku, s.qty) for s in sets]))
        raise topics.PayloadError("stock for unknown sku(s) ignored: NOPE")

    async def orders(self, created: list[topics.OrderCreated]) -> None:
        self.calls.append(("orders", [o.order_id for o in created]))

    async def members(self, cards: list[topics.MemberCard], arrived: list[bool]) -> None:
        self.calls.append(("members", [(c.member_id, a) for c, a in zip(cards, arrived)]))

    async def returns(self, verdicts: list[topics.ReturnVerdict]) -> None:
        self.calls.append(("returns", [v.verdict for v in verdicts]))

    async def alert(self, data: dict[str, Any]) -> None:
        self.calls.append(("alert", data))

    def device_actions(self, device: str) -> tuple[str, frozenset[str]] | None:
        return ("printer.escpos", frozenset({"test_page"})) if device == "printer-1" else None

    def reopen(self, device: str) -> None:
        self.calls.append(("reopen", device))

    async def device_command(self, device: str, action: str, args: dict[str, Any]) -> Any:
        self.calls.append(("command", (device, action, args)))
        return {"printed": True}


def events(type_: str, *data: dict[str, Any]) -> bytes:
    return batch(*((type_, d) for d in data))


def batch(*typed: tuple[str, dict[str, Any]]) -> bytes:
    return json.dumps([topics.hub_event(type_, d) for type_, d in typed]).encode()


def run(*messages: tuple[str, bytes]) -> tuple[Recorder, Downlink, list[dict[str, Any]]]:
    handler, answers = Recorder(), []
    downlink = Downlink(STORE, handler, publish=lambda topic, payload: answers.append(
        {"topic": topic, **json.loads(payload)}))

    async def feed() -> None:
        for kind, payload in messages:
            await downlink.handle(kind, payload)

    asyncio.run(feed())
    return handler, downlink, answers


def test_valid_payloads_reach_the_handler_as_models():
    item = {"sku": "TEE-1", "barcodes": ["6901234567892"], "name": "Tee", "price": "9.90", "currency": "CNY"}
    card = {"member_id": "m-1", "tier": "gold", "points": 10}
    handler, downlink, _ = run(
        ("catalog", events("retail.catalog.updated", item)),
        ("members", batch(("retail.member.arrived", card), ("retail.member.card", card))),
        ("returns", events("retail.return.verdict", {"return_id": "r-1", "verdict": "approved"})),
    )
    assert handler.calls == [("catalog", ["TEE-1"]), ("members", [("m-1", True), ("m-1", False)]),
                             ("returns", ["approved"])]
    assert downlink.stats == {"accepted": 3, "rejected": 0, "stale": 1}


def test_an_invalid_payload_is_answered_with_an_alert_and_never_reaches_the_handler():
    handler, downlink, _ = run(
        ("orders", events("retail.order.created", {"order_id": "o-1", "pickup_code": "12", "lines": []})),
        ("catalog", events("retail.stock.set", {"sku": "TEE-1", "qty": 1})),
        ("stock", b"{not json"),
    )
    kinds = [c[0] for c in handler.calls]
    assert kinds == ["alert", "alert", "alert"], handler.calls
    alerts = [c[1] for c in handler.calls]
    assert [a["topic_kind"] for a in alerts] == ["orders", "catalog", "stock"]
    assert "pickup_code" in alerts[0]["message"] and "expected retail.catalog.updated" in alerts[1]["message"]
    assert all(a["code"] == "bad_downlink" and a["one_shot"] for a in alerts)
    assert downlink.stats["rejected"] == 3 and downlink.stats["accepted"] == 0


def test_what_the_handler_refuses_is_answered_with_an_alert():
    handler, downlink, _ = run(("stock", events("retail.stock.set", {"sku": "NOPE", "qty": 3})))
    assert handler.calls[0] == ("stock", [("NOPE", 3)])
    assert handler.calls[1][0] == "alert" and "NOPE" in handler.calls[1][1]["message"]
    assert downlink.stats["rejected"] == 1


def test_commands_are_allow_listed_on_the_wire_side():
    def cmd(id_: str, device: str, action: str, args: dict | None = None) -> tuple[str, bytes]:
        return "cmd", json.dumps({"id": id_, "device": device, "action": action, "args": args or {}}).encode()

    handler, _, answers = run(
        cmd("c1", "printer-1", "test_page", {"copies": 1}),
        cmd("c2", "printer-1", "format_disk"),
        cmd("c3", "scanner-9", "reopen"),
        cmd("c4", "printer-1", "reopen"),
        cmd("c5", "agent", "shutdown"),
        cmd("c6", "agent", "resend_from", {"seq": 1}),
    )
    assert handler.calls == [("command", ("printer-1", "test_page", {"copies": 1})), ("reopen", "printer-1")]
    by_id = {a["id"]: a for a in answers}
    assert all(a["topic"] == f"edge/{STORE}/cmd/res" for a in answers) and len(answers) == 6
    assert by_id["c1"] == {"topic": f"edge/{STORE}/cmd/res", "id": "c1", "ok": True, "result": {"printed": True}}
    assert not by_id["c2"]["ok"] and "allowed: reopen, test_page" in by_id["c2"]["error"]
    assert not by_id["c3"]["ok"] and "no device 'scanner-9'" in by_id["c3"]["error"]
    assert by_id["c4"]["ok"] and by_id["c4"]["result"] == {"device": "printer-1", "reopening": True}
    assert not by_id["c5"]["ok"] and "not allowed for the agent" in by_id["c5"]["error"]
    assert not by_id["c6"]["ok"] and by_id["c6"]["error"] == "this agent has no hub link"
