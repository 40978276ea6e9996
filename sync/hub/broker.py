"""The broker URL (``mqtt://HOST:PORT``, ``mqtts://`` for TLS) and an MQTT 5 client for it."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sync.brokerurl import DEFAULT_BROKER, BrokerURL, BrokerURLError, parse_broker_url, tcp_no_delay

__all__ = ["DEFAULT_BROKER", "BrokerURL", "BrokerURLError", "make_client", "parse_broker_url"]

def make_client(broker: BrokerURL, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho 2.x MQTT 5 client set up for ``broker`` (TLS with the system CAs for mqtts://)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if broker.tls:
        client.tls_set_context(ssl.create_default_context())
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    # Acks go out at the rate batches come in: do not cap our own QoS 1 publishes at paho's 20.
    client.max_inflight_messages_set(1000)
    client.reconnect_delay_set(1, 30)
    client.on_socket_open = tcp_no_delay
    return client

