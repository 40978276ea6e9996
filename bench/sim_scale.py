"""The hub past one worker, in simulation: many workers, many stores, and the faults a chain meets.

docs/scale.md plans the hub for 1,000 to 50,000 stores from per-event
costs. This checks, on one machine, the assumptions of that plan that one
machine can check, and measures the costs it needs:

- **Order and exactly once through a shared subscription.** Real
  ``edge-hub run`` workers (``--workers``, 6; ``--quick`` 3) share
  ``$share/hub/edge/+/events`` on a real Mosquitto. Mosquitto hands the
  group's messages out in turn, not by store, so two consecutive batches of
  one store go to two workers and may be committed in either order. What
  keeps a store's history in order is the database (db.py: the store's row
  lock, the key ``(store, stream, seq)``, the contiguous walk) and the
  cumulative ack, not the broker. Checked: every store holds seq 1..N of its
  stream, gapless, each seq with the event id the store gave it, no event id
  twice; and counted: how often a later batch of a store was stored before
  an earlier one (the gaps the hub opened and closed).
- **Stores that behave like agents** (sync/link.py): a few load-generator
  processes, each ONE paho client publishing for its share of the stores
  (as bench_hub_scale.py does); each store numbers its events 1..N in one
  stream, sends them in order in batches (at most 500 events or 256 KiB)
  within a window of unacknowledged events, takes the hub's cumulative acks,
  and sends everything unacknowledged again from its last ack after a
  reconnect or when acks stall for ``resend_after_s``.
- **Faults**, at fixed points of the run: a worker killed with SIGKILL while
  it stores (committed batches not yet confirmed to the broker come again:
  the duplicates it counts) and restarted with its client id; one load
  generator's stores cut off and back (a regional outage: they resend from
  their last ack); every worker stopped with SIGSTOP (the hub down, the
  broker up: the stores' batches queue in the broker, and past
  ``resend_after_s`` the stores send their unacknowledged events again)
  then let go.
- **Bounded memory under backlog.** Each worker's RSS is sampled all along;
  its peak while the backlog drains is set against a bound derived from
  MQTT 5 Receive Maximum (a worker has at most ``RECEIVE_MAXIMUM`` messages
  in its process) times the largest message, plus the RSS it had before.
- **What the model needs**: events/s per worker while the backlog drains
  (every worker busy), CPU per event of the workers, the broker and, on
  PostgreSQL, the server backends, WAL bytes and table bytes per event.

Run on SQLite and on PostgreSQL (``--pg URL``: a server where the run may
create and drop a database of its own; default the local one on 5432).
Exit 1 if a check failed. Not part of ``make bench`` (it runs for minutes);
tests/hub/test_scale_sim.py runs a small configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from common import (
    HubProcess,
    LoadGenerators,
    Row,
    arguments,
    check_row,
    cpu_count,
    cpu_seconds,
    durable_tmpdir,
    failure_row,
    is_check,
    machine,
    report,
    row,
    sale_data,
)
from paho.mqtt.enums import CallbackAPIVersion

from sync.events import OutboxEvent
from sync.localbroker import LocalMosquitto
from sync.topics import encode_event, hub_topic, join_batch

BENCH = "sim_scale"
EVENT_TYPE = "retail.sale.completed"
NAMESPACE = uuid.UUID("5d0f3f8e-8f53-4c3c-9d1e-2a7c51d0a6b1")  # event and stream ids of the simulated stores
POOL = 4                  # distinct sale payloads per store, cycled
PUBLISH_WINDOW = 10_000   # unconfirmed publishes per load generator at most (paho's packet ids are 16-bit)
RECEIVE_MAXIMUM = 1000    # what a worker asks of the broker: service.py, 2 * max_group
SAMPLE_S = 0.1            # how often RSS, CPU and the events held are sampled
SLACK_MB = 24.0           # allocator and interpreter slack on top of the derived memory bound


@dataclass(frozen=True)
class Plan:
    """One configuration of the simulation."""

    stores: int
    workers: int
    rate: float               # events per second per store while producing (SQLite)
    pg_rate: float            # the same on PostgreSQL, where a worker costs more per event
    seconds: float            # how long the stores produce events
    kill_down_s: float        # how long the killed worker stays down
    drop_s: float             # how long one generator's stores are cut off
    outage_s: float           # how long every worker is stopped
    resend_after_s: float     # a store resends from its last ack after this long without ack progress
    generators: int = 2
    tick_s: float = 0.2       # how often a store looks at what it has to send (the agent wakes per event)
    batch_max_events: int = 500
    batch_max_bytes: int = 256 * 1024
    window_events: int = 20_000
    finish_s: float = 240.0   # after production, how long stores wait for the ack of their last seq


# 2,000 stores, 6 workers: about 4 minutes per database on 2 cores. The rates leave the 2 cores room to
# catch up after the outage; resend_after_s is the agent's (sync/link.py), --resend-after shortens it.
DEFAULT = Plan(stores=2000, workers=6, rate=0.5, pg_rate=0.2, seconds=60, kill_down_s=3, drop_s=10, outage_s=20,
               resend_after_s=30)
QUICK = Plan(stores=300, workers=3, rate=2.0, pg_rate=1.0, seconds=16, kill_down_s=2, drop_s=3, outage_s=5,
             resend_after_s=3, generators=1, finish_s=120)


def store_id(i: int) -> str:
    """``sim-00000`` ..."""
    return f"sim-{i:05d}"


def stream_of(store: str) -> str:
    """The one stream each simulated store numbers its events in."""
    return str(uuid.uuid5(NAMESPACE, f"{store}/stream"))


def event_id(store: str, seq: int) -> str:
    """The id a store gives its event ``seq``: the checker knows which event belongs at each position."""
    return str(uuid.uuid5(NAMESPACE, f"{store}/{seq}"))


def produced(rate: float, start: float, phase: float, seconds: float, now: float) -> int:
    """Events a store has made by ``now``: one every ``1/rate`` s from ``start + phase``
    (``phase`` < ``1/rate``), ``rate × seconds`` in all."""
    t = now - start - phase
    return 0 if t < 0 else min(int(t * rate) + 1, int(rate * seconds))


# The stores (load-generator processes) ----------------------------------------------------

@dataclass(frozen=True)
class Job:
    """What one load-generator process simulates."""

    index: int
    port: int
    stores: tuple[int, ...]
    total_stores: int
    rate: float
    plan: Plan


@dataclass
class StoresResult:
    """What one load generator saw."""

    acked: dict[str, int] = field(default_factory=dict)   # store -> last seq acknowledged
    events: int = 0                 # events each store made, per store
    batches: int = 0                # batches published, resends included
    published: int = 0              # events published, resends included
    resends: int = 0                # times a store went back to its last ack
    bad_acks: int = 0               # acks beyond what the store had sent
    largest_batch: int = 0          # bytes
    reconnects: int = 0
    error: str | None = None


class _Store:
    """One simulated store: its stream, its encoded events, what it sent and what the hub acknowledged."""

    __slots__ = ("sid", "topic", "stream", "phase", "events", "sent", "acked", "published_max", "progress_at")

    def __init__(self, sid: str, phase: float, events: list[bytes]):
        self.sid, self.phase, self.events = sid, phase, events
        self.topic = f"edge/{sid}/events"
        self.stream = stream_of(sid)
        self.sent = self.acked = self.published_max = 0
        self.progress_at = 0.0


class Stores:
    """One MQTT client sending for many stores; the main loop sends, paho's thread takes acks."""

    def __init__(self, job: Job):
        self.job, self.plan = job, job.plan
        self.events = int(job.rate * self.plan.seconds)
        self.stores = [self._store(i) for i in job.stores]
        self.by_id = {s.sid: s for s in self.stores}
        self.result = StoresResult(events=self.events)
        self.unconfirmed = 0
        self.connected = threading.Event()
        self.generation = 0
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-stores-{job.index}", protocol=mqtt.MQTTv5)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *_: self.connected.clear()
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    def _store(self, i: int) -> _Store:
        sid = store_id(i)
        rng = random.Random(f"{sid}")
        data = [sale_data(rng, sid, k) for k in range(POOL)]
        source, stream = f"edge/{sid}", stream_of(sid)
        when = "2026-01-01T00:00:00+00:00"
        events = [encode_event(source, OutboxEvent(seq, event_id(sid, seq), EVENT_TYPE, when, data[seq % POOL]),
                               stream=stream, seq=seq)
                  for seq in range(1, int(self.job.rate * self.plan.seconds) + 1)]
        # Spread evenly over one event interval, so the stores do not all send at once.
        return _Store(sid, (i / self.job.total_stores) / self.job.rate, events)

    # paho's thread ------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe([(hub_topic(s.sid, "ack"), 0) for s in self.stores])
        with self._lock:
            self.generation += 1
            # Like the agent: after a reconnect, everything unacknowledged goes again from the last ack.
            for s in self.stores:
                if s.sent > s.acked:
                    self.result.resends += 1
                s.sent = s.acked
                s.progress_at = time.monotonic()
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
        with self._lock:
            self.unconfirmed -= 1

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        s = self.by_id.get(msg.topic.split("/")[1])
        if s is None:
            return
        ack = json.loads(msg.payload)
        if ack.get("stream") != s.stream:
            return
        seq = int(ack["seq"])
        with self._lock:
            if seq > s.published_max:
                self.result.bad_acks += 1  # the hub claims events this store never sent
                return
            if seq > s.acked:
                s.acked = seq
                s.sent = max(s.sent, seq)
                s.progress_at = time.monotonic()

    # The main loop --------------------------------------------------------------------

    def connect(self) -> None:
        self.client.connect("127.0.0.1", self.job.port, keepalive=60)
        self.client.loop_start()
        if not self.connected.wait(20):
            raise RuntimeError("could not connect to the broker")

    def send_due(self, start: float, now_wall: float) -> None:
        """Every store sends what it made and has not sent, in order, within its window."""
        p = self.plan
        now = time.monotonic()
        for s in self.stores:
            if not self.connected.is_set() or self.unconfirmed >= PUBLISH_WINDOW:
                return
            made = produced(self.job.rate, start, s.phase, p.seconds, now_wall)
            with self._lock:
                if s.sent > s.acked and now - s.progress_at > p.resend_after_s:
                    s.sent = s.acked  # acks stalled: everything unacknowledged again (sync/link.py)
                    s.progress_at = now
                    self.result.resends += 1
                generation = self.generation
            while s.sent < made and s.sent - s.acked < p.window_events and self.unconfirmed < PUBLISH_WINDOW:
                first = s.sent + 1
                last, size = first, len(s.events[first - 1])
                while (last < made and last - first + 1 < p.batch_max_events
                       and size + len(s.events[last]) + 1 <= p.batch_max_bytes):
                    size += len(s.events[last]) + 1
                    last += 1
                with self._lock:
                    if generation != self.generation:
                        break  # reconnected meanwhile: the next pass starts from the last ack
                    self.unconfirmed += 1
                payload = join_batch(s.events[first - 1:last])
                self.result.largest_batch = max(self.result.largest_batch, len(payload))
                info = self.client.publish(s.topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    with self._lock:
                        self.unconfirmed -= 1
                    return
                s.sent = last
                s.published_max = max(s.published_max, last)
                self.result.batches += 1
                self.result.published += last - first + 1

    def cut_off(self, seconds: float) -> None:
        """The stores lose the broker for ``seconds`` (a regional outage), then connect again."""
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        time.sleep(seconds)
        self.client.reconnect()
        self.client.loop_start()
        self.result.reconnects += 1
        if not self.connected.wait(20):
            raise RuntimeError("could not reconnect to the broker")

    def all_acked(self) -> bool:
        return all(s.acked >= self.events for s in self.stores)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_stores(job: Job, pipe: Connection) -> None:
    """A load-generator process: build the stores' events, connect, say ready, run until every
    store's last seq is acknowledged (or time is up), report."""
    stores: Stores | None = None
    result = StoresResult()
    try:
        stores = Stores(job)
        result = stores.result
        stores.connect()
        pipe.send("ready")
        start = pipe.recv()
        deadline = start + job.plan.seconds + job.plan.finish_s
        while time.time() < deadline:
            if pipe.poll():
                command, arg = pipe.recv()
                if command == "cut":
                    stores.cut_off(arg)
            stores.send_due(start, time.time())
            if time.time() > start + job.plan.seconds and stores.all_acked():
                break
            time.sleep(job.plan.tick_s)
        result.acked = {s.sid: s.acked for s in stores.stores}
    except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the run
        result.error = f"{type(err).__name__}: {err}"
    finally:
        if stores is not None:
            stores.close()
    pipe.send(result)


def generators(port: int, plan: Plan, rate: float) -> LoadGenerators:
    """The load-generator processes, sharing the stores."""
    return LoadGenerators(run_stores, [Job(i, port, tuple(range(i, plan.stores, plan.generators)), plan.stores, rate,
                                           plan) for i in range(plan.generators)])


# The hub's database, as the checker reads it ---------------------------------------------

class Database:
    """The hub's database for one run: SQLite file or a PostgreSQL database of the run's own."""

    def __init__(self, kind: str, workdir: Path, pg_server: str):
        self.kind = kind
        self._pg_server = pg_server
        self._name = f"sim_scale_{uuid.uuid4().hex[:10]}"
        self.path = workdir / "hub.db"
        self.url = f"sqlite:///{self.path}" if kind == "sqlite" else pg_server.rsplit("/", 1)[0] + "/" + self._name

    def create(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self._pg_server, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self._name}"')

    def drop(self) -> None:
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self._pg_server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')

    def connect(self) -> Any:
        if self.kind == "sqlite":
            return sqlite3.connect(self.path, timeout=30)
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def query(self, conn: Any, sql: str, params: tuple = ()) -> list[tuple]:
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        return conn.execute(sql, params).fetchall()


def held(db: Database, conn: Any) -> int:
    """Events the hub holds, all stores (its counters, cheaper than counting rows)."""
    try:
        return int(db.query(conn, "SELECT coalesce(sum(events), 0) FROM stores")[0][0])
    except Exception:  # noqa: BLE001 - the hub has not made its tables yet
        return 0


@dataclass
class StoredCheck:
    """What the hub's database holds after the run, store by store."""

    stores: int = 0
    rows: int = 0
    wrong_position: int = 0        # events whose id is not the one the store gave that seq
    short: list[str] = field(default_factory=list)  # stores without exactly seq 1..N
    repeated_ids: int = 0          # an event id at two positions
    open_gaps: int = 0
    gaps_closed: int = 0           # a later batch stored before an earlier one, and the hole filled after
    gaps_by_phase: dict[str, int] = field(default_factory=dict)   # holes opened, by what was going on
    stored_before_predecessor: int = 0   # seq s+1 committed before seq s


def check_stored(db: Database, stores: int, per_store: int, phases: dict[str, tuple[str, str]]) -> StoredCheck:
    """Every store holds seq 1..N of its stream, each with the id the store gave it; nothing twice."""
    out = StoredCheck()
    conn = db.connect()
    try:
        want = {store_id(i) for i in range(stores)}
        seen: dict[str, int] = {}
        for store, stream, seq, eid in db.query(conn, "SELECT store, stream, seq, id FROM events ORDER BY store, seq"):
            out.rows += 1
            if stream != stream_of(store) or eid != event_id(store, seq):
                out.wrong_position += 1
            if seq == seen.get(store, 0) + 1:
                seen[store] = seq
            else:
                seen[store] = -10**9  # a hole or a repeat: this store is short
        out.stores = len(seen)
        out.short = sorted(s for s in want if seen.get(s) != per_store)
        out.repeated_ids = int(db.query(conn, "SELECT count(*) - count(DISTINCT id) FROM events")[0][0])
        out.open_gaps = int(db.query(conn, "SELECT count(*) FROM gaps WHERE closed_at IS NULL")[0][0])
        out.gaps_closed = int(db.query(conn, "SELECT count(*) FROM gaps WHERE closed_at IS NOT NULL")[0][0])
        for name, (a, b) in phases.items():
            out.gaps_by_phase[name] = int(db.query(
                conn, "SELECT count(*) FROM gaps WHERE opened_at >= ? AND opened_at < ?", (a, b))[0][0])
        out.stored_before_predecessor = int(db.query(conn, (
            "SELECT count(*) FROM (SELECT received_at, lag(received_at) OVER (PARTITION BY store, stream ORDER BY seq) "
            "AS before FROM events) t WHERE received_at < before"))[0][0])
    finally:
        conn.close()
    return out


# The hub side: workers, sampling, faults ---------------------------------------------------

def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0.0 if it is gone), from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Worker:
    """One ``edge-hub run`` slot: its process (restarted after a kill with the same client id),
    the CPU of the processes it had before, and its RSS over time."""

    def __init__(self, broker: LocalMosquitto, db_url: str, workdir: Path, index: int):
        self._args = (broker.url, db_url, workdir / f"hub-{index}.log")
        self.client_id = f"sim-hub-{index}"
        self.hub = HubProcess(*self._args, client_id=self.client_id)
        self.dead_cpu = 0.0
        self.rss: list[tuple[float, float]] = []   # (seconds since start, MB)
        self.stats: dict[str, int] = {}
        self.failed_starts: list[str] = []  # why a restart did not come up

    def cpu(self) -> float:
        return self.dead_cpu + cpu_seconds(self.hub.pid)

    def kill(self) -> None:
        """SIGKILL, by its PID."""
        self.dead_cpu += cpu_seconds(self.hub.pid)
        self.hub.kill()

    def restart(self, attempts: int = 5) -> None:
        """A new process with the same client id: the broker resumes its session. A start that
        fails is noted and tried again, as systemd's ``Restart=on-failure`` would."""
        for attempt in range(attempts):
            try:
                self.hub = HubProcess(*self._args, client_id=self.client_id).start()
                return
            except RuntimeError as err:
                said = [ln for ln in str(err).splitlines() if ln.startswith(("edge-hub:", "DETAIL:"))]
                self.failed_starts.append(" ".join(said)[:400] or str(err)[:400])
                if attempt == attempts - 1:
                    raise


