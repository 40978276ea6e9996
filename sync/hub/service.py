"""One hub worker: MQTT in, database, acknowledgements out.

The paho network thread only queues what arrives. A worker thread takes
everything waiting (up to ``max_group`` messages), stores it in ONE
transaction, and after the commit publishes ``hub/{store}/ack`` for every
store it touched and only then sends the MQTT PUBACKs (``manual_ack``). So
the broker keeps a message until the hub has committed it: a worker killed
at any point has its unacknowledged messages redelivered by the broker when
its persistent session reconnects, and the ``(store, seq)`` key makes the
redelivery harmless. In the transaction, the group's batches that only
extend their stream (the common case) are stored together, one statement
per table for the whole group (``ingest_group``); any other batch goes
through ``Tx.ingest`` on its own, as before.

Acks are per stream (``{"seq", "stream"}``). A status names the stream the
store's agent numbers in; the same store announcing two streams in turn is
two agents running as one store: the hub records it (db.py ``identity``)
and says so, retained, on ``hub/{store}/notice`` for both agents to show;
``cleared`` once no such turn was seen for ``duplicate_clear_s``.

The queue between the two threads holds at most ``2 * max_group`` messages
(and the hub asks the broker for no more than that in flight, MQTT 5
Receive Maximum): when a hub comes back to a backlog of days, the rest
waits in the broker, not in the hub's memory. A full queue makes the
network thread wait, which also keeps it from taking the interpreter from
the worker thread while the worker has more than enough to do.

Several workers with the same ``group`` share ``$share/{group}/edge/+/events``.
Mosquitto hands out messages round-robin, not by store, so two batches of
one store may be stored by two workers in either order; the per-store row
lock in db.py and the contiguous walk put them back in order, and a hole
that one worker sees only until the other commits is not worth a warning:
gaps are logged once, when still open after ``gap_grace`` seconds.
Config results (``edge/{store}/config/res``: what a store made of a version
of its devices.yaml) are recorded by sync/hub/fleet/desired.py, and a health
snapshot's ``config`` (the version in force, drift) is checked and kept with
the snapshot. Update results (``edge/{store}/update/res``: where a store is with a release) are
recorded by sync/hub/fleet/rollout_engine.py, whose ``tick`` this worker runs every
``rollout_every`` seconds between groups: it moves staged rollouts on, halts and rolls them back, and
hands the ``hub/{store}/update`` messages it asked for to the broker (retained). Its memory is the
database, so a restarted hub carries a rollout on, and two workers running it are harmless.
Status, health, command, config and update results are plain (not shared) subscriptions:
retained messages are never delivered to shared subscriptions, and every
worker writing the same row is harmless.

The ``observer`` (observe.py) adds the console's rows to the same transaction
(device state changes from health snapshots, device alerts from events) and,
after the commit, hands what changed to the console's fleet in memory.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sync.hub.broker import BrokerURL, make_client, parse_broker_url
from sync.hub.db import HubDB, Tx, open_db
from sync.hub.errors import BatchRejected, HubDBError
from sync.hub.ingest import MAX_BATCH_BYTES, EventRow, IngestResult, parse_batch, store_topics
from sync.hub.observe import Observer
from sync.hub.fleet import desired, rollout_engine
from sync.topics import (
    HUB_CMD_RES_FILTER,
    HUB_CONFIG_RES_FILTER,
    HUB_HEALTH_FILTER,
    HUB_STATUS_FILTER,
    HUB_UPDATE_RES_FILTER,
    Command,
    CommandResult,
    ConfigHealth,
    ConfigResult,
    Notice,
    PayloadError,
    Status,
    UpdateResult,
    decode_json,
    hub_events_subscription,
    hub_topic,
    store_of,
    validate,
)

log = logging.getLogger("sync.hub")
_SESSION_TAKEN_OVER = 142  # MQTT 5 reason code: another client connected with our client id
_SHORT_CONNECTION = 5.0  # seconds; see _on_disconnect
_QUEUE_WAIT = 0.5  # seconds between looks at "stopping?" while the queue is full
_MAX_SMALL_PAYLOAD = 256 * 1024  # status, health and cmd/res are small; anything bigger is refused


def _data_error(err: HubDBError) -> bool:
    """The database refused a value or a key (not a connection or a lock): the message is at fault."""
    cause = err.__cause__
    names = {c.__name__ for c in type(cause).__mro__} if cause is not None else set()
    return isinstance(cause, OverflowError) or bool(names & {"DataError", "IntegrityError"})


def ack_payload(seq: int, stream: str, time: str) -> bytes:
    """The JSON of ``Ack(seq, stream or None, time)``, written out: one per store and group, in the hub's
    busiest loop. ``stream`` came through CloudEvent's STREAM_PATTERN (letters, digits, ``-``):
    nothing in it needs escaping."""
    if stream:
        return f'{{"seq":{seq},"stream":"{stream}","time":"{time}"}}'.encode()
    return f'{{"seq":{seq},"time":"{time}"}}'.encode()


def default_client_id(group: str) -> str:
    """``edge-hub-{group}-{host}``: stable across restarts, so the broker keeps the session."""
    return f"edge-hub-{group}-{socket.gethostname()}"[:64]


class _Incoming(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int
    conn: int  # which connection delivered it: a PUBACK only makes sense on that one


class _Intake:
    """Messages from paho's network thread to the worker; at most ``limit`` wait.

    The worker takes all that waits, up to a group, under one lock, and sleeps
    only when nothing does; the network thread waits only when ``limit``
    messages wait, which a broker that keeps to the hub's Receive Maximum
    never lets happen. ``close()`` (stopping) takes nothing more in and lets
    the worker drain what is there.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.closed = False
        self._items: deque[_Incoming] = deque()
        lock = threading.Lock()
        self._filled, self._emptied = threading.Condition(lock), threading.Condition(lock)

    def qsize(self) -> int:
        """Messages waiting for the worker."""
        return len(self._items)

    def put(self, item: _Incoming, timeout: float) -> bool:
        """Add ``item``, waiting up to ``timeout`` seconds for room; False if none came or closed."""
        with self._filled:
            if len(self._items) >= self.limit and not self._emptied.wait_for(
                    lambda: len(self._items) < self.limit or self.closed, timeout):
                return False
            if self.closed:
                return False
            self._items.append(item)
            if len(self._items) == 1:
                self._filled.notify()  # the worker sleeps only on an empty intake
            return True

    def take(self, most: int, timeout: float) -> list[_Incoming]:
        """Up to ``most`` messages, oldest first; waits up to ``timeout`` seconds while there are none."""
        with self._filled:
            if not self._items and not self.closed:
                self._filled.wait(timeout)
            was = len(self._items)
            group = [self._items.popleft() for _ in range(min(most, was))]
            if was >= self.limit and group:
                self._emptied.notify_all()
            return group

    def close(self) -> None:
        """Take nothing more; wake whoever waits."""
        with self._filled:
            self.closed = True
            self._filled.notify_all()
            self._emptied.notify_all()


