"""The broker URL (``mqtt://HOST:PORT``, ``mqtts://`` for TLS) and an MQTT 5 client for it."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sync.hub.errors import BrokerURLError

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """Where the broker is; credentials may ride in the URL (``mqtt://user:pass@host``)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The URL without the password, safe to print."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerURL:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``; BrokerURLError saying how to fix anything else."""
    shown = re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise BrokerURLError(f"broker URL {shown!r}: {err}; write mqtt://HOST:1883") from err
    if parts.scheme not in _DEFAULT_PORTS:
        raise BrokerURLError(f"broker URL {shown!r} must start with mqtt:// (or mqtts:// for TLS); write mqtt://HOST:1883")
    if not parts.hostname:
        raise BrokerURLError(f"broker URL {shown!r} has no host; write mqtt://HOST:1883")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerURLError(f"broker URL {shown!r} has a path or query; write only mqtt://HOST:PORT")
    return BrokerURL(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


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
    return client