@dataclass
class Sample:
    """One look at the hub: when, events held, CPU so far (hub, broker, database server)."""

    t: float
    held: int
    hub_cpu: float
    broker_cpu: float
    db_cpu: float


class Sampler:
    """A thread that samples RSS of every worker, the events held and the CPU used."""

    def __init__(self, db: Database, workers: list[Worker], broker: LocalMosquitto, start: float):
        self.db, self.workers, self.broker, self.start = db, workers, broker, start
        self.samples: list[Sample] = []
        self._db_cpu: dict[int, float] = {}   # PostgreSQL backend pid -> CPU seen last
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _db_backends(self, conn: Any) -> float:
        if self.db.kind != "postgresql":
            return 0.0
        pids = [p for (p,) in self.db.query(conn, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                                  "AND pid <> pg_backend_pid()")]
        for pid in pids:
            cpu = cpu_seconds(pid)
            if cpu:
                self._db_cpu[pid] = cpu
        return sum(self._db_cpu.values())

    def _run(self) -> None:
        conn = self.db.connect()
        try:
            while not self._stop.wait(SAMPLE_S):
                t = time.time() - self.start
                for w in self.workers:
                    if w.hub.proc is not None and w.hub.proc.poll() is None:
                        w.rss.append((t, rss_mb(w.hub.pid)))
                self.samples.append(Sample(t, held(self.db, conn), sum(w.cpu() for w in self.workers),
                                           cpu_seconds(self.broker.proc.pid), self._db_backends(conn)))
        finally:
            conn.close()