@dataclass(slots=True)
class HubStats:
    """Counters since start, printed by ``edge-hub run`` when it stops."""

    batches: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    conflicts: int = 0
    acks: int = 0
    groups: int = 0


class _Throttle:
    """True at most once per ``interval`` seconds per key: log a flood once, not per message."""

    def __init__(self, interval: float = 60.0, max_keys: int = 10_000):
        self.interval, self.max_keys = interval, max_keys
        self._last: dict[Any, float] = {}
        self.suppressed: Counter[Any] = Counter()

    def __call__(self, key: Any) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self.suppressed[key] += 1
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        return True


@dataclass(frozen=True, slots=True)
class _Duplicate:
    """A status op's finding: two streams of one store announced in turn."""

    store: str
    streams: tuple[str, str]


class _Turns:
    """Which stream each store announced last, and the ones it announced before, as this worker saw
    them (a worker sees a store's statuses in the order they were sent; two workers need not see
    them at the same time). A stream announced again after another took its place is two agents."""

    KEEP = 8  # earlier streams remembered per store

    def __init__(self, max_stores: int = 200_000):
        self.max_stores = max_stores
        self._seen: dict[str, tuple[str, tuple[str, ...]]] = {}

    def announce(self, store: str, stream: str) -> str | None:
        """Note the announcement; the stream it took turns with, when it is a duplicate's."""
        live, before = self._seen.get(store, (None, ()))
        if live == stream:
            return None
        if len(self._seen) >= self.max_stores and store not in self._seen:
            self._seen.clear()
        if live is None:
            self._seen[store] = (stream, ())
            return None
        self._seen[store] = (stream, (*(s for s in before if s != stream), live)[-self.KEEP:])
        return live if stream in before else None


