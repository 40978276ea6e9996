"""The hub's CPU per event against a bare paho subscriber's, draining the same backlog.

Both subscribe first with persistent MQTT 5 sessions and the same Receive
Maximum on a shared subscription of ``edge/+/events`` (each its own group,
so each gets every message), then are away while ``stores`` stores publish
their backlog at QoS 1. Then, one after the other:

- the bare subscriber (a child process, paho's loop on its main thread)
  reconnects and does ``json.loads`` of each payload, nothing else; its
  process CPU is the baseline;
- the hub (``edge-hub run``, a real process, frozen with SIGSTOP meanwhile)
  is thawed and drains the same messages: validate, store, commit, ack.
  Its process CPU is measured from SIGCONT until every store has the ack of
  its last seq; Mosquitto's CPU and the database server's (PostgreSQL) are
  measured over the same span and reported beside it, not in it.

Zero loss: afterwards every store holds seq 1..N in the hub's database, no
gap open, every store acknowledged up to N.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from common import REPO, HubProcess, cpu_seconds, sale_data
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.store.db import uuid7
from edge_agent.store.outbox import OutboxEvent
from edge_core.bus import utcnow
from sync.hub.db import open_db
from sync.link import LinkSettings
from sync.localbroker import LocalMosquitto
from sync.topics import encode_event, hub_events_subscription, join_batch

EVENT_TYPE = "retail.sale.completed"
RECEIVE_MAXIMUM = 1000   # what the hub asks for (service.py: 2 × max_group)
DRAIN_TIMEOUT_S = 300


@dataclass(frozen=True)
class CostCase:
    """One backlog: ``stores`` × ``per_store`` events, ``per_message`` events per message at most."""

    db: str              # "sqlite" or "postgresql"
    stores: int
    per_store: int
    per_message: int     # 1, or the agent's batch limit (LinkSettings.batch_max_events)

    @property
    def events(self) -> int:
        return self.stores * self.per_store


@dataclass
class Cost:
    """One round: CPU seconds of each process over its drain, and what the database holds after."""

    case: CostCase
    messages: int
    bare_cpu: float
    bare_s: float
    bare_broker_cpu: float
    hub_cpu: float
    hub_s: float
    hub_broker_cpu: float
    db_server_cpu: float | None
    acked_stores: int
    held_ok_stores: int
    rows: int
    open_gaps: int
    error: str | None = None

    def us(self, cpu: float) -> float:
        """Microseconds of CPU per event."""
        return cpu / self.case.events * 1e6


def store_id(i: int) -> str:
    return f"store-{i:04d}"


def backlog(case: CostCase, seed: int = 0) -> list[tuple[str, bytes]]:
    """(topic, payload) in publish order: seq by seq across the stores, as live stores interleave;
    batches as the agent's link cuts them (at most ``per_message`` events and batch_max_bytes)."""
    limit_bytes = LinkSettings().batch_max_bytes
    per_store: list[list[bytes]] = []
    for i in range(case.stores):
        sid = store_id(i)
        rng = random.Random(f"{seed}-{sid}")
        events = [encode_event(f"edge/{sid}", OutboxEvent(seq, str(uuid7()), EVENT_TYPE, utcnow().isoformat(),
                                                          sale_data(rng, sid, seq)))
                  for seq in range(1, case.per_store + 1)]
        batches, cur, size = [], [], 2
        for e in events:
            if cur and (len(cur) >= case.per_message or size + len(e) + 1 > limit_bytes):
                batches.append(join_batch(cur))
                cur, size = [], 2
            cur.append(e)
            size += len(e) + 1
        batches.append(join_batch(cur))
        per_store.append(batches)
    out = []
    for k in range(max(len(b) for b in per_store)):
        for i, batches in enumerate(per_store):
            if k < len(batches):
                out.append((f"edge/{store_id(i)}/events", batches[k]))
    return out