@dataclass
class Timeline:
    """When each fault happened, in seconds since the stores started."""

    kill: float = 0.0
    restart: float = 0.0
    cut: float = 0.0
    stop: float = 0.0
    cont: float = 0.0
    caught_up: float = float("nan")


@dataclass
class Run:
    """Everything one simulation run found."""

    kind: str
    plan: Plan
    rate: float
    timeline: Timeline
    samples: list[Sample]
    workers: list[Worker]
    stores: list[StoresResult]
    stored: StoredCheck
    extra: dict[str, float]
    errors: list[str]

    def at(self, t: float) -> Sample:
        """The first sample at or after ``t`` seconds since the start (the last one if none)."""
        return next((s for s in self.samples if s.t >= t), self.samples[-1])


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _faults(plan: Plan, start: float, workers: list[Worker], gens: LoadGenerators, tl: Timeline) -> None:
    """The fault schedule: a worker killed, stores cut off, every worker stopped, at fixed points."""
    _sleep_until(start + 0.2 * plan.seconds)
    tl.kill = time.time() - start
    workers[0].kill()  # SIGKILL while the stores are sending: it is in the middle of a group
    _sleep_until(start + tl.kill + plan.kill_down_s)
    workers[0].restart()
    tl.restart = time.time() - start
    _sleep_until(start + 0.4 * plan.seconds)
    tl.cut = time.time() - start
    gens.send(0, ("cut", plan.drop_s))
    _sleep_until(start + 0.6 * plan.seconds)
    tl.stop = time.time() - start
    for w in workers:
        w.hub.pause()
    _sleep_until(start + tl.stop + plan.outage_s)
    for w in workers:
        w.hub.resume()
    tl.cont = time.time() - start


