"""The broker fixture itself: a real Mosquitto that round-trips a message and restarts on its port."""

from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def _roundtrip(port: int) -> bytes:
    got: queue.Queue[bytes] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda client, userdata, msg: got.put(msg.payload)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe("t/#", qos=1)
        # A retained message arrives whether or not the subscribe was processed first.
        c.publish("t/x", b"hello", qos=1, retain=True).wait_for_publish(5)
        return got.get(timeout=30)
    finally:
        c.loop_stop()
        c.disconnect()


def test_broker_round_trips_and_restarts_on_the_same_port(mosquitto):
    assert _roundtrip(mosquitto.port) == b"hello"
    port = mosquitto.port
    mosquitto.stop()
    mosquitto.start()
    assert mosquitto.port == port
    assert _roundtrip(port) == b"hello"
