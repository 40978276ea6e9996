"""What the hub sends down: catalog, stock, orders, members and commands.

The payload builders are pure (``catalog_batch``, ``stock_event``,
``order_event``, ``member_event``); ``Downlink`` is a short-lived MQTT
client that publishes them at QoS 1 and, for a command, waits for the
store's answer on ``edge/{store}/cmd/res``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sync import topics
from sync.hub.broker import BrokerURL, make_client
from sync.hub.db import HubDB
from sync.topics import (
    BATCH_CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    Command,
    CommandResult,
    MemberCard,
    OrderCreated,
    PayloadError,
    ReturnVerdict,
    StockSet,
    StoreTopics,
    decode_json,
    hub_topic,
    validate,
)

HUB_SOURCE = topics.HUB_SOURCE
CATALOG_REQUIRED = ("sku", "name", "price", "version")
CATALOG_KEYS = ("sku", "barcodes", "name", "price", "currency", "promo", "rating", "reviews", "stock_online", "version")
MEMBER_TYPES = {"arrived": "retail.member.arrived", "card": "retail.member.card"}


class DownlinkError(Exception):
    """The broker could not be reached or did not take the message in time."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def catalog_items(raw: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """Catalog items checked against the contract's keys; returns them and the keys dropped."""
    if not isinstance(raw, list) or not raw:
        raise PayloadError("a catalog file is a non-empty JSON list of items")
    items, dropped = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PayloadError(f"item {i} is not an object")
        missing = [k for k in CATALOG_REQUIRED if k not in item]
        if missing:
            raise PayloadError(f"item {i} ({item.get('sku', 'no sku')}) lacks {', '.join(missing)}")
        if not isinstance(item["sku"], str) or not item["sku"]:
            raise PayloadError(f"item {i}: sku must be a non-empty string")
        if not isinstance(item["version"], int) or isinstance(item["version"], bool):
            raise PayloadError(f"item {i} ({item['sku']}): version must be an integer")
        # stock_store and the like are the store's own business, not the catalog's.
        dropped |= set(item) - set(CATALOG_KEYS)
        items.append({k: item[k] for k in CATALOG_KEYS if k in item})
    return items, dropped


def catalog_batch(items: list[dict[str, Any]]) -> bytes:
    """A CloudEvents batch of ``retail.catalog.updated``, one event per item."""
    return _dumps([topics.hub_event("retail.catalog.updated", item) for item in items])


def stock_event(sku: str, qty: int) -> bytes:
    """``retail.stock.set``: the store's absolute count of a SKU."""
    return _dumps(topics.hub_event("retail.stock.set", StockSet(sku=sku, qty=qty).model_dump(mode="json")))


def order_event(raw: Any) -> bytes:
    """``retail.order.created``, validated with OrderCreated (PayloadError says what is wrong)."""
    order = validate(OrderCreated, raw)
    return _dumps(topics.hub_event("retail.order.created", order.model_dump(mode="json")))


def member_event(raw: Any, kind: str = "arrived") -> bytes:
    """``retail.member.arrived`` (or ``.card``), validated with MemberCard."""
    card = validate(MemberCard, raw)
    return _dumps(topics.hub_event(MEMBER_TYPES[kind], card.model_dump(mode="json")))


def verdict_event(return_id: str, verdict: str, reason: str | None = None) -> bytes:
    """``retail.return.verdict`` on a pending online return, validated with ReturnVerdict."""
    raw = {"return_id": return_id, "verdict": verdict, **({"reason": reason} if reason else {})}
    return _dumps(topics.hub_event("retail.return.verdict", validate(ReturnVerdict, raw).model_dump(mode="json")))


def _props(content_type: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = content_type
    return props


class Downlink:
    """A one-shot MQTT connection for the CLI: ``with Downlink(broker) as d: d.publish(...)``."""

    def __init__(self, broker: BrokerURL, timeout: float = 10.0):
        self.broker = broker
        self.timeout = timeout
        self._client = make_client(broker, f"edge-hub-cli-{uuid.uuid4().hex[:12]}")
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._refused: str | None = None

    def __enter__(self) -> "Downlink":
        c = self._client
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = lambda client, userdata, msg: self._messages.put(msg)
        try:
            c.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=True)
        except OSError as err:
            raise DownlinkError(f"cannot reach the broker {self.broker}: {err}") from err
        c.loop_start()
        if not self._connected.wait(self.timeout) or self._refused:
            c.loop_stop()
            raise DownlinkError(f"broker {self.broker} {self._refused or 'did not accept the connection in time'}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = f"refused the connection: {reason_code}"
        self._connected.set()

    def publish(self, topic: str, payload: bytes, content_type: str = EVENT_CONTENT_TYPE) -> None:
        """Publish at QoS 1 and return once the broker has it (PUBACK)."""
        info = self._client.publish(topic, payload, qos=1, properties=_props(content_type))
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as err:
            raise DownlinkError(f"could not publish to {topic}: {err}") from err
        if not info.is_published():
            raise DownlinkError(f"broker {self.broker} did not take the message on {topic} within {self.timeout:g} s")

    def command(self, store: str, device: str, action: str, args: dict[str, Any] | None = None,
                timeout: float = 10.0, db: HubDB | None = None) -> CommandResult | None:
        """Send a command and wait for its answer; None when the store did not answer in ``timeout`` s."""
        cmd = Command(id=str(uuid.uuid4()), device=device, action=action, args=args or {})
        res_topic = StoreTopics(store).cmd_res
        self._client.subscribe(res_topic, options=SubscribeOptions(qos=1))
        if not self._subscribed.wait(self.timeout):
            raise DownlinkError(f"broker {self.broker} did not confirm the subscription to {res_topic}")
        if db is not None:
            with db.transaction() as tx:
                tx.command_sent(cmd.id, store, device, action, json.dumps(cmd.args, ensure_ascii=False))
        self.publish(hub_topic(store, "cmd"), cmd.model_dump_json().encode(), "application/json")
        result = self._wait_result(cmd.id, timeout)
        if result is not None and db is not None:
            with db.transaction() as tx:
                tx.command_result(result.id, store, result.ok,
                                  None if result.result is None else json.dumps(result.result, ensure_ascii=False),
                                  result.error)
        return result

    def _wait_result(self, cmd_id: str, timeout: float) -> CommandResult | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self._messages.get(timeout=left)
            except queue.Empty:
                return None
            try:
                res = validate(CommandResult, decode_json(msg.payload))
            except PayloadError:
                continue  # not an answer we can read; the hub service logs such payloads
            if res.id == cmd_id:
                return res
        return None


def publish_catalog(broker: BrokerURL, store: str, items: list[dict[str, Any]]) -> str:
    """Publish a catalog batch to one store or ``all``; returns the topic."""
    topic = hub_topic(store, "catalog")
    with Downlink(broker) as d:
        d.publish(topic, catalog_batch(items), BATCH_CONTENT_TYPE)
    return topic


def publish_event(broker: BrokerURL, store: str, kind: str, payload: bytes) -> str:
    """Publish one hub event on ``hub/{store}/{kind}``; returns the topic."""
    topic = hub_topic(store, kind)
    with Downlink(broker) as d:
        d.publish(topic, payload, EVENT_CONTENT_TYPE)
    return topic