def simulate(plan: Plan, kind: str, pg_server: str, workdir: Path) -> Run:
    """One run on one database: start everything, run the faults, check what the hub stored."""
    rate = plan.rate if kind == "sqlite" else plan.pg_rate
    per_store = int(rate * plan.seconds)
    db = Database(kind, workdir, pg_server)
    db.create()
    broker = LocalMosquitto(workdir / "mosquitto").start()
    workers = [Worker(broker, db.url, workdir, i + 1) for i in range(plan.workers)]
    gens = generators(broker.port, plan, rate)
    extra: dict[str, float] = {}
    errors: list[str] = []
    tl = Timeline()
    sampler: Sampler | None = None
    try:
        for w in workers:
            w.hub.start()
        gens.start(120)
        pg0 = _pg_figures(db) if kind == "postgresql" else {}
        start = time.time() + 1.0
        sampler = Sampler(db, workers, broker, start)
        sampler.begin()
        for i in range(plan.generators):
            gens.send(i, start)  # the time every store starts producing
        _faults(plan, start, workers, gens, tl)
        stores = gens.results(plan.seconds + plan.finish_s + 60)
        generator_cpu = sum(cpu_seconds(p) for p in gens.pids())
        sampler.end()
        if kind == "postgresql":
            pg1 = _pg_figures(db)
            extra.update({k: pg1[k] - pg0.get(k, 0.0) for k in pg1})
        extra["generator_cpu"] = generator_cpu
        for w in workers:
            w.stats = w.hub.stop()
            if not w.stats:
                errors.append(f"worker {w.hub.log_path.name} did not stop cleanly:\n{w.hub.log()[-2000:]}")
        extra["db_bytes"] = _db_bytes(db)
        stored = check_stored(db, plan.stores, per_store, _phases(start, tl))
    finally:
        if sampler is not None:
            sampler.end()
        gens.close()
        for w in workers:
            w.hub.kill()
        broker.stop()
        db.drop()
    errors += [r.error for r in stores if r.error]
    run = Run(kind, plan, rate, tl, sampler.samples, workers, stores, stored, extra, errors)
    tl.caught_up = _caught_up(run)
    return run