@dataclass(slots=True)
class _Events:
    """The rows of one ``edge/{store}/events`` message; alone, an ingest of its own (db.py)."""

    store: str
    rows: list[EventRow]

    def __call__(self, tx: Tx) -> IngestResult:
        return tx.ingest(self.store, self.rows)


def ingest_group(tx: Tx, ops: list[tuple[str, int, Any]]) -> dict[int, IngestResult]:
    """Store the group's batches that only extend their stream, every store at once (db.py
    ``Tx.ingest_extending``); by op index. Any other batch is left to its op (``Tx.ingest``)."""
    mine: dict[str, list[tuple[int, list[EventRow]]]] = {}
    for i, (_, _, op) in enumerate(ops):
        if isinstance(op, _Events):
            mine.setdefault(op.store, []).append((i, op.rows))
    if not mine:
        return {}
    # Every store of the group, events or not: the ops that follow only lock rows held already.
    return tx.ingest_extending({store for store, _, _ in ops if _is_store(store)}, mine)


def _is_store(name: str) -> bool:
    """A store id (an op of a message refused for its topic is keyed by the topic instead)."""
    try:
        store_topics(name)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class _Plan:
    """What one group of messages does to the database, sorted by store before it runs."""

    ops: list[tuple[str, int, Callable[[Tx], Any]]] = field(default_factory=list)


