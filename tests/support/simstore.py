"""Simulated stores for rollout tests: status, health and update answers as agents send them, over one MQTT client.

Each store publishes its retained ``edge/{store}/status`` (with the version it
runs) and ``edge/{store}/health`` (``status``, ``reasons``, one heartbeat
device), and answers every ``hub/{store}/update`` with the states of the wire:
``downloading``, ``installed``, ``switching``, then "runs the new version":
a new status and snapshot naming it, and ``healthy``. A version in
``bad_versions`` turns the store degraded once it runs (its device offline,
the reason ``device_offline``), as a release with a broken driver would. A
store in ``held`` keeps the updates it gets until ``release()``: a store still
downloading. Every update received is kept (version, rollout, retained) for
the tests to look at; one client for all the stores keeps twenty of them light.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt

from sync.hub.broker import make_client, parse_broker_url
from sync.topics import DesiredRelease, StoreTopics, UpdateResult, hub_topic, validate


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SimStores:
    """``stores`` running ``version``; ``start()`` publishes them, ``stop()`` disconnects."""

    def __init__(self, broker_url: str, stores: list[str], version: str = "0.1.0",
                 bad_versions: tuple[str, ...] = ()):
        self.broker = parse_broker_url(broker_url)
        self.stores = list(stores)
        self.running = {s: version for s in stores}
        self.bad_versions = set(bad_versions)
        self.received: dict[str, list[tuple[str, str, bool]]] = {s: [] for s in stores}
        self.held: set[str] = set()
        self._waiting: list[tuple[str, DesiredRelease]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = make_client(self.broker, f"sim-stores-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> "SimStores":
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        assert self._subscribed.wait(timeout), "the simulated stores could not subscribe"
        for s in self.stores:
            self._publish_state(s)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def release(self) -> None:
        """Answer the updates held back, and hold no more."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self.held.clear()
        for store, msg in waiting:
            self._update(store, msg)

    # The stores' side ----------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        client.subscribe("hub/+/update", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        store = msg.topic.split("/")[1]
        if store not in self.received or not msg.payload:
            return
        desired = validate(DesiredRelease, json.loads(msg.payload))
        with self._lock:
            self.received[store].append((desired.version, desired.rollout, bool(msg.retain)))
            if store in self.held:
                self._waiting.append((store, desired))
                return
        self._update(store, desired)

    def _update(self, store: str, desired: DesiredRelease) -> None:
        before = self.running[store]
        for state in ("downloading", "installed", "switching"):
            self._answer(store, desired, state, before)
        self.running[store] = desired.version
        self._publish_state(store)
        self._answer(store, desired, "healthy", desired.version)
        if desired.version in self.bad_versions:
            self._publish_state(store, degraded=True)

    def _answer(self, store: str, desired: DesiredRelease, state: str, running: str) -> None:
        res = UpdateResult(version=desired.version, rollout=desired.rollout, state=state, running=running,
                           at=datetime.now(timezone.utc))
        self.client.publish(StoreTopics(store).update_res, res.wire(), qos=1)

    def _publish_state(self, store: str, degraded: bool = False) -> None:
        t = StoreTopics(store)
        version = self.running[store]
        status = {"state": "online", "version": version, "since": _now()}
        device = {"id": "heartbeat-1", "kind": "sensor.heartbeat", "state": "offline" if degraded else "online",
                  "since": _now(), "last_error": "connection refused" if degraded else None, "counters": {},
                  "actions": ["reopen"]}
        health = {"store": store, "version": version, "time": _now(), "devices": [device],
                  "status": "degraded" if degraded else "ok",
                  "reasons": [{"code": "device_offline", "subject": "heartbeat-1",
                               "message": "heartbeat-1 offline: connection refused"}] if degraded else [],
                  "outbox_depth": 0}
        self.client.publish(t.status, json.dumps(status).encode(), qos=1, retain=True)
        self.client.publish(t.health, json.dumps(health).encode(), qos=1, retain=True)


def retained_updates(broker_url: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """Every retained ``hub/{store}/update`` the broker holds, by store.

    The broker sends the retained messages of a subscription before anything
    published after it: a marker published once subscribed arrives last.
    """
    broker = parse_broker_url(broker_url)
    marker = f"test/marker/{uuid.uuid4().hex[:8]}"
    found: dict[str, dict[str, Any]] = {}
    subscribed, done = threading.Event(), threading.Event()
    client = make_client(broker, f"sim-look-{uuid.uuid4().hex[:8]}")

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == marker:
            done.set()
        elif msg.retain and msg.payload:
            found[msg.topic.split("/")[1]] = json.loads(msg.payload)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe([("hub/+/update", 1), (marker, 1)])
        assert subscribed.wait(timeout), "could not subscribe to hub/+/update"
        client.publish(marker, b"x", qos=1)
        assert done.wait(timeout), "the marker did not come back"
    finally:
        client.disconnect()
        client.loop_stop()
    assert all(hub_topic(s, "update") for s in found)
    return found