def _phases(start: float, tl: Timeline) -> dict[str, tuple[str, str]]:
    """The stretches of the run, as the hub's ISO times, to tell apart what opened each hole."""
    def iso(t: float) -> str:
        return datetime.fromtimestamp(start + t, timezone.utc).isoformat(timespec="milliseconds")

    return {"steady": (iso(-60), iso(tl.kill)), "worker killed": (iso(tl.kill), iso(tl.restart + 2)),
            "stores cut off": (iso(tl.cut), iso(tl.stop)), "outage": (iso(tl.stop), iso(tl.cont)),
            "draining": (iso(tl.cont), iso(tl.cont + 3600))}


def _pg_figures(db: Database) -> dict[str, float]:
    """The server's WAL position in bytes (differences give WAL written)."""
    conn = db.connect()
    try:
        lsn = db.query(conn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0][0]
    finally:
        conn.close()
    return {"wal_bytes": float(lsn)}


def _db_bytes(db: Database) -> float:
    """Bytes the events take: the SQLite file (with its WAL), or the events table and its index."""
    if db.kind == "sqlite":
        return float(sum(p.stat().st_size for p in db.path.parent.glob(db.path.name + "*") if p.is_file()))
    conn = db.connect()
    try:
        # A partitioned table holds nothing itself: its partitions do.
        return float(db.query(conn, "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
                                    "FROM pg_partition_tree('events')")[0][0])
    finally:
        conn.close()


