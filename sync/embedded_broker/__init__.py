"""An in-memory MQTT 5 / 3.1.1 broker in pure asyncio: the demo store's hub
broker when Mosquitto is not installed (CONTRACT section 1, ``make run``).

- codec.py, properties.py: packets to bytes and back (pure).
- matching.py: topic names, filters, ``$share/{group}/{filter}``.
- session.py, router.py: sessions, subscriptions, retained messages, routing.
- connection.py: one client's socket; broker.py: the listener and a thread wrapper.
- process.py: the broker as a child process, like sync/localbroker.py's LocalMosquitto.
- ``python -m sync.embedded_broker --port N``: the command that process runs.

Supported: clean start / clean session, Session Expiry, Will (QoS, retain,
properties, Will Delay Interval; not sent after a normal DISCONNECT),
keep alive (closed after 1.5 x), QoS 0 and 1 both ways, QoS 2 from
publishers (PUBREC/PUBREL/PUBCOMP; subscriptions are granted at most
QoS 1), retained messages, ``+``/``#``, ``$share`` round robin, No Local,
Retain As Published, Retain Handling, Subscription Identifiers, Receive
Maximum, message properties passed through, Message Expiry, client id
takeover (DISCONNECT 0x8E), packets up to 16 MiB (Settings.max_packet_size).
Any user name and password are accepted; there is no ACL.

Not supported: TLS, WebSockets, enhanced authentication (AUTH), topic
aliases (Topic Alias Maximum is 0), $SYS topics, bridging, persistence:
nothing is written to disk, a restart forgets sessions and retained messages.
"""

from sync.embedded_broker.broker import BrokerThread, EmbeddedBroker
from sync.embedded_broker.connection import Settings
from sync.embedded_broker.process import EmbeddedBrokerProcess

__all__ = ["BrokerThread", "EmbeddedBroker", "EmbeddedBrokerProcess", "Settings"]
