"""The agent's MQTT 5 link to the hub: outbox drain, acks, presence, health.

Delivery is at least once on the wire and exactly once in effect: the outbox
keeps every event until ``hub/{store}/ack`` covers its seq, batches go out in
seq order with their stored ids, and after a reconnect (or when the hub's ack
stalls) everything unacknowledged is sent again from the last ack; the hub
drops what it already has by ``(store, stream, seq)``. A stall's resend
waits ``resend_after_s``, then twice as long each time the hub still says
nothing, up to ``resend_max_s``: through an hour with the broker up and the
hub down a store sends its backlog again about 8 times, not 120 (every copy
lands in the hub's shared subscription queue and is dropped there later).

The link knows the outbox only through ``sync.outbox_port.OutboxPort`` (the agent
passes in an adapter over its store), its connection through ``HubSettings``
and the devices through a snapshot callable: it imports nothing of the agent.

Streams (edge_agent/store/streams.py): an event goes out as ``seq`` of its
stream, the run of the database that numbered it; a batch never spans two
streams, and an ack names its stream. An ack for a stream is applied only
once every earlier stream is acknowledged (two hub workers may answer out of
order): until then it waits in ``_held_acks``. An ack for a closed stream
beyond what this database holds means the hub has more of that stream than
this copy: the database was restored from a backup or copied, and every
event of that stream here is at the hub. An ack for a stream this database
does not know is another database's (another agent running as this store,
or an old disk being drained) and is ignored.

Two agents with one store id share the MQTT client id and take the broker
session from each other; the hub notices their two streams announced in
turn and says so on ``hub/{store}/notice``. Both show on ``GET /v1/health``.

paho runs its network loop in its own thread; its callbacks only hand work
to the event loop (``call_soon_threadsafe``), so neither the API nor the
devices ever wait on the hub. Nothing here blocks while the hub is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_core.bus import Bus, utcnow
from edge_core.logonce import LogOnce
from sync import topics
from sync.brokerurl import parse_broker_url, tcp_no_delay
from sync.events import OutboxEvent
from sync.outbox_port import LEGACY_STREAM, DeviceSnapshot, HubSettings, OutboxPort, StreamsView

log = logging.getLogger(__name__)

# The broker keeps our session (and the downlink sent while we are away) this
# long; matches persistent_client_expiration in systemd/mosquitto/edge-hub.conf.example.
SESSION_EXPIRY_S = 14 * 24 * 3600


@dataclass(frozen=True)
class LinkSettings:
    """Tunables of the link; the defaults suit a store."""

    batch_max_events: int = 500
    batch_max_bytes: int = 256 * 1024
    # Events sent but not yet acknowledged, at most: bounds what a reconnect resends.
    window_events: int = 20_000
    # No ack progress for this long while connected: resend from the last ack; then
    # twice as long before each further resend without progress, up to resend_max_s.
    resend_after_s: float = 30.0
    resend_max_s: float = 600.0
    health_every_s: float = 60.0
    # Device-state changes and alerts within this window go out as one health snapshot.
    health_debounce_s: float = 1.0
    # How often the store's assessment (status, reasons, labels, printing) is
    # looked at between snapshots: a change goes out at once, without an event
    # of its own (a print job that failed, a label past its grace).
    health_check_s: float = 5.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    # After the broker gave our session to another client (two agents with one store id), wait
    # this long before taking it back: each still gets a turn, without a takeover every second.
    takeover_backoff_s: float = 10.0
    # How long a sign of trouble (an ack refused, a takeover, the hub's duplicate notice)
    # keeps the store degraded after it was last seen.
    trouble_hold_s: float = 120.0


class HubLink:
    """Owns the agent's MQTT client; ``start()`` returns at once, the link comes up on its own."""

    def __init__(
        self,
        hub: HubSettings,
        outbox: OutboxPort,
        bus: Bus,
        version: str,
        data_dir: Path,
        devices: DeviceSnapshot | None = None,
        on_downlink: Callable[[str, bytes], Any] | None = None,
        settings: LinkSettings = LinkSettings(),
        assess: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        drain_only: bool = False,
    ):
        self.hub = hub
        self.outbox = outbox
        self.bus = bus
        # Every device's state for the health snapshot (the agent's supervisor); none for a drain.
        self.devices = devices
        self.version = version
        self.data_dir = data_dir
        self.settings = settings
        # ``edge-agent drain``: send what a store database holds (an old disk's, a replaced
        # PC's) and nothing else, beside the store's live agent: its own client id and a
        # session that ends with it, acks only, no status, no health, no Will.
        self.drain_only = drain_only
        self.topics = topics.StoreTopics(hub.store_id)
        self.on_downlink = on_downlink
        # The store's own assessment (edge_agent/health.py): status, reasons, labels, printing.
        self.assess = assess
        self._last_assessment: dict[str, Any] | None = None
        self.connected = False
        self.connected_since: datetime | None = None
        # Since when the link is down (from the start until the first connect): GET /v1/health's grace.
        self.offline_since: datetime | None = utcnow()
        self.last_error: str | None = None
        self.stats = {"batches_sent": 0, "events_sent": 0, "resends": 0, "acks": 0, "bad_acks": 0,
                      "foreign_acks": 0, "takeovers": 0, "telemetry_dropped": 0}
        # Signs that the outbox cannot drain or that another agent runs as this store, by code:
        # (last seen, message). GET /v1/health turns the recent ones into reasons (health.py).
        self.trouble: dict[str, tuple[datetime, str]] = {}
        # The hub's duplicate_store notice, while raised and naming our stream.
        self.duplicate_notice: topics.Notice | None = None
        # Acks for a stream whose predecessors are not all acknowledged yet: stream id -> local seq.
        self._held_acks: dict[str, int] = {}
        # Closed streams the hub holds more of than this database: said once each.
        self._behind_said: set[str] = set()
        self._connected_at = 0.0
        self._short_connections = 0
        self.budget_bytes = hub.outbox_budget_bytes
        self.over_budget = False
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._health_due = asyncio.Event()
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._sent = 0     # highest seq published in this connection
        self._generation = 0  # +1 per connection: a batch read before a reconnect is stale
        # Highest seq this process has published: an ack above it cannot be
        # about events the hub got from us now (a stale or bogus ack).
        self._published_max = 0
        self._acked = 0    # highest seq the hub acknowledged
        # Hub clock minus ours, from the time in the hub's acks (None until one
        # came); off by the ack's transit time, milliseconds on a sane network.
        self.clock_offset_s: float | None = None
        self._last_progress = time.monotonic()
        self._resend_wait = settings.resend_after_s  # doubled by each resend without progress
        # When the hub last acknowledged new events, or the link last came up (the hub's time to
        # answer starts there): GET /v1/health says hub_not_acknowledging only past a grace from it.
        # Not _last_progress, which a resend also moves.
        self.ack_progress_at: datetime | None = None
        self._log_once = LogOnce(log)
        self._stopping = False

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Create the client and let it connect in the background."""
        self._loop = asyncio.get_running_loop()
        self._acked = await self.outbox.acked_seq()
        self._sent = self._acked
        self.outbox.on_commit(lambda: self._loop.call_soon_threadsafe(self._wake.set))
        try:
            self._client = self._make_client()
        except (OSError, ssl.SSLError, ValueError) as err:
            # Unreadable CA, certificate or key: the store still sells, offline.
            self.last_error = f"cannot set up TLS for the hub: {err}; check hub.ca_file, cert_file and key_file"
            log.error("hub: %s", self.last_error)
            return
        broker = parse_broker_url(self.hub.url)
        self._client.connect_async(broker.host, broker.port, keepalive=self.hub.keepalive,
                                   clean_start=False, properties=self._connect_properties())
        self._client.loop_start()
        self._tasks = [
            asyncio.create_task(self._drain(), name="hub-drain"),
            asyncio.create_task(self._receive(), name="hub-receive"),
        ]
        if not self.drain_only:
            self._tasks += [asyncio.create_task(self._health_loop(), name="hub-health"),
                            asyncio.create_task(self._watch_devices(), name="hub-devices")]

    async def stop(self) -> None:
        """Say offline (the Will only covers unclean ends), disconnect, stop the tasks."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: shutdown must finish within the 10 s SIGTERM budget whatever a task does.
            _, stuck = await asyncio.wait(self._tasks, timeout=3)
            for task in stuck:
                log.error("hub: task %s did not stop; leaving it", task.get_name())
        client = self._client
        if client is None:
            return
        if self.connected and not self.drain_only:
            info = client.publish(self.topics.status, json.dumps({"state": "offline"}), qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, 2)
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)

    # The paho client -----------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        hub = self.hub
        login = hub.username or hub.store_id
        # The client id is the login, as the shipped hub broker enforces (systemd/mosquitto/edge-hub.conf.example,
        # use_username_as_clientid): no other store's login can take this store's session. `edge-agent drain`
        # uses it too, as a guest in the store's session (whatever the broker enforces, so that a drain beside
        # a live agent behaves alike everywhere): the two hold the session by turns (hub.takeover_backoff), the
        # drain keeps the session as it found it (no clean start, the same expiry) and acknowledges only the
        # acks of its own database's streams (manual_ack, _on_message), so every other downlink message stays
        # in the session and the broker gives it to the agent when it takes the session back.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=login, protocol=mqtt.MQTTv5,
                             manual_ack=self.drain_only)
        client.reconnect_delay_set(int(self.settings.reconnect_min_s), int(self.settings.reconnect_max_s))
        if not self.drain_only:
            client.will_set(self.topics.status, json.dumps({"state": "offline"}), qos=1, retain=True)
        # The hub's ACL knows a store by its login: the store id (systemd/mosquitto/acl.example).
        client.username_pw_set(login, self._password())
        if parse_broker_url(hub.url).tls:
            client.tls_set(
                ca_certs=str(hub.ca_file) if hub.ca_file else None,
                certfile=str(hub.cert_file) if hub.cert_file else None,
                keyfile=str(hub.key_file) if hub.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_socket_open = tcp_no_delay
        return client

    def _password(self) -> str | None:
        path = self.hub.password_file
        if path is None:
            return None
        try:
            return Path(path).read_text().strip()
        except OSError as err:
            self.last_error = f"cannot read hub.password_file {path}: {err.strerror}"
            log.error("hub: %s; connecting without a password", self.last_error)
            return None

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        # The drain too: a session it ended would take the live agent's queued downlink with it.
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        return props

    # paho thread: hand everything to the event loop.
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._loop.call_soon_threadsafe(self._connect_failed, str(reason))
            return
        # Back to the usual reconnect delays (a takeover's backoff applies to one reconnect).
        client.reconnect_delay_set(int(self.settings.reconnect_min_s), int(self.settings.reconnect_max_s))
        wanted = [self.topics.downlink["ack"]] if self.drain_only else self.topics.subscriptions()
        client.subscribe([(t, 1) for t in wanted])
        self._loop.call_soon_threadsafe(self._connected)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho swallows the socket or TLS error itself and tells us only this.
        self._loop.call_soon_threadsafe(
            self._connect_failed,
            f"cannot connect to {self.hub.url} (network down, broker not running, or TLS: check "
            "hub.ca_file/cert_file and that the hub's certificate names the host in hub.url)",
        )

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list, props: Any) -> None:
        refused = [str(c) for c in codes if c.is_failure]
        if refused:
            self._loop.call_soon_threadsafe(self._refused, f"the broker refused the downlink subscriptions: "
                                            f"{', '.join(refused)}")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if reason.is_failure:
            # Mosquitto answers a publish its ACL forbids with PUBACK 0x87 and drops it.
            self._loop.call_soon_threadsafe(self._refused, f"the broker refused a publish: {reason}; check that "
                                            "hub.username is this store's id and the hub's ACL")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        # Here, in paho's thread, before it waits to reconnect: a session taken by another client
        # (two agents with one store id) is taken back only after takeover_backoff_s, so that each
        # gets a turn without a takeover every second. Mosquitto 2.0 closes such a session without
        # saying why: a connection that keeps dropping within seconds is taken as one too.
        short = time.monotonic() - self._connected_at < 5.0
        if str(reason) == "Session taken over" or (short and self._short_connections >= 2):
            backoff = max(1, int(self.settings.takeover_backoff_s))
            client.reconnect_delay_set(backoff, max(backoff, int(self.settings.reconnect_max_s)))
        self._loop.call_soon_threadsafe(self._disconnected, str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.drain_only:
            if not self._drain_takes(msg):
                return  # the live agent's: left unacknowledged, the broker gives it to the agent again
            client.ack(msg.mid, msg.qos)
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, (msg.topic, msg.payload))

    def _drain_takes(self, msg: mqtt.MQTTMessage) -> bool:
        """A drain's own message: an ack naming one of this database's streams (paho thread; ``streams``
        is replaced whole, never changed in place)."""
        if msg.topic != self.topics.downlink["ack"]:
            return False
        try:
            stream = json.loads(msg.payload).get("stream")
        except (ValueError, AttributeError):
            return False
        return isinstance(stream, (str, type(None))) and self.outbox.streams.get(stream or LEGACY_STREAM) is not None

    # Event loop side ------------------------------------------------------------

    def _connected(self) -> None:
        self._generation += 1
        self.connected = True
        self.connected_since = utcnow()
        self.offline_since = None
        self.last_error = None
        # Resend everything the hub has not acknowledged: it drops duplicates.
        if self._sent > self._acked:
            self.stats["resends"] += 1
        self._sent = self._acked
        self._last_progress = self._connected_at = time.monotonic()
        self.ack_progress_at = self.connected_since
        status = {"state": "online", "version": self.version, "since": self.connected_since.isoformat(),
                  "stream": self.outbox.stream_id}
        if not self.drain_only:
            self._client.publish(self.topics.status, json.dumps(status), qos=1, retain=True)
        log.info("hub: connected to %s", self.hub.url)
        self.bus.publish("hub.state", {"state": "online"})
        self._wake.set()
        self._health_due.set()

    def _connect_failed(self, reason: str) -> None:
        self.last_error = reason if reason.startswith("cannot") else f"broker refused the connection: {reason}"
        self._log_once.warning(("connect", self.last_error), "hub: %s", self.last_error)

    def _refused(self, reason: str) -> None:
        self.last_error = reason
        self._log_once.error(("refused", reason), "hub: %s", reason)
        self._trouble("hub_publish_refused", reason)

    def _trouble(self, code: str, message: str) -> None:
        fresh = code not in self.trouble
        self.trouble[code] = (utcnow(), message)
        if fresh:
            self._health_due.set()

    def _disconnected(self, reason: str) -> None:
        was = self.connected
        self.connected = False
        if was:
            self.offline_since = utcnow()
        if was and not self._stopping:
            # Mosquitto 2.0 closes a taken-over session without saying why: a connection
            # that drops within seconds, time after time, is the sign.
            short = time.monotonic() - self._connected_at < 5.0
            self._short_connections = self._short_connections + 1 if short else 0
            if reason == "Session taken over" or self._short_connections >= 3:
                self._taken_over(reason)
            else:
                log.warning("hub: disconnected (%s); events wait in the outbox", reason)
            self.bus.publish("hub.state", {"state": "offline", "reason": reason})

    def _taken_over(self, reason: str) -> None:
        self.stats["takeovers"] += 1
        message = (f"the broker gave this store's MQTT session to another client ({reason}): another agent "
                   f"runs with store.id {self.hub.store_id} (a copied devices.yaml?), or someone else has "
                   "this store's MQTT credentials")
        self._log_once.error(("takeover",), "hub: %s; reconnecting in %.0f s", message,
                             self.settings.takeover_backoff_s)
        self._trouble("mqtt_session_taken_over", message)

    async def _drain(self) -> None:
        """Publish unacknowledged events in seq order, within the window; a failed pass is logged
        and tried again (the events stay in the outbox), it never ends the drain."""
        while True:
            try:
                await self._drain_pass()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the outbox must keep draining whatever one pass met
                self._log_once.error(("drain", type(err).__name__), "hub: cannot send the outbox, trying again: "
                                     "%s: %s", type(err).__name__, err)
                self._trouble("outbox_unreadable", f"the outbox cannot be sent: {type(err).__name__}: {err}")
                await asyncio.sleep(max(1.0, self.settings.resend_after_s / 4))

    async def _drain_pass(self) -> None:
        s = self.settings
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a
            # cancellation that races with the event firing, and stop() hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(1.0, s.resend_after_s / 4)):
                    await self._wake.wait()
            self._wake.clear()
            if (self.outbox.bytes > self.budget_bytes or self.over_budget) and not self.drain_only:
                await self._enforce_budget()
            if not self.connected:
                continue
            if self._sent > self._acked and time.monotonic() - self._last_progress > self._resend_wait:
                log.warning("hub: no ack for %.0f s; resending from seq %d", self._resend_wait, self._acked + 1)
                self.stats["resends"] += 1
                self._sent = self._acked
                self._last_progress = time.monotonic()
                self._resend_wait = min(self._resend_wait * 2, max(s.resend_max_s, s.resend_after_s))
            while self.connected and self._sent - self._acked < s.window_events:
                after, generation = self._sent, self._generation
                limit = min(s.batch_max_events, s.window_events - (self._sent - self._acked))
                events = await self.outbox.pending(after, limit)
                if generation != self._generation:
                    continue  # reconnected meanwhile: start again from the last ack
                if not events:
                    break
                for last_seq, count, payload in _batches(events, s.batch_max_bytes, self.topics.source,
                                                         self.outbox.streams):
                    if not self.connected or not self._publish_batch(last_seq, count, payload):
                        break

    def _publish_batch(self, last_seq: int, count: int, payload: bytes) -> bool:
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = topics.BATCH_CONTENT_TYPE
        info = self._client.publish(self.topics.events, payload, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # not connected after all: the reconnect resends from the last ack
        self._sent = last_seq
        self._published_max = max(self._published_max, last_seq)
        self.stats["batches_sent"] += 1
        self.stats["events_sent"] += count
        return True

    async def _receive(self) -> None:
        while True:
            topic, payload = await self._inbox.get()
            kind = self.topics.downlink_kind(topic)
            try:
                if kind == "ack":
                    await self._handle_ack(payload)
                elif kind == "notice":
                    self._handle_notice(payload)
                elif kind is not None and self.on_downlink is not None:
                    await self.on_downlink(kind, payload)
            except Exception:  # noqa: BLE001 - one bad message must not end the link
                log.exception("hub: handling a message on %s failed", topic)

    async def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = topics.validate(topics.Ack, topics.decode_json(payload))
        except topics.PayloadError as err:
            self.stats["bad_acks"] += 1
            self._log_once.warning(("ack", str(err)[:60]), "hub: bad ack ignored: %s", err)
            return
        if ack.time is not None and ack.time.tzinfo is not None:
            self.clock_offset_s = (ack.time - utcnow()).total_seconds()
        streams = self.outbox.streams
        stream = streams.get(ack.stream or LEGACY_STREAM)
        if stream is None:
            # Another database's stream: another agent running as this store, or an old
            # disk being drained. Nothing of ours.
            self.stats["foreign_acks"] += 1
            return
        live = stream.id == self.outbox.stream_id
        # A closed stream ends before this run began, whatever last_seq says: in the run's first
        # write group last_seq already counts events whose stream readers do not know yet.
        end = streams.end(stream, self.outbox.last_seq if live else self.outbox.run_base)
        local = stream.base + ack.seq
        if local > end:
            if live:
                # The hub claims events of this run that it never numbered: believing
                # it would delete events the hub does not have.
                self.stats["bad_acks"] += 1
                n = end - stream.base
                message = (f"ack for seq {ack.seq} ignored: this run's stream {stream.id} has only {n} "
                           f"{'event' if n == 1 else 'events'}; the outbox keeps them")
                self._log_once.warning(("ack", "ahead"), "hub: %s", message)
                self._trouble("hub_ack_invalid", message)
                return
            # A closed stream the hub holds more of than this database: this database is
            # a copy (a restored backup, a cloned disk). All of that stream here is there.
            if stream.id not in self._behind_said:
                self._behind_said.add(stream.id)
                await self._database_behind(stream.id or "(legacy)", ack.seq, end - stream.base)
            local = end
        elif live and local > self._published_max:
            return  # numbered, not yet sent by this process: cannot be about ours (a bogus ack)
        if local <= self._acked:
            return  # a repeated or late ack
        if self._acked < stream.base:
            # An earlier stream is not all acknowledged yet (two hub workers answering out of
            # order): keep it until that one is, or events of the earlier stream would go.
            self._held_acks[stream.id] = max(local, self._held_acks.get(stream.id, 0))
            return
        await self._acknowledge(local)
        while True:  # acks held for the streams that follow, now applicable
            ready = [(sid, seq) for sid, seq in self._held_acks.items()
                     if (s := streams.get(sid)) is not None and s.base <= self._acked]
            if not ready:
                break
            for sid, _ in ready:
                del self._held_acks[sid]
            best = max(seq for _, seq in ready)
            if best > self._acked:
                await self._acknowledge(best)

    async def _database_behind(self, stream: str, hub_seq: int, ours: int) -> None:
        data = {"device": "hub-link", "severity": "warning", "code": "database_behind_hub", "state": "raised",
                "subject": stream,
                "message": f"the hub holds stream {stream} up to seq {hub_seq}, this store's database only up to "
                           f"{ours}: the database was restored from a backup or copied. The {hub_seq - ours} "
                           "events after it are safe at the hub, but the store's stock counts and points do not "
                           "include them"}
        log.warning("hub: %s", data["message"])
        if self.drain_only:
            return  # a database being drained takes no new event
        await self.outbox.emit_alert(data)
        self.bus.publish("alert.raised", data)

    def _handle_notice(self, payload: bytes) -> None:
        if not payload:
            if self.duplicate_notice is not None:  # a cleared retained notice
                self.duplicate_notice = None
                self.bus.publish("hub.notice", {"duplicate": False})
            return
        try:
            notice = topics.validate(topics.Notice, topics.decode_json(payload))
        except topics.PayloadError as err:
            self._log_once.warning(("notice", str(err)[:60]), "hub: bad notice ignored: %s", err)
            return
        mine = self.outbox.stream_id in notice.streams
        if notice.state == "raised" and mine:
            if self.duplicate_notice is None:
                log.error("hub: %s", notice.message or "the hub sees two agents running as this store")
                self._health_due.set()
            self.duplicate_notice = notice
            self.bus.publish("hub.notice", {"duplicate": True})
        elif self.duplicate_notice is not None and (notice.state == "cleared" or not mine):
            log.info("hub: the hub no longer sees two agents running as this store")
            self.duplicate_notice = None
            self._health_due.set()
            self.bus.publish("hub.notice", {"duplicate": False})

    def recent_trouble(self) -> list[tuple[str, str]]:
        """(code, message) of the trouble seen within ``trouble_hold_s``, and the hub's duplicate notice."""
        now = utcnow()
        out = [(code, message) for code, (at, message) in self.trouble.items()
               if (now - at).total_seconds() < self.settings.trouble_hold_s]
        if self.duplicate_notice is not None:
            n = self.duplicate_notice
            out.append(("duplicate_store", n.message or f"the hub sees two agents running as store "
                        f"{self.hub.store_id} (streams {', '.join(n.streams)})"))
        return out

    async def _acknowledge(self, seq: int) -> None:
        """Forget the events up to local ``seq``: the hub holds them."""
        await self.outbox.acknowledge(seq)
        self._acked = seq
        self._sent = max(self._sent, seq)
        self._last_progress = time.monotonic()
        self._resend_wait = self.settings.resend_after_s
        self.ack_progress_at = utcnow()
        self.stats["acks"] += 1
        self._wake.set()

    async def _enforce_budget(self) -> None:
        """Past the budget, drop telemetry oldest first; say so once per episode."""
        excess = self.outbox.bytes - self.budget_bytes
        if excess > 0:
            dropped = await self.outbox.drop_telemetry(excess)
            self.stats["telemetry_dropped"] += dropped
            if dropped:
                self._health_due.set()
                self._log_once.warning("budget-drop", "hub: outbox over its %g MB budget: dropped %d telemetry "
                                       "%s, oldest first", self.budget_bytes / 2**20, dropped,
                                       "event" if dropped == 1 else "events")
        over = self.outbox.bytes > self.budget_bytes
        if over and not self.over_budget:
            data = {"device": "hub-link", "severity": "critical", "code": "outbox_over_budget", "state": "raised",
                    "message": f"the outbox holds {self.outbox.bytes} bytes of business events, over its "
                               f"budget of {self.budget_bytes}; nothing is dropped, the disk fills"}
            log.error("hub: %s", data["message"])
            await self.outbox.emit_alert(data)
            self.bus.publish("alert.raised", data)
        elif self.over_budget and not over:
            # Drained back under the budget: the alert clears, here and at the hub.
            data = {"device": "hub-link", "severity": "info", "code": "outbox_over_budget", "state": "cleared",
                    "message": f"the outbox is back under its budget of {self.budget_bytes} bytes"}
            log.info("hub: %s", data["message"])
            await self.outbox.emit_alert(data)
            self.bus.publish("alert.cleared", data)
        if over != self.over_budget:
            self.over_budget = over
            self._health_due.set()

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo | None:
        """Publish one uplink message at QoS 1 (command and config results); dropped while offline (None).
        The answer's ``wait_for_publish`` says when the broker has it."""
        if self._client is not None and self.connected:
            return self._client.publish(topic, payload, qos=1)
        return None

    def resend_from(self, seq: int, stream: str | None = None) -> int:
        """Send again every event from ``seq`` of ``stream`` (this run's when None) on; a hub that
        lost data asks for it. Returns the local seq it starts from."""
        s = self.outbox.streams.get(self.outbox.stream_id if stream is None else stream)
        if s is None:
            if stream is None:
                raise ValueError("this run has numbered no event yet")
            raise ValueError(f"no stream {stream} in this store's database")
        seq += s.base
        if seq <= self._acked:
            raise ValueError(f"events up to {self._acked} were acknowledged and are no longer kept; "
                             f"resend from {self._acked + 1} or later")
        if seq > self.outbox.last_seq + 1:
            raise ValueError(f"seq {seq} is past the last assigned seq {self.outbox.last_seq}")
        self._sent = min(self._sent, seq - 1)
        self._wake.set()
        return seq

    # Health ---------------------------------------------------------------------

    async def _watch_devices(self) -> None:
        # Alerts too: a printer out of paper or a label past its grace must reach the hub's
        # tiles now, not at the next periodic snapshot.
        sub = self.bus.subscribe("device.state", "hub.state", "alert.")
        try:
            while True:
                await sub.get()
                await asyncio.sleep(self.settings.health_debounce_s)  # gather a burst of changes
                while not sub.queue.empty():  # the burst is in this snapshot: one, not one per event
                    sub.queue.get_nowait()
                self._health_due.set()
        finally:
            sub.close()

    async def _health_loop(self) -> None:
        s = self.settings
        last_sent = -float("inf")
        owed = False  # a snapshot was due when a pass failed: the next pass sends one
        while True:
            # Offline, nothing goes out: wait a check interval (or for the connect, which sets _health_due).
            left = s.health_every_s - (time.monotonic() - last_sent) if self.connected else s.health_check_s
            # After a failed pass, a check interval too: a lasting fault must not spin.
            wait = s.health_check_s if owed else max(0.0, min(left, s.health_check_s))
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see _drain
                async with asyncio.timeout(wait):
                    await self._health_due.wait()
            due = owed or self._health_due.is_set() or time.monotonic() - last_sent >= s.health_every_s
            self._health_due.clear()
            if not self.connected:
                continue
            try:
                assessment = await self._assessment()
                if not due and assessment == self._last_assessment:
                    continue
                snapshot = await self.health_snapshot(assessment)
            except Exception as err:  # noqa: BLE001 - one failed pass must not stop the snapshots for good
                self._log_once.error(("health", type(err).__name__), "hub: cannot build the health snapshot, "
                                     "trying again: %s: %s", type(err).__name__, err)
                owed = due
                continue
            self._client.publish(self.topics.health, json.dumps(snapshot), qos=1, retain=True)
            self._last_assessment = assessment
            last_sent, owed = time.monotonic(), False

    async def _assessment(self) -> dict[str, Any]:
        return await self.assess() if self.assess is not None else {}

    async def health_snapshot(self, assessment: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every device's state, outbox depth and age, disk free, version; with the store's
        assessment: ``status`` and ``reasons``, ``labels`` and ``printing`` as ``GET /v1/health`` has them."""
        if assessment is None:
            assessment = await self._assessment()
        depth, oldest = await self.outbox.depth()
        now = utcnow()
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        disk = shutil.disk_usage(self.data_dir)
        return {
            "store": self.hub.store_id,
            "version": self.version,
            "time": now.isoformat(),
            "devices": self.devices() if self.devices is not None else [],
            "outbox_depth": depth,
            "oldest_unacked_age_s": round(age, 1),
            "last_seq": self.outbox.last_seq,
            "acked_seq": self._acked,
            "stream": self.outbox.stream_id,
            "disk_free_bytes": disk.free,
            "outbox_bytes": self.outbox.bytes,
            "outbox_budget_bytes": self.budget_bytes,
            "telemetry_dropped": self.stats["telemetry_dropped"],
            "over_budget": self.over_budget,
            # Hub clock minus this store's, from the last ack (None before one):
            # positive when the store's clock is behind.
            "clock_offset_s": None if self.clock_offset_s is None else round(self.clock_offset_s, 3),
            **assessment,
        }


def _batches(events: list[OutboxEvent], max_bytes: int, source: str,
             streams: StreamsView) -> list[tuple[int, int, bytes]]:
    """(last local seq, count, payload) per batch of at most ``max_bytes`` (one event alone may
    exceed it); a batch holds the events of one stream, each numbered in it."""
    out: list[tuple[int, int, bytes]] = []
    parts: list[bytes] = []
    size = 2
    current = None
    for e in events:
        stream, seq = streams.locate(e.seq)
        prev = streams.previous(stream) if seq == 1 else None
        encoded = topics.encode_event(source, e, stream.id, seq, (prev[0].id, prev[1]) if prev else None)
        if parts and (size + len(encoded) + 1 > max_bytes or stream is not current):
            out.append((e.seq - 1, len(parts), topics.join_batch(parts)))
            parts, size = [], 2
        current = stream
        parts.append(encoded)
        size += len(encoded) + 1
    if parts:
        out.append((events[-1].seq, len(parts), topics.join_batch(parts)))
    return out