class HubService:
    """One hub worker process's MQTT client, worker thread and database."""

    def __init__(self, broker: str | BrokerURL, db: str | HubDB, *, group: str = "hub",
                 client_id: str | None = None, session_expiry: int = 24 * 3600,
                 max_group: int = 500, gap_grace: float = 10.0, max_batch_bytes: int = MAX_BATCH_BYTES,
                 observer: Observer | None = None, duplicate_clear_s: float = 180.0, rollout_every: float = 1.0):
        self.broker = parse_broker_url(broker) if isinstance(broker, str) else broker
        self._db_arg = db
        self.group = group
        self.client_id = client_id or default_client_id(group)
        self.session_expiry = session_expiry
        self.max_group = max_group
        self.gap_grace = gap_grace
        self.max_batch_bytes = max_batch_bytes
        # Two agents of one store take the MQTT session from each other every few seconds
        # (they back off 10 s after each takeover); this long without a turn: cleared.
        self.duplicate_clear_s = duplicate_clear_s
        self._turns = _Turns()
        self.rollout_every = rollout_every  # seconds between looks of the rollout engine; 0: never
        self.stats = HubStats()
        # Timeline rows and device alerts for the console, and its live changes (observe.py).
        self.observer = observer or Observer()
        self.db: HubDB | None = None
        self.fatal: str | None = None
        self.queue_limit = 2 * max_group
        self._queue = _Intake(self.queue_limit)
        self._ready = threading.Event()
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._conn_gen = 0
        self._client: mqtt.Client | None = None
        self._worker: threading.Thread | None = None
        self._throttle = _Throttle()
        self._db_down_since: float | None = None
        self._connected_at: float | None = None
        self._short_connections = 0

    # Life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the database, connect (retrying in the background) and start the worker."""
        self.db = open_db(self._db_arg) if isinstance(self._db_arg, str) else self._db_arg
        client = make_client(self.broker, self.client_id, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        # The broker keeps the session (subscriptions and QoS 1 messages queued for us)
        # this long after we drop, so a worker restart loses nothing.
        props.SessionExpiryInterval = self.session_expiry
        # No more unacknowledged messages in flight to us than the queue holds.
        props.ReceiveMaximum = min(self.queue_limit, 65535)
        self._client = client
        self._worker = threading.Thread(target=self._work, name="hub-worker", daemon=True)
        self._worker.start()
        client.connect_async(self.broker.host, self.broker.port, keepalive=30, clean_start=False, properties=props)
        client.loop_start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once connected and subscribed (or False on timeout or a fatal error)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.fatal or self._done.is_set():
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the service ended on its own (a fatal error); True if it did."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the messages already taken, acknowledge them, disconnect (the session stays).

        Nothing new is taken once stopping (``_on_message``), so the queue only
        drains; ``timeout`` bounds the whole wait. A worker still busy after it
        (a database that hangs) is left its database: what it has not
        acknowledged the broker delivers again.
        """
        self._stopping.set()
        deadline = time.monotonic() + timeout
        worker_busy = False
        self._queue.close()
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
            worker_busy = self._worker.is_alive()
            if worker_busy:
                log.warning("the hub worker did not finish within %.0f s; the broker keeps what it did not "
                            "acknowledge", timeout)
            self._worker = None
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self.db is not None and not worker_busy:
            self.db.close()
            self.db = None
        self._done.set()

    @property
    def connected(self) -> bool:
        """True while connected and subscribed to the broker."""
        client = self._client
        return client is not None and client.is_connected() and self._ready.is_set()

    def send_command(self, store: str, cmd: Command, expiry_s: int) -> None:
        """Publish a command on ``hub/{store}/cmd`` at QoS 1; the broker drops it after ``expiry_s`` seconds.

        The expiry matters: a store's session keeps QoS 1 messages for days, and a
        "reopen the printer" that the console already reported as timed out must
        not run when the store comes back tomorrow. Thread-safe (paho's publish).
        """
        client = self._client
        if client is None or not self.connected:
            raise ConnectionError(f"the hub is not connected to the broker {self.broker}")
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, int(expiry_s))
        props.ContentType = "application/json"
        info = client.publish(hub_topic(store, "cmd"), cmd.model_dump_json().encode(), qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"could not publish the command: {mqtt.error_string(info.rc)}")

    # Network thread: only queue ---------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            if self._throttle(("connect", str(reason_code))):
                log.error("broker %s refused the connection: %s", self.broker, reason_code)
            return
        self._conn_gen += 1
        self._connected_at = time.monotonic()
        log.info("connected to %s as %s (session %s)", self.broker, self.client_id,
                 "resumed" if flags.session_present else "new")
        # Subscribe even when the session was resumed: Mosquitto 2.0 does not restore
        # shared subscriptions from its persistence file after a broker restart.
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters()])

    def _filters(self) -> list[str]:
        return [hub_events_subscription(self.group), HUB_STATUS_FILTER, HUB_HEALTH_FILTER, HUB_CMD_RES_FILTER,
                HUB_CONFIG_RES_FILTER, HUB_UPDATE_RES_FILTER]

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self._throttle(("connect_fail",)):
            log.warning("cannot reach the broker %s; retrying (events wait in the stores meanwhile)", self.broker)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list, properties: Any) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self.fatal = f"broker {self.broker} refused the hub's subscriptions: {', '.join(failed)}"
            log.error("%s", self.fatal)
            self._done.set()
            return
        log.info("subscribed to %s", ", ".join(self._filters()))
        self._ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code == _SESSION_TAKEN_OVER:
            # Two workers with one client id would take the session from each other forever.
            self.fatal = (f"another process connected to {self.broker} with client id {self.client_id}; "
                          "give every hub worker its own --client-id")
            log.error("%s", self.fatal)
            client.disconnect()  # and do not reconnect: it would take the session back
            self._done.set()
            return
        if self._done.is_set() or self._worker is None:
            return
        log.warning("lost the broker %s (%s); reconnecting", self.broker, reason_code)
        # Mosquitto 2.0 closes a taken-over session's socket without saying why:
        # a connection that keeps dropping right after it opened is the sign.
        short = self._connected_at is not None and time.monotonic() - self._connected_at < _SHORT_CONNECTION
        self._short_connections = self._short_connections + 1 if short else 0
        if self._short_connections >= 3 and self._throttle(("flapping",)):
            log.error("the broker closed the connection right after it opened, %d times in a row; if another "
                      "process uses client id %s, give every hub worker its own --client-id",
                      self._short_connections, self.client_id)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # never acknowledged: the broker delivers it again to the next worker
        item = _Incoming(msg.topic, msg.payload, msg.mid, msg.qos, self._conn_gen)
        # Waits while the worker has its hands full.
        while not self._queue.put(item, timeout=_QUEUE_WAIT):
            if self._stopping.is_set() or self._done.is_set():
                return  # never acknowledged: the broker delivers it again to the next worker

    # Worker thread --------------------------------------------------------------------

    def _work(self) -> None:
        gap_check_every = min(1.0, self.gap_grace, self.rollout_every or 1.0)
        next_gap_check = time.monotonic() + gap_check_every
        next_rollout = time.monotonic()
        stopping = False
        while not stopping:
            group = self._queue.take(self.max_group, gap_check_every)
            stopping = not group and self._queue.closed  # stop(), and what it left is stored
            if group:
                try:
                    self._process(group)
                except Exception:
                    # A bug, not a bad payload (those are refused in _plan): keep the worker
                    # alive; the group stays unacknowledged and comes back on the next connection.
                    log.exception("could not process %d message(s); they stay with the broker", len(group))
            if time.monotonic() >= next_gap_check:
                next_gap_check = time.monotonic() + gap_check_every
                self._report_gaps()
            if self.rollout_every and time.monotonic() >= next_rollout and not stopping:
                next_rollout = time.monotonic() + self.rollout_every
                self._rollouts()

    def _process(self, group: list[_Incoming]) -> None:
        plan = _Plan()
        for msg in group:
            self._plan(msg, plan)
        # Stores in sorted order: two workers on PostgreSQL take row locks in the same order.
        plan.ops.sort(key=lambda op: (op[0], op[1]))
        results: list[IngestResult] = []
        duplicates: list[_Duplicate] = []
        poison: BaseException | None = None
        while plan.ops:
            try:
                with self.db.transaction() as tx:  # type: ignore[union-attr]
                    stored = ingest_group(tx, plan.ops)
                    outcomes = [stored[i] if i in stored else op(tx) for i, (_, _, op) in enumerate(plan.ops)]
                results = [res for res in outcomes if isinstance(res, IngestResult)]
                duplicates = [res for res in outcomes if isinstance(res, _Duplicate)]
                break
            except Exception as err:  # noqa: BLE001 - sorted out right below
                if not isinstance(err, HubDBError) or _data_error(err):
                    poison = err  # one message the database will never take: not a reason to stall
                    break
                # Nothing is acknowledged: keep the group and retry until the database is back.
                if self._db_down_since is None:
                    self._db_down_since = time.monotonic()
                    log.error("cannot store %d message(s): %s; retrying, nothing is acknowledged meanwhile",
                              len(group), err)
                if self._stopping.is_set():
                    log.warning("stopping with %d message(s) not stored; the broker will deliver them again",
                                len(group))
                    self.observer.abandoned()
                    return
                self._stopping.wait(0.5)
        if poison is not None:
            self._isolate(group, poison)
            return
        if self._db_down_since is not None:
            log.info("database back after %.0f s", time.monotonic() - self._db_down_since)
            self._db_down_since = None
        self.stats.groups += 1
        self.observer.committed()
        client = self._client
        if client is None:
            return
        acks: dict[tuple[str, str], int] = {}
        for res in results:
            self._count(res)
            self._log_result(res)
            acks[res.store, res.stream] = res.contiguous  # a stream's last batch in the group has the final value
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for (store, stream), seq in acks.items():
            if seq > 0:
                # QoS 0: an ack is cumulative and idempotent, so a lost one costs
                # nothing but time (the next ack covers it; an agent whose acks
                # stall resends and is acknowledged again). QoS 1 would add a
                # PUBACK per ack to the hub's busiest loop: measured 244 -> 165 µs
                # of hub CPU per event (bench/bench_hub_scale.py).
                self.stats.acks += 1  # before the publish: whoever got the ack may read the counter
                client.publish(store_topics(store).downlink["ack"], ack_payload(seq, stream, now), qos=0)
        for dup in duplicates:
            message = (f"two agents run as store {dup.store}: streams {dup.streams[0]} and {dup.streams[1]} "
                       "announce themselves in turn; stop the one that should not run (a copied devices.yaml?)")
            if self._throttle((dup.store, "duplicate")):
                log.error("%s", message)
            self._notice(client, dup.store, Notice(code="duplicate_store", state="raised", streams=list(dup.streams),
                                                   message=message, time=datetime.now(timezone.utc)))
        # PUBACK last: until now the broker still holds every message of the group.
        for msg in group:
            if msg.qos > 0 and msg.conn == self._conn_gen:
                client.ack(msg.mid, msg.qos)

    def _isolate(self, group: list[_Incoming], err: BaseException) -> None:
        """A group the database refused for its content (or a bug met on its way): each message
        alone, so that one bad message is refused and quarantined and the others are stored."""
        self.observer.abandoned()
        if len(group) > 1:
            for msg in group:
                self._process([msg])
            return
        msg = group[0]
        log.error("%s: cannot store a message on %s (%d bytes): %s: %s; quarantined", store_of(msg.topic) or "?",
                  msg.topic, len(msg.payload), type(err).__name__, str(err)[:300])
        plan = _Plan()
        self._refuse(plan, store_of(msg.topic), msg, BatchRejected("error", f"{type(err).__name__}: {err}"[:500]))
        try:
            with self.db.transaction() as tx:  # type: ignore[union-attr]
                for _, _, op in plan.ops:
                    op(tx)
        except HubDBError:
            return  # the database is down after all: not acknowledged, the broker delivers it again
        client = self._client
        if client is not None and msg.qos > 0 and msg.conn == self._conn_gen:
            client.ack(msg.mid, msg.qos)

    def _notice(self, client: mqtt.Client, store: str, notice: Notice) -> None:
        # Retained, QoS 1: the two agents share one MQTT session and only one is connected at a
        # time; a retained notice reaches each at its next subscribe.
        client.publish(hub_topic(store, "notice"), notice.model_dump_json(exclude_none=True).encode(), qos=1,
                       retain=True)

    def _count(self, res: IngestResult) -> None:
        self.stats.batches += 1
        self.stats.events += res.inserted
        self.stats.duplicates += res.duplicates
        self.stats.conflicts += len(res.conflicts)

    def _log_result(self, res: IngestResult) -> None:
        for seq, kept, other in res.conflicts:
            if self._throttle((res.store, "conflict")):
                log.warning("%s: seq %d of stream %s came with another event id %s; the events table keeps %s, "
                            "the other is kept in conflicts", res.store, seq, res.stream or "(legacy)", other, kept)
        for code, subject, detail in res.identity:
            if code != "stream_conflict" and self._throttle((res.store, code, subject)):
                log.warning("%s: %s", res.store, detail)
        for a, b in res.gaps_opened:
            log.debug("%s: seq %d..%d of stream %s missing; acknowledging up to %d", res.store, a, b,
                      res.stream or "(legacy)", res.contiguous)
        for a, b in res.gaps_closed:
            log.debug("%s: seq %d..%d of stream %s arrived; acknowledged up to %d", res.store, a, b,
                      res.stream or "(legacy)", res.contiguous)

    def _report_gaps(self) -> None:
        now = datetime.now(timezone.utc)
        before = (now - timedelta(seconds=self.gap_grace)).isoformat(timespec="milliseconds")
        quiet = (now - timedelta(seconds=self.duplicate_clear_s)).isoformat(timespec="milliseconds")
        try:
            with self.db.transaction() as tx:  # type: ignore[union-attr]
                gaps = tx.report_gaps(before)
                cleared = tx.clear_duplicates(quiet)
        except HubDBError:
            return  # _process logs the database being down
        for g in gaps:
            log.warning("%s: events %d..%d still missing after %.0f s%s; acknowledgements stop below %d until "
                        "the store sends them again", g.store, g.first, g.last, self.gap_grace,
                        f" (stream {g.stream})" if g.stream else "", g.first)
        client = self._client
        for store in cleared:
            log.info("%s: no second agent seen for %.0f s; the duplicate store alert clears", store,
                     self.duplicate_clear_s)
            if client is not None:
                self._notice(client, store, Notice(code="duplicate_store", state="cleared", time=now))

    def _rollouts(self) -> None:
        """One look of the rollout engine, then the update messages it asked for, to the broker."""
        try:
            for line in rollout_engine.tick(self.db):  # type: ignore[arg-type]
                log.log(logging.WARNING if " halted" in line else logging.INFO, "%s", line)
            rollout_engine.send_pending(self.db, self._publish_retained)  # type: ignore[arg-type]
        except HubDBError as err:
            if self._throttle(("rollouts",)):
                log.warning("rollouts not looked at: %s; trying again", err)
        except Exception:
            # A bug, not the database: the worker must go on storing events; the next look tries again.
            if self._throttle(("rollouts-bug",)):
                log.exception("the rollout engine failed; trying again in %.0f s", self.rollout_every)

    def _publish_retained(self, topic: str, payload: bytes) -> bool:
        """QoS 1, retained; True once paho took it on a live connection (it delivers it from there)."""
        client = self._client
        if client is None or not self.connected:
            return False
        return client.publish(topic, payload, qos=1, retain=True).rc == mqtt.MQTT_ERR_SUCCESS

    # Parsing: each message becomes an operation on the transaction -------------------

    def _plan(self, msg: _Incoming, plan: _Plan) -> None:
        store = store_of(msg.topic)
        if store is None:
            self._refuse(plan, None, msg, BatchRejected("topic", f"topic {msg.topic!r} names no valid store"))
            return
        topics = store_topics(store)
        try:
            if msg.topic == topics.events:
                rows = parse_batch(store, msg.payload, max_bytes=self.max_batch_bytes)
                plan.ops.append((store, len(plan.ops), _Events(store, rows)))
                if (alerts := self.observer.events(store, rows)) is not None:
                    plan.ops.append((store, len(plan.ops), alerts))
            elif msg.topic == topics.status:
                self._plan_status(store, msg.payload, plan)
            elif msg.topic == topics.health:
                self._plan_health(store, msg.payload, plan)
            elif msg.topic == topics.cmd_res:
                self._plan_cmd_res(store, msg.payload, plan)
            elif msg.topic == topics.config_res:
                res = validate(ConfigResult, self._small(msg.payload))
                plan.ops.append((store, len(plan.ops), lambda tx: desired.record_result(tx, store, res)))
            elif msg.topic == topics.update_res:
                upd = validate(UpdateResult, self._small(msg.payload))
                plan.ops.append((store, len(plan.ops), lambda tx: rollout_engine.record_result(tx, store, upd)))
            else:
                raise BatchRejected("topic", f"unexpected topic {msg.topic}")
        except BatchRejected as err:
            self._refuse(plan, store, msg, err)
        except (PayloadError, ValueError) as err:
            self._refuse(plan, store, msg, BatchRejected("payload", f"{msg.topic}: {str(err)[:300]}"))

    def _small(self, payload: bytes) -> Any:
        if len(payload) > _MAX_SMALL_PAYLOAD:
            raise BatchRejected("size", f"payload of {len(payload)} bytes is over the {_MAX_SMALL_PAYLOAD} byte limit")
        return decode_json(payload)

    def _plan_status(self, store: str, payload: bytes, plan: _Plan) -> None:
        if not payload:
            return  # a cleared retained status: nothing to record
        st = validate(Status, self._small(payload))
        since = (st.since.isoformat() if st.since else None) or datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        plan.ops.append((store, len(plan.ops), lambda tx: tx.set_status(store, st.state, st.version, since)))
        if st.state == "online" and st.stream is not None:
            other = self._turns.announce(store, st.stream)

            def announce(tx: Tx, stream: str = st.stream) -> _Duplicate | None:
                tx.announce(store, stream)
                if other is None:
                    return None
                tx.duplicate(store, (other, stream))
                return _Duplicate(store, (other, stream))
            plan.ops.append((store, len(plan.ops), announce))
        self.observer.status(store, st.state, st.version, since)

    def _plan_health(self, store: str, payload: bytes, plan: _Plan) -> None:
        if not payload:
            return
        snap = self._small(payload)
        if not isinstance(snap, dict):
            raise BatchRejected("payload", "health snapshot is not a JSON object")
        if snap.get("config") is not None:
            try:
                validate(ConfigHealth, snap["config"])
            except PayloadError as err:
                # The devices' states still count: only the unreadable config part is left out.
                if self._throttle((store, "health-config")):
                    log.warning("%s: health snapshot's config left out: %s", store, err)
                snap["config"] = None
        text = json.dumps(snap, separators=(",", ":"), ensure_ascii=False)
        plan.ops.append((store, len(plan.ops), lambda tx: tx.set_health(store, text)))
        if (states := self.observer.health(store, snap)) is not None:
            plan.ops.append((store, len(plan.ops), states))

    def _plan_cmd_res(self, store: str, payload: bytes, plan: _Plan) -> None:
        res = validate(CommandResult, self._small(payload))
        result = None if res.result is None else json.dumps(res.result, ensure_ascii=False)
        plan.ops.append((store, len(plan.ops), lambda tx: tx.command_result(res.id, store, res.ok, result, res.error)))
        self.observer.command(res.id, store, res.ok, res.result, res.error)

    def _refuse(self, plan: _Plan, store: str | None, msg: _Incoming, err: BatchRejected) -> None:
        self.stats.rejected += 1
        key = (store or msg.topic, err.reason)
        first = self._throttle(key)
        if first:
            more = self._throttle.suppressed.pop(key, 0)
            log.warning("%s: refused a message on %s (%d bytes): %s%s", store or "?", msg.topic, len(msg.payload),
                        err, f" ({more} more like it since the last warning)" if more else "")
        name = store or msg.topic[:200]

        def op(tx: Tx) -> None:
            if store is not None:
                tx.count_rejected(store)
            if first:  # quarantine as often as we log: a flood cannot fill the disk
                tx.quarantine(name, err.reason, str(err), msg.payload)
        plan.ops.append((name, len(plan.ops), op))