def _caught_up(run: Run) -> float:
    """Seconds from SIGCONT until the hub holds all but one second of what the stores made by then."""
    p = run.plan
    for s in run.samples:
        if s.t < run.timeline.cont:
            continue
        made = p.stores * run.rate * min(s.t, p.seconds)
        if s.held >= made - p.stores * run.rate * 1.0:
            return s.t - run.timeline.cont
    return float("nan")


# Figures and checks -----------------------------------------------------------------------

def _window(run: Run, a: float, b: float) -> tuple[float, float, float, float, float]:
    """(seconds, events stored, hub CPU, broker CPU, database server CPU) between two times."""
    s0, s1 = run.at(a), run.at(b)
    return s1.t - s0.t, s1.held - s0.held, s1.hub_cpu - s0.hub_cpu, s1.broker_cpu - s0.broker_cpu, s1.db_cpu - s0.db_cpu


def memory_bound_mb(baseline: float, max_message: int) -> float:
    """The most a worker may hold while a backlog drains: what it had before, plus Receive Maximum
    messages of the largest size three times over (the payload, its parsed rows, the JSON each row
    keeps), plus slack for the allocator."""
    return baseline + 3 * RECEIVE_MAXIMUM * max_message / 2**20 + SLACK_MB


def rows_for(run: Run) -> list[Row]:
    """The figures and checks of one run."""
    p, tl, db = run.plan, run.timeline, run.kind
    label = f"{db}, {p.stores:,} stores, {p.workers} workers"
    per_store = int(run.rate * p.seconds)
    total = p.stores * per_store
    out: list[Row] = []
    sc = run.stored
    note = (f"{sc.stores:,} stores, {sc.rows:,} rows, {len(sc.short)} stores short "
            f"{sc.short[:5] if sc.short else ''}, {sc.wrong_position} events at a wrong position, "
            f"{sc.repeated_ids} ids twice, {sc.open_gaps} open gaps")
    out.append(check_row(BENCH, f"{label}: every store holds seq 1..N in order, nothing twice",
                         sc.rows - sc.wrong_position - sc.repeated_ids, total, "events", note))
    if sc.short or sc.open_gaps:
        out.append(failure_row(BENCH, f"{label}: every store gapless", p.stores - len(sc.short), p.stores, "stores",
                               note))
    acked = sum(min(a, per_store) for r in run.stores for a in r.acked.values())
    bad = sum(r.bad_acks for r in run.stores)
    out.append(check_row(BENCH, f"{label}: every store got the ack of its last seq", acked, total, "events",
                         f"{bad} acks beyond what a store had sent; "
                         f"{sum(r.resends for r in run.stores):,} resends from the last ack"))
    # Order through the shared subscription: a later batch stored before an earlier one of the same store.
    dups = sum(w.stats.get("duplicates", 0) for w in run.workers)
    published = sum(r.published for r in run.stores)
    out.append(row(BENCH, f"{label}: batches of a store stored out of order, put back in order by the database",
                   sc.stored_before_predecessor, "events", "events stored", sc.rows,
                   note=(f"{sc.gaps_closed:,} holes opened by a later batch and closed by the earlier one ("
                         + ", ".join(f"{k} {v:,}" for k, v in sc.gaps_by_phase.items()) + "); "
                         f"{published:,} events published for {total:,} (resends after the cut and the outage), "
                         f"{dups:,} duplicates dropped by the workers that stopped cleanly")))
    # Memory under backlog.
    s0 = run.at(tl.cont)
    backlog = max(0.0, p.stores * run.rate * min(s0.t, p.seconds) - s0.held)
    backlog_mb = backlog * _event_bytes() / 2**20 / p.workers
    max_message = max(r.largest_batch for r in run.stores)
    drain_end = tl.cont + (tl.caught_up if tl.caught_up == tl.caught_up else p.finish_s)
    worst: tuple[float, float, float] = (0.0, 0.0, 0.0)   # growth, peak, bound
    for w in run.workers:
        before = [mb for t, mb in w.rss if tl.stop - 3.0 <= t < tl.stop]
        during = [mb for t, mb in w.rss if tl.cont <= t <= drain_end + 1.0]
        if not before or not during:
            continue
        base = max(before)
        peak = max(during)
        if peak - base >= worst[0]:
            worst = (peak - base, peak, memory_bound_mb(base, max_message))
    backlog_msgs = published / max(1, sum(r.batches for r in run.stores))
    out.append(row(BENCH, f"{label}: worker RSS at most, draining the outage's backlog", worst[1], "MB",
                   "bound: RSS before + 3 × Receive Maximum × largest batch + slack", worst[2],
                   higher_is_better=False, min_ratio=1.0,
                   note=(f"grew {worst[0]:.1f} MB; Receive Maximum {RECEIVE_MAXIMUM}, largest batch sent "
                         f"{max_message / 1024:.1f} KiB, {backlog_msgs:.1f} events per batch on average; "
                         f"the backlog at SIGCONT, {backlog_mb:.1f} MB of JSON per worker, stayed in the broker")))
    if worst[1] > worst[2]:
        out.append(failure_row(BENCH, f"{label}: worker memory bounded under backlog", worst[1], worst[2], "MB",
                               "a worker held more than Receive Maximum messages allow"))
    # Catch-up and what the model needs.
    secs, events, hub, broker, dbcpu = _window(run, tl.cont, tl.cont + (tl.caught_up if tl.caught_up == tl.caught_up
                                                                          else p.finish_s))
    rate = events / secs if secs else 0.0
    offered = p.stores * run.rate
    out.append(row(BENCH, f"{label}: catch-up after a {p.outage_s:g} s outage of every worker", tl.caught_up, "s",
                   f"model: backlog ÷ (drain rate − offered {offered:,.0f}/s)",
                   backlog / (rate - offered) if rate > offered else float("inf"), higher_is_better=False,
                   note=f"backlog {backlog:,.0f} events; drained at {rate:,.0f} events/s with every worker busy"))
    out.append(row(BENCH, f"{label}: events/s per worker, every worker busy (draining)", rate / p.workers, "events/s",
                   "all workers", rate,
                   note=(f"{cpu_count()} CPUs shared by {p.workers} workers, Mosquitto, the stores"
                         + (" and PostgreSQL" if db == "postgresql" else ""))))
    if events:
        out.append(_cpu_row(f"{label}: CPU per event while draining", events, hub, broker, dbcpu, db))
    a, b = 1.0, tl.kill - 0.5
    _, ev_steady, hub_s, broker_s, db_s = _window(run, a, b)
    if ev_steady:
        idle0, idle1 = run.samples[0], run.at(0.0)
        idle = (idle1.hub_cpu - idle0.hub_cpu) / max(1e-9, idle1.t - idle0.t) / p.workers
        r = _cpu_row(f"{label}: CPU per event at the offered load (batches of about one event)", ev_steady,
                     hub_s, broker_s, db_s, db)
        r["note"] += (f"; {ev_steady / (b - a):,.0f} events/s offered; an idle worker uses {idle * 1000:.0f} ms "
                      "of CPU a second (counted in)")
        out.append(r)
    stored_total = max(1, sc.rows)
    what = "SQLite file and its WAL" if db == "sqlite" else "events partitions and their index"
    out.append(row(BENCH, f"{label}: database bytes per event stored", run.extra["db_bytes"] / stored_total,
                   "bytes", "the event's CloudEvents JSON", _event_bytes(), higher_is_better=False,
                   note=what))
    if "wal_bytes" in run.extra:
        out.append(row(BENCH, f"{label}: PostgreSQL WAL per event stored", run.extra["wal_bytes"] / stored_total,
                       "bytes", "the event's CloudEvents JSON", _event_bytes(), higher_is_better=False,
                       note="the server's WAL position before and after the run (other databases on it count too)"))
    failed = [f for w in run.workers for f in w.failed_starts]
    out.append(check_row(BENCH, f"{label}: the killed worker came back at its first start", int(not failed), 1,
                         "starts", "; ".join(dict.fromkeys(failed)) or "started, resumed its session"))
    for err in run.errors:
        out.append(failure_row(BENCH, f"{label}: error", 0, 1, "", err[:500]))
    tl_note = (f"kill {tl.kill:.1f} s, restart {tl.restart:.1f} s, cut {tl.cut:.1f} s for {p.drop_s:g} s, "
               f"SIGSTOP {tl.stop:.1f} s, SIGCONT {tl.cont:.1f} s, caught up {tl.caught_up:.1f} s after")
    for r in out:
        if not is_check(r) and r["note"] is not None and "catch-up" in r["figure"]:
            r["note"] += f"; {tl_note}"
    return out