def publish_all(port: int, messages: list[tuple[str, bytes]], timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Publish at QoS 1 and return once the broker acknowledged every message."""
    done = threading.Event()
    left = [len(messages)]
    lock = threading.Lock()

    def on_publish(*_: Any) -> None:
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-cost-stores", protocol=mqtt.MQTTv5)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for topic, payload in messages:
            c.publish(topic, payload, qos=1)
        if not done.wait(timeout):
            raise RuntimeError(f"{left[0]} of {len(messages)} publishes not acknowledged by the broker")
    finally:
        c.disconnect()
        c.loop_stop()


# The bare subscriber (a child process) ---------------------------------------------------

def _bare_client(group: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{group}", protocol=mqtt.MQTTv5)


def _connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def bare_subscriber(port: int, group: str, events: int, pipe: Connection) -> None:
    """Subscribe and leave (the session keeps the subscription); on "go", drain and report CPU."""
    try:
        c = _bare_client(group)
        subscribed = threading.Event()
        c.on_subscribe = lambda *_: subscribed.set()
        c.connect("127.0.0.1", port, clean_start=True, properties=_connect_props())
        c.subscribe(hub_events_subscription(group), qos=1)
        while not subscribed.is_set():
            c.loop(0.1)
        c.disconnect()
        pipe.send("subscribed")
        pipe.recv()
        seen = [0, 0]  # messages, events
        c = _bare_client(group)

        def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            batch = json.loads(msg.payload)
            seen[0] += 1
            seen[1] += len(batch) if isinstance(batch, list) else 1
            if seen[1] >= events:
                client.disconnect()

        c.on_message = on_message
        cpu0, t0 = time.process_time(), time.perf_counter()
        c.connect("127.0.0.1", port, clean_start=False, properties=_connect_props())
        c.loop_forever()
        pipe.send((time.process_time() - cpu0, time.perf_counter() - t0, seen[0], seen[1]))
    except Exception as err:  # noqa: BLE001 - reported to the parent
        pipe.send(f"{type(err).__name__}: {err}")


# The database server's CPU -------------------------------------------------------------------

def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its live children (a PostgreSQL postmaster and its backends)."""
    total = cpu_seconds(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == root:
            total += cpu_seconds(int(entry))
    return total


class Postgres:
    """A throwaway PostgreSQL server for the run, the way the tests start one (tests/support/postgres.py)."""

    def __init__(self, workdir: Path):
        sys.path.insert(0, str(REPO / "tests"))
        from support.postgres import Postgres as Server

        self.server = Server(workdir)

    def start(self) -> "Postgres":
        self.server.start()
        return self

    def database(self) -> str:
        return self.server.database()

    def pid(self) -> int:
        """The postmaster's PID (under root it runs as postgres, below runuser)."""
        return int((self.server.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        self.server.stop()


# One round -----------------------------------------------------------------------------------------

class _Acks:
    """Subscribed to ``hub/+/ack``: the highest seq each store was acknowledged."""

    def __init__(self, port: int, stores: int, per_store: int):
        self.acked: dict[str, int] = {}
        self.complete = threading.Event()
        self.stores, self.per_store = stores, per_store
        self._done = 0
        subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-cost-acks", protocol=mqtt.MQTTv5)
        c.on_subscribe = lambda *_: subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.subscribe("hub/+/ack", qos=0)  # every store's ack (topics.py has no filter for it)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK for hub/+/ack")
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        sid = msg.topic.split("/")[1]
        seq = json.loads(msg.payload)["seq"]
        if seq > self.acked.get(sid, 0):
            if seq >= self.per_store > self.acked.get(sid, 0):
                self._done += 1
                if self._done == self.stores:
                    self.complete.set()
            self.acked[sid] = seq

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cost_round(workdir: Path, case: CostCase, pg: Postgres | None, seed: int = 0) -> Cost:
    """Publish the case's backlog once, drain it with the bare subscriber, then with the hub."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = pg.database() if case.db == "postgresql" else f"sqlite:///{workdir / 'hub.db'}"
    messages = backlog(case, seed)
    broker = LocalMosquitto(workdir / "mosquitto").start()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    bare = ctx.Process(target=bare_subscriber, args=(broker.port, "bare", case.events, child), daemon=True)
    hub: HubProcess | None = None
    acks: _Acks | None = None
    try:
        hub = HubProcess(broker.url, db_url, workdir / "hub.log", client_id="bench-cost-hub").start()
        hub.pause()
        bare.start()
        said = parent.recv() if parent.poll(30) else "no answer"
        if said != "subscribed":
            raise RuntimeError(f"bare subscriber: {said}")
        acks = _Acks(broker.port, case.stores, case.per_store)
        publish_all(broker.port, messages)

        m0 = cpu_seconds(broker.proc.pid)
        parent.send("go")
        got = parent.recv() if parent.poll(DRAIN_TIMEOUT_S) else "did not finish"
        if isinstance(got, str):
            raise RuntimeError(f"bare subscriber: {got}")
        bare_cpu, bare_s, _, bare_events = got
        bare_broker = cpu_seconds(broker.proc.pid) - m0

        pg_pid = pg.pid() if pg is not None and case.db == "postgresql" else None
        h0, m0 = cpu_seconds(hub.pid), cpu_seconds(broker.proc.pid)
        p0 = tree_cpu(pg_pid) if pg_pid else 0.0
        t0 = time.perf_counter()
        hub.resume()
        finished = acks.complete.wait(DRAIN_TIMEOUT_S)
        hub_s = time.perf_counter() - t0
        hub_cpu, hub_broker = cpu_seconds(hub.pid) - h0, cpu_seconds(broker.proc.pid) - m0
        server = tree_cpu(pg_pid) - p0 if pg_pid else None
        hub.stop()
        hub = None
        acked = sum(1 for s in acks.acked.values() if s >= case.per_store)
        error = None if finished else f"only {acked} of {case.stores} stores acknowledged within {DRAIN_TIMEOUT_S} s"
        if bare_events != case.events:
            error = f"the bare subscriber got {bare_events} of {case.events} events"
    finally:
        if acks is not None:
            acks.close()
        if hub is not None:
            hub.kill()
        if bare.is_alive():
            bare.terminate()
        bare.join(10)
        broker.stop()
    held_ok, rows, gaps = check_db(db_url, case.per_store)
    return Cost(case, len(messages), bare_cpu, bare_s, bare_broker, hub_cpu, hub_s, hub_broker, server, acked,
                held_ok, rows, gaps, error)


def check_db(url: str, per_store: int) -> tuple[int, int, int]:
    """Stores holding exactly seq 1..per_store (contiguous and counted), event rows, open gaps."""
    db = open_db(url)
    try:
        stores = db.query("SELECT contiguous, events FROM stores")
        rows = db.query("SELECT count(*) FROM events")[0][0]
        gaps = db.query("SELECT count(*) FROM gaps WHERE closed_at IS NULL")[0][0]
    finally:
        db.close()
    return sum(1 for c, e in stores if c == per_store and e == per_store), int(rows), int(gaps)
