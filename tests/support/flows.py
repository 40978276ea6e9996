"""Test support for the store flows: hub payloads, a live-feed reader, polling with a deadline."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from websockets.sync.client import ClientConnection, connect

from support.agent import TOKENS, AgentProcess

LIPSTICK = "6901234567892"   # LIP-RED-01: 189.00, promo 159.00, 24 in store (demo/catalog.json)
NUDE = "6901234567908"       # LIP-NUDE-02: 189.00, 12 in store
TOTE = "TOTE01"              # TOTE-CANVAS: 49.90, 40 in store
GLASSES = "6901234567915"    # GLS-ROUND-BLK: 399.00, 5 in store


def hub_event(type_: str, data: dict) -> dict:
    """A downlink CloudEvent as the hub makes it."""
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "hub", "type": type_, "data": data}


def card(member_id: str = "M-1001", points: int = 1000, **extra: Any) -> dict:
    """A member card's data (sync.topics.MemberCard)."""
    return {"member_id": member_id, "tier": "gold", "tags": ["lipstick-fan"], "points": points,
            "interests": ["LIP-NUDE-02", "GLS-ROUND-BLK"], **extra}


def order(order_id: str = "WEB-1", code: str = "482913", lines: list | None = None, **extra: Any) -> dict:
    """A pickup order's data (sync.topics.OrderCreated)."""
    return {"order_id": order_id, "pickup_code": code, "member_id": "M-1001",
            "lines": lines or [{"sku": "LIP-NUDE-02", "qty": 2}, {"sku": "TOTE-CANVAS", "qty": 1}], **extra}


def sale(*lines: tuple[str, int], **extra: Any) -> dict:
    """A POST /v1/sales body."""
    return {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": c, "qty": q} for c, q in lines],
            "payment": {"method": "card", "reference": "TERM-1"}, **extra}


def ret(*lines: tuple[str, int], **extra: Any) -> dict:
    """A POST /v1/returns body."""
    return {"client_return_id": str(uuid.uuid4()), "lines": [{"code": c, "qty": q} for c, q in lines], **extra}


def poll(fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 30.0, what: str = "") -> Any:
    """Call ``fetch`` until ``until`` holds for its answer; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if until(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: last answer {got}")
        time.sleep(0.02)


class Feed:
    """A live-feed connection of one role; ``expect`` skips events until one matches."""

    def __init__(self, ws: ClientConnection, hello: dict):
        self.ws = ws
        self.hello = hello
        self.seen: list[dict] = []

    def expect(self, type_: str, where: Callable[[dict], bool] = lambda d: True, timeout: float = 30.0) -> dict:
        """The data of the next event of ``type_`` whose data satisfies ``where``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type_} event within {timeout} s; saw {[e['type'] for e in self.seen][-20:]}")
            try:
                event = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            self.seen.append(event)
            if event["type"] == type_ and where(event["data"]):
                return event["data"]

    def quiet(self, timeout: float = 0.3) -> list[dict]:
        """Every event that arrives within ``timeout`` s (to show that something did not come)."""
        got = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                break
        self.seen += got
        return got


@contextlib.contextmanager
def feed(agent: AgentProcess, role: str, query: str = "") -> Iterator[Feed]:
    """A live-feed connection as ``role``."""
    with connect(f"ws://127.0.0.1:{agent.port}/v1/events{query}",
                 additional_headers={"Authorization": f"Bearer {TOKENS[role]}"}, open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello"
        yield Feed(ws, hello)


def sync_point(hub: Any, name: str) -> None:
    """Wait until the agent has handled every downlink message sent before this one.

    The agent handles downlink messages one at a time in arrival order and
    answers a command after handling it: its answer means the rest is done."""
    hub.send("cmd", {"id": name, "device": "agent", "action": "status"})
    hub.expect("cmd/res", lambda r: r["id"] == name)


def uplink(hub: Any, type_: str, where: Callable[[dict], bool] = lambda d: True, timeout: float = 30.0) -> dict:
    """The first event of ``type_`` (whose data satisfies ``where``) the store sent the hub, seen or to come."""
    for msg in hub.seen:
        if msg.topic.endswith("/events"):
            for e in json.loads(msg.payload):
                if e["type"] == type_ and where(e["data"]):
                    return e
    found: list[dict] = []
    hub.expect("events", lambda batch: bool(found.extend(e for e in batch if e["type"] == type_ and where(e["data"]))
                                            or found), timeout)
    return found[0]


@contextlib.contextmanager
def linked_agent(workdir: Any, devices: list[dict] | None = None, **sections: Any) -> Iterator[tuple]:
    """A real Mosquitto, an agent with the demo catalog linked to it (config ``sections`` merged in),
    and a hub client watching it: ``(agent, hub)``."""
    from support.agent import config_dict, free_port
    from support.hubclient import HubClient
    from support.mosquitto import Mosquitto

    broker = Mosquitto(workdir / "mosquitto").start()
    config = config_dict(free_port(), devices, hub_url=broker.url)
    config.update(sections)
    agent = AgentProcess(workdir, config)
    hub = HubClient(broker.port, config["store"]["id"])
    try:
        agent.import_catalog()
        agent.start()
        hub.expect("status", lambda s: s["state"] == "online")
        yield agent, hub
    finally:
        hub.close()
        agent.close()
        broker.stop()