def _cpu_row(figure: str, events: int, hub: float, broker: float, dbcpu: float, db: str) -> Row:
    # Per event stored: the CPU spent on resent copies the workers dropped is counted in.
    per = {"hub": hub / events * 1e6, "Mosquitto": broker / events * 1e6}
    if db == "postgresql":
        per["PostgreSQL"] = dbcpu / events * 1e6
    return row(BENCH, figure, sum(per.values()), "µs", "hub workers alone", per["hub"],
               higher_is_better=False, note=", ".join(f"{k} {v:.0f} µs" for k, v in per.items())
               + "; per event stored, resent copies dropped as duplicates counted in the CPU")


def _event_bytes() -> float:
    sid = store_id(0)
    data = sale_data(random.Random(sid), sid, 0)
    ev = OutboxEvent(1, event_id(sid, 1), EVENT_TYPE, "2026-01-01T00:00:00+00:00", data)
    return float(len(encode_event(f"edge/{sid}", ev, stream=stream_of(sid), seq=1)))


def measure(plan: Plan, dbs: list[str], pg_server: str) -> list[Row]:
    """Each database in turn; the rows of every run."""
    rows: list[Row] = []
    where = machine()
    with durable_tmpdir("sim-scale-") as tmp:
        for kind in dbs:
            run = simulate(plan, kind, pg_server, tmp / kind)
            rows += rows_for(run)
    for r in rows:
        if not is_check(r) and "per worker" in r["figure"]:
            r["note"] = f"{r['note']}; {where}"
    return rows


def main() -> int:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
        parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                            help="a PostgreSQL server where the run may create and drop a database of its own")
        parser.add_argument("--stores", type=int, help="simulated stores (default: the plan's)")
        parser.add_argument("--workers", type=int, help="hub workers (default: the plan's)")
        parser.add_argument("--resend-after", type=float, help="seconds without ack progress before a store "
                            "resends from its last ack (default: the agent's 30; --quick 3)")

    args = arguments(__doc__.splitlines()[0], extra)
    plan = QUICK if args.quick else DEFAULT
    if args.stores:
        plan = dataclasses.replace(plan, stores=args.stores)
    if args.workers:
        plan = dataclasses.replace(plan, workers=args.workers)
    if args.resend_after:
        plan = dataclasses.replace(plan, resend_after_s=args.resend_after)
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    rows = measure(plan, dbs, args.pg)
    report(rows, args)
    return 1 if any(is_check(r) and not r["met"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
