"""A test's view of the hub: a plain paho client on the real broker that sees
everything a store publishes and can answer like a hub would."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class HubClient:
    """Subscribes to ``edge/{store}/#``; ``expect`` waits for a matching message."""

    def __init__(self, port: int, store: str):
        self.store = store
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.seen: list[mqtt.MQTTMessage] = []
        # The stream of the last events seen: what ``ack`` acknowledges unless told otherwise.
        self.stream: str | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-hub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        subscribed = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"edge/{store}/#", qos=1)
        subscribed.get(timeout=30)

    def expect(self, suffix: str, match: Callable[[Any], bool] = lambda _: True, timeout: float = 30.0) -> Any:
        """The JSON of the next message on ``edge/{store}/{suffix}`` for which ``match`` holds."""
        topic = f"edge/{self.store}/{suffix}"
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing matching on {topic} within {timeout} s; "
                                     f"saw {[m.topic for m in self.seen][-20:]}")
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(msg)
            if msg.topic == f"edge/{self.store}/events":
                batch = json.loads(msg.payload)
                if isinstance(batch, list) and batch and isinstance(batch[-1], dict):
                    self.stream = batch[-1].get("stream")
            if msg.topic == topic:
                body = json.loads(msg.payload)
                if match(body):
                    return body

    def events_until(self, last_seq: int, timeout: float = 20.0) -> list[dict]:
        """Every event received on the events topic until one with ``seq >= last_seq``."""
        got: list[dict] = []
        self.expect("events", lambda batch: got.extend(batch) or batch[-1]["seq"] >= last_seq, timeout)
        return got

    def send(self, kind: str, payload: Any, store: str | None = None) -> None:
        """Publish on ``hub/{store}/{kind}`` (JSON-encoded unless bytes)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"hub/{store or self.store}/{kind}", body, qos=1).wait_for_publish(5)

    def ack(self, seq: int, stream: str | None = None) -> None:
        """Acknowledge every event up to ``seq`` of ``stream`` (the stream of the last events seen)."""
        stream = stream or self.stream
        self.send("ack", {"seq": seq, **({"stream": stream} if stream else {})})

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
