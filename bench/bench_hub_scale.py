"""Hub scale: 1,000 stores at 5 events/s into one hub on Mosquitto, and what a second worker adds.

Offered load: 1,000 simulated stores each publish one CloudEvents batch of
one ``retail.sale.completed`` every 200 ms (5 events/s, 5,000 events/s in
all) with their own seq from 1, at QoS 1 on ``edge/{store}/events``, for D
seconds (60; ``--quick`` 10), staggered evenly over the 200 ms. The stores
are simulated by a few load-generator processes, each with ONE MQTT client
that publishes on behalf of its share of the stores (the test broker is
anonymous with no ACL) and subscribes to their ``hub/{store}/ack`` topics:
a thousand paho clients would need a thousand network threads, and the
figure would be the load generator's, not the hub's. Afterwards every store
waits for an ack of its last seq, and the hub's database must hold exactly
seq 1..5·D of every store, no gap: zero loss, or a failure row and exit 1.
This runs with one hub worker, then with two; each row gives the ingest rate
(events acknowledged per second of the run) against the rate actually
offered, and the ack latency.

Saturation: a fixed offered load may sit below the hub's capacity, so one
and two workers would look the same. So each worker count also drains a
backlog: the hub workers (``edge-hub run``, shared subscription group, one
client id each, persistent sessions, one SQLite database) connect and
subscribe, are frozen with SIGSTOP (down, as far as the broker can tell,
sessions kept), the stores publish ``backlog`` events each, and the clock
runs from SIGCONT until the database holds them all. Rounds alternate
1, 2, 1, 2 workers, each on a fresh broker and database; the median counts.
Target: two workers ingest at least 1.8x what one does.

Everything runs on this machine: on 2 cores, two hub workers share the CPUs
with Mosquitto, so the notes give the CPU each process used per event, and
one row sets the two workers against the ceiling those cores put on any
number of workers (CPUs divided by hub plus broker CPU per event): the
ratio that ceiling leaves over one worker is the most this machine can show.

Cost per event (``--cost`` alone, and part of every run): the hub's own CPU
per event against a bare paho subscriber's that only parses the same
messages (bench/hub_cost.py), on SQLite and on PostgreSQL (a throwaway
server started as the tests start one), at one event per message and at the
agent's batch size. Target: the hub within 1.25x of the bare subscriber at
one event per message.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from common import (
    HubProcess,
    LoadGenerators,
    arguments,
    Row,
    check_row,
    cpu_count,
    cpu_seconds,
    durable_tmpdir,
    failure_row,
    is_check,
    machine,
    median,
    percentile,
    row,
    sale_data,
    report,
    spread,
)
from hub_cost import CostCase, Postgres, cost_round
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.store.db import uuid7
from edge_agent.store.outbox import OutboxEvent
from edge_core.bus import utcnow
from sync.link import LinkSettings
from sync.localbroker import LocalMosquitto
from sync.topics import encode_event, hub_topic, join_batch

BENCH = "hub_scale"
STORES = 1000
RATE = 5                 # events per second per store
TICK = 1 / RATE          # one batch of one event per store per tick
EVENT_TYPE = "retail.sale.completed"
WINDOW = 10_000          # unacknowledged publishes per client at most (paho's packet ids are 16-bit)
ACK_WAIT_S = 120         # after its last publish, how long a store waits for the ack of its last seq
DRAIN_TIMEOUT_S = 300
POOL = 4                 # distinct sale payloads per store, cycled


@dataclass(frozen=True)
class Plan:
    """Offered-load seconds, backlog events per store, saturation rounds per worker count."""

    seconds: float
    backlog: int
    rounds: int
    generators: int = 2
    cost_rounds: int = 3       # rounds of each cost case (the median counts)
    cost_stores: int = 200     # one event per message: cost_stores × cost_per_store events
    cost_per_store: int = 100


DEFAULT = Plan(seconds=60, backlog=40, rounds=2)   # about 3.5 min on 2 cores, and about 4 min of cost rounds
QUICK = Plan(seconds=10, backlog=10, rounds=1, cost_rounds=1, cost_stores=100, cost_per_store=50)


def store_id(i: int) -> str:
    """``store-0000`` .. ``store-0999``."""
    return f"store-{i:04d}"


# The load generators (child processes) ----------------------------------------------

@dataclass(frozen=True)
class Job:
    """What one load-generator process does: ``offered`` (paced) or ``backlog`` (as fast as it can)."""

    index: int
    port: int
    stores: tuple[int, ...]
    mode: str
    events: int          # per store


@dataclass
class JobResult:
    """What one load generator saw."""

    published: int = 0
    refused: int = 0
    seconds: float = 0.0            # from the first publish to the last PUBACK (backlog) or last publish
    late_max: float = 0.0           # how far behind its schedule the generator fell at worst
    last_ack_at: float = 0.0        # wall clock of the last ack that completed a store
    missing: dict[str, int] = field(default_factory=dict)   # store -> events never acknowledged
    latencies: list[float] = field(default_factory=list)    # publish to ack, seconds (a sample)
    error: str | None = None


class _Stores:
    """One MQTT client publishing for many stores; paho's thread counts PUBACKs and acks."""

    def __init__(self, job: Job):
        self.job = job
        self.ids = [store_id(i) for i in job.stores]
        # Built before the clock starts, so that the load generators leave the CPU to the hub.
        self.payloads = {sid: self._payloads(sid, job.events, random.Random(f"{job.index}-{sid}")) for sid in self.ids}
        self.sent_at = {sid: [0.0] * (job.events + 1) for sid in self.ids}
        self.acked = {sid: 0 for sid in self.ids}
        self.latencies: list[float] = []
        self.window = threading.Semaphore(WINDOW)
        self.unacked = 0
        self.refused = 0
        self.complete = 0
        self.last_ack_at = 0.0
        self.all_acked = threading.Event()
        self.all_puback = threading.Event()
        self.publishing = True
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-stores-{job.mode}-{job.index}",
                        protocol=mqtt.MQTTv5)
        # paho's default of 20 in flight, on purpose: every PUBACK makes paho walk all the messages it
        # holds (Client._update_inflight), so a larger window costs more CPU per message, not less.
        c.on_connect = lambda *_: self.connected.set()
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    def connect(self) -> None:
        self.client.connect("127.0.0.1", self.job.port, keepalive=60)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("could not connect to the broker")
        if self.job.mode == "offered":
            self.client.subscribe([(hub_topic(sid, "ack"), 1) for sid in self.ids])
            if not self.subscribed.wait(10):
                raise RuntimeError("no SUBACK for the ack topics")

    @staticmethod
    def _payloads(sid: str, events: int, rng: random.Random) -> list[bytes]:
        """Index seq: the batch of one event with that seq, as the agent's link would send it."""
        data = [sale_data(rng, sid, k) for k in range(POOL)]
        source = f"edge/{sid}"
        return [b""] + [
            join_batch([encode_event(source, OutboxEvent(seq, str(uuid7()), EVENT_TYPE, utcnow().isoformat(),
                                                         data[seq % POOL]))])
            for seq in range(1, events + 1)
        ]

    def publish(self, sid: str, seq: int) -> None:
        payload = self.payloads[sid][seq]
        self.window.acquire()
        with self._lock:
            self.unacked += 1
        self.sent_at[sid][seq] = time.time()
        self.client.publish(f"edge/{sid}/events", payload, qos=1)

    def _on_publish(self, _c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused += 1
        self.window.release()
        with self._lock:
            self.unacked -= 1
            if self.unacked == 0 and not self.publishing:
                self.all_puback.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        sid = msg.topic.split("/")[1]
        seq = json.loads(msg.payload)["seq"]
        prev = self.acked.get(sid)
        if prev is None or seq <= prev:
            return
        now = time.time()
        times = self.sent_at[sid]
        self.latencies.extend(now - times[s] for s in range(prev + 1, min(seq, self.job.events) + 1))
        self.acked[sid] = seq
        if seq >= self.job.events:
            self.complete += 1
            self.last_ack_at = now
            if self.complete == len(self.ids):
                self.all_acked.set()

    def done_publishing(self) -> None:
        with self._lock:
            self.publishing = False
            if self.unacked == 0:
                self.all_puback.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _offered(stores: _Stores, start_at: float, result: JobResult) -> None:
    # Store g publishes at start_at + g/STORES·TICK + k·TICK: the 1,000 stores spread over each tick.
    order = sorted(zip(stores.job.stores, stores.ids))
    late = 0.0
    for k in range(stores.job.events):
        for g, sid in order:
            delay = start_at + k * TICK + g / STORES * TICK - time.time()
            if delay > 0.002:       # publish what is due within 2 ms at once: fewer wake-ups
                time.sleep(delay)
            else:
                late = max(late, -delay)
            stores.publish(sid, k + 1)
            result.published += 1
    result.seconds = time.time() - start_at
    result.late_max = late
    stores.done_publishing()
    stores.all_puback.wait(ACK_WAIT_S)
    stores.all_acked.wait(ACK_WAIT_S)


def _backlog(stores: _Stores, result: JobResult) -> None:
    start = time.perf_counter()
    for seq in range(1, stores.job.events + 1):
        for sid in stores.ids:
            stores.publish(sid, seq)
            result.published += 1
    stores.done_publishing()
    if not stores.all_puback.wait(DRAIN_TIMEOUT_S):
        result.error = f"only {result.published - stores.unacked} of {result.published} PUBACKs came back"
    result.seconds = time.perf_counter() - start


def generate(job: Job, pipe: Connection) -> None:
    """A load-generator process: connect, say ready, wait for the start time, publish, report."""
    result = JobResult()
    stores: _Stores | None = None
    try:
        stores = _Stores(job)
        stores.connect()
        pipe.send("ready")
        start_at = pipe.recv()
        if job.mode == "offered":
            _offered(stores, start_at, result)
            result.missing = {sid: job.events - a for sid, a in stores.acked.items() if a < job.events}
            result.last_ack_at = stores.last_ack_at
            lat = stores.latencies
            # A sample is enough for percentiles and keeps the pipe small.
            result.latencies = lat if len(lat) <= 20_000 else random.Random(0).sample(lat, 20_000)
        else:
            _backlog(stores, result)
        result.refused = stores.refused
    except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the run
        result.error = f"{type(err).__name__}: {err}"
    finally:
        if stores is not None:
            stores.close()
    pipe.send(result)


def generators(port: int, mode: str, events: int, count: int) -> LoadGenerators:
    """``count`` load-generator processes sharing the 1,000 stores."""
    return LoadGenerators(generate, [Job(i, port, tuple(range(i, STORES, count)), mode, events) for i in range(count)])


# The hub side ---------------------------------------------------------------------------

@dataclass
class HubCheck:
    """What the hub's database holds afterwards."""

    stores: int
    events: int
    rows: int
    not_contiguous: int
    open_gaps: int
    duplicates: int


def check_hub(db_path: Path, per_store: int, hub_stats: list[dict[str, int]]) -> HubCheck:
    """Per store: contiguous == events == per_store and no open gap; rows == stores × per_store."""
    conn = sqlite3.connect(db_path)
    try:
        stores = conn.execute("SELECT store, contiguous, events FROM stores").fetchall()
        rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        gaps = conn.execute("SELECT count(*) FROM gaps WHERE closed_at IS NULL").fetchone()[0]
    finally:
        conn.close()
    bad = sum(1 for _, contiguous, events in stores if contiguous != per_store or events != per_store)
    return HubCheck(len(stores), sum(e for _, _, e in stores), rows, bad, gaps,
                    sum(s.get("duplicates", 0) for s in hub_stats))


def held(conn: sqlite3.Connection) -> int:
    """Events the hub holds, all stores (its counters, cheaper than counting rows)."""
    return conn.execute("SELECT coalesce(sum(events), 0) FROM stores").fetchone()[0]


def start_hubs(broker: LocalMosquitto, db_url: str, workdir: Path, workers: int) -> list[HubProcess]:
    hubs = []
    for w in range(workers):
        hubs.append(HubProcess(broker.url, db_url, workdir / f"hub-{w + 1}.log", client_id=f"bench-hub-{w + 1}"))
        hubs[-1].start()
    return hubs


@dataclass
class Offered:
    """The offered-load run."""

    workers: int
    events: int
    offered_rate: float
    ingest_rate: float
    late_max: float
    latencies: list[float]
    missing: int
    refused: int
    cpu: dict[str, float]
    check: HubCheck
    errors: list[str]


def offered_run(workdir: Path, plan: Plan, workers: int) -> Offered:
    """1,000 stores at 5 events/s for ``plan.seconds`` into ``workers`` hub workers."""
    per_store = int(RATE * plan.seconds)
    db_path = workdir / "hub.db"
    broker = LocalMosquitto(workdir / "mosquitto").start()
    hubs: list[HubProcess] = []
    gens = generators(broker.port, "offered", per_store, plan.generators)
    try:
        hubs = start_hubs(broker, f"sqlite:///{db_path}", workdir, workers)
        gens.start()
        pids = {"hub": [h.pid for h in hubs], "mosquitto": [broker.proc.pid], "stores": gens.pids()}
        cpu0 = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()}
        start_at = time.time() + 0.5
        gens.go(start_at)
        results = gens.results(plan.seconds + 2 * ACK_WAIT_S + 60)
        cpu = {k: sum(map(cpu_seconds, v)) - cpu0[k] for k, v in pids.items()}
        stats = [h.stop() for h in hubs]
    finally:
        gens.close()
        for h in hubs:
            h.kill()
        broker.stop()
    check = check_hub(db_path, per_store, stats)
    published = sum(r.published for r in results)
    offered_s = max(r.seconds for r in results)
    last_ack = max(r.last_ack_at for r in results)
    acked = STORES * per_store - sum(sum(r.missing.values()) for r in results)
    return Offered(
        workers=workers, events=published, offered_rate=published / offered_s,
        ingest_rate=acked / (last_ack - start_at) if last_ack else 0.0,
        late_max=max(r.late_max for r in results), latencies=[x for r in results for x in r.latencies],
        missing=sum(sum(r.missing.values()) for r in results), refused=sum(r.refused for r in results),
        cpu=cpu, check=check, errors=[r.error for r in results if r.error],
    )


@dataclass
class Saturation:
    """One backlog drain."""

    workers: int
    events: int
    seconds: float
    publish_s: float
    cpu: dict[str, float]
    check: HubCheck
    errors: list[str]
    timeline: list[tuple[float, int]]    # (seconds since SIGCONT, events held)

    @property
    def rate(self) -> float:
        """Events per second over the whole drain."""
        return self.events / self.seconds

    @property
    def steady_rate(self) -> float:
        """Events per second from 20 % to 80 % of the drain: without the start, where each worker's
        network thread first reads the whole backlog off its socket, and without the tail."""
        a = next((t, n) for t, n in self.timeline if n >= 0.2 * self.events)
        b = next(((t, n) for t, n in self.timeline if n >= 0.8 * self.events), self.timeline[-1])
        return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")


def saturation_run(workdir: Path, plan: Plan, workers: int) -> Saturation:
    """Freeze the workers, let every store publish ``plan.backlog`` events, thaw them, time the drain."""
    db_path = workdir / "hub.db"
    total = STORES * plan.backlog
    broker = LocalMosquitto(workdir / "mosquitto").start()
    hubs: list[HubProcess] = []
    gens = generators(broker.port, "backlog", plan.backlog, plan.generators)
    errors: list[str] = []
    try:
        hubs = start_hubs(broker, f"sqlite:///{db_path}", workdir, workers)
        for h in hubs:
            h.pause()
        gens.start()
        gens.go(0.0)
        results = gens.results(DRAIN_TIMEOUT_S)
        errors += [r.error for r in results if r.error]
        gens.close()
        publish_s = max(r.seconds for r in results)
        pids = {"hub": [h.pid for h in hubs], "mosquitto": [broker.proc.pid]}
        cpu0 = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()}
        timeline: list[tuple[float, int]] = []
        conn = sqlite3.connect(db_path)
        try:
            start = time.perf_counter()
            for h in hubs:
                h.resume()
            deadline = start + DRAIN_TIMEOUT_S
            while (n := held(conn)) < total and time.perf_counter() < deadline:
                timeline.append((time.perf_counter() - start, n))
                time.sleep(0.02)
            seconds = time.perf_counter() - start
            timeline.append((seconds, n))
        finally:
            conn.close()
        cpu = {k: sum(map(cpu_seconds, v)) - cpu0[k] for k, v in pids.items()}
        stats = [h.stop() for h in hubs]
    finally:
        gens.close()
        for h in hubs:
            h.kill()
        broker.stop()
    return Saturation(workers, total, seconds, publish_s, cpu, check_hub(db_path, plan.backlog, stats), errors,
                      timeline)


# The run -----------------------------------------------------------------------------------

def _per_event(cpu: dict[str, float], events: int) -> str:
    return ", ".join(f"{k} {v / events * 1e6:.0f} µs" for k, v in cpu.items())


def _checks(what: str, check: HubCheck, per_store: int, extra: str = "") -> list[Row]:
    note = (f"{check.stores} stores, {check.rows:,} rows, {check.not_contiguous} stores short, "
            f"{check.open_gaps} open gaps, {check.duplicates} duplicates{extra}")
    rows = [check_row(BENCH, f"{what}: zero loss at the hub", check.events, STORES * per_store, "events", note)]
    if check.rows != STORES * per_store or check.not_contiguous or check.open_gaps or check.stores != STORES:
        rows.append(failure_row(BENCH, f"{what}: every store holds seq 1..N, no gap", check.stores - check.not_contiguous,
                                STORES, "stores", note))
    return rows


def measure(plan: Plan) -> list[Row]:
    """The offered load with 1 and 2 workers, then saturation rounds alternating 1 and 2 workers; the rows."""
    where = machine()
    with durable_tmpdir("bench-hub-scale-") as tmp:
        offered = {w: offered_run(tmp / f"offered-{w}", plan, workers=w) for w in (1, 2)}
        sat: dict[int, list[Saturation]] = {1: [], 2: []}
        for r in range(plan.rounds):
            for workers in (1, 2):
                sat[workers].append(saturation_run(tmp / f"sat-{workers}-{r}", plan, workers))

    rows: list[Row] = []
    per_store = int(RATE * plan.seconds)
    for w, off in offered.items():
        lat = off.latencies or [float("nan")]
        rows.append(row(
            BENCH, f"{STORES:,} stores × {RATE}/s for {plan.seconds:g}s, {w} hub worker{'s' * (w > 1)}",
            off.ingest_rate, "events/s", "offered load", off.offered_rate,
            note=(f"ack latency p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
                  f"max {max(lat) * 1000:.0f} ms; load generators at worst {off.late_max * 1000:.0f} ms behind; "
                  f"CPU per event: {_per_event(off.cpu, off.events)}; 1 event per batch, "
                  f"{plan.generators} generator processes, {where}")))
        rows += _checks(f"offered load, {w} worker{'s' * (w > 1)}", off.check, per_store,
                        f"; {off.missing} events without ack at the stores, {off.refused} PUBACK errors")
        for err in off.errors:
            rows.append(failure_row(BENCH, f"offered load, {w} worker(s): load generator", 0, 1, "", err))

    rate = {w: median([s.rate for s in runs]) for w, runs in sat.items()}
    steady = {w: median([s.steady_rate for s in runs]) for w, runs in sat.items()}
    for w, runs in sat.items():
        how = (f"backlog {runs[0].events:,} events (1 per batch) drained after SIGCONT, median of {plan.rounds}: "
               f"{spread([s.rate for s in runs])}; steady (20-80 %) {steady[w]:,.0f}/s; CPU per event: "
               f"{_per_event(runs[0].cpu, runs[0].events)}; one SQLite file")
        if w == 1:
            rows.append(row(BENCH, "saturation, 1 hub worker", rate[1], "events/s",
                            "offered load (1 worker run)", offered[1].offered_rate, note=how))
        else:
            rows.append(row(BENCH, f"saturation, {w} hub workers", rate[w], "events/s",
                            "saturation, 1 hub worker", rate[1], min_ratio=1.8,
                            note=f"{how}; steady-state ratio {steady[w] / steady[1]:.2f}x; "
                                 f"{where}, shared with Mosquitto"))
        if w > 1:
            rows.append(_ceiling_row(runs, rate))
        for i, s in enumerate(runs):
            rows += [r for r in _checks(f"saturation {w} worker(s) round {i + 1}", s.check, plan.backlog)
                     if not r["met"]]
            for err in s.errors:
                rows.append(failure_row(BENCH, f"saturation {w} worker(s) round {i + 1}", 0, 1, "", err))
    return rows


def _ceiling_row(runs: list[Saturation], rate: dict[int, float]) -> Row:
    """Two workers against what this machine's CPUs allow at all, and the best ratio that leaves.

    Every event costs hub CPU and Mosquitto CPU; both run on the same cores
    here, so no number of workers can ingest more than cores / (hub + broker
    CPU per event). When two workers come close to that ceiling, the hub
    scales and what the ratio lacks is cores, which a hub whose broker has
    its own machine does not lack.
    """
    per_event = median([(s.cpu["hub"] + s.cpu["mosquitto"]) / s.events for s in runs])
    cores = cpu_count()
    ceiling = cores / per_event
    return row(BENCH, f"saturation, {runs[0].workers} hub workers vs the CPU ceiling", median([s.rate for s in runs]),
               "events/s", f"{cores} CPUs ÷ CPU per event (hub + Mosquitto)", ceiling,
               note=(f"{per_event * 1e6:.0f} µs of CPU per event; the best ratio over one worker these cores allow "
                     f"is {ceiling / rate[1]:.2f}x"))


# Cost per event ------------------------------------------------------------------------------

BATCH_BACKLOG = 400   # a store's backlog in the batch rows: one message of the agent's (≤500 events, ≤256 KiB)
COST_TARGET = 1.25    # the hub's CPU per event at most this many times the bare subscriber's


def cost_cases(plan: Plan) -> list[CostCase]:
    """SQLite and PostgreSQL, one event per message and the agent's batches (a backlog of BATCH_BACKLOG
    events a store: four times the events, so that the bare subscriber's CPU is not a few clock ticks)."""
    batch = LinkSettings().batch_max_events
    return [CostCase(db, plan.cost_stores, plan.cost_per_store, 1) for db in ("sqlite", "postgresql")] + [
        CostCase(db, plan.cost_stores, BATCH_BACKLOG, batch) for db in ("sqlite", "postgresql")]


def measure_cost(plan: Plan) -> list[Row]:
    """Each case ``plan.cost_rounds`` times, rounds of the cases interleaved; a row per case."""
    where = machine()
    cases = cost_cases(plan)
    runs: dict[CostCase, list[Any]] = {c: [] for c in cases}
    with durable_tmpdir("bench-hub-cost-") as tmp:
        pg = Postgres(tmp / "pg").start()
        try:
            for r in range(plan.cost_rounds):
                for i, case in enumerate(cases):
                    runs[case].append(cost_round(tmp / f"cost-{i}-{r}", case, pg, seed=r))
        finally:
            pg.stop()
    rows: list[Row] = []
    for case, costs in runs.items():
        rows += _cost_rows(case, costs, where)
    return rows


def _cost_rows(case: CostCase, costs: list[Any], where: str) -> list[Row]:
    hub = [c.us(c.hub_cpu) for c in costs]
    bare = [c.us(c.bare_cpu) for c in costs]
    ratios = sorted(h / b for h, b in zip(hub, bare))
    mid = costs[[h / b for h, b in zip(hub, bare)].index(ratios[len(ratios) // 2])]  # the median round
    db = "SQLite" if case.db == "sqlite" else "PostgreSQL"
    what = "1 event per message" if case.per_message == 1 else f"agent batches of {case.per_store}"
    server = (f", PostgreSQL server {mid.us(mid.db_server_cpu):.0f} µs" if mid.db_server_cpu is not None else "")
    note = (f"{case.events:,} events from {case.stores} stores in {mid.messages:,} messages at QoS 1, drained "
            f"from a backlog; median round of {len(costs)} by ratio (ratios {', '.join(f'{x:.2f}' for x in ratios)}; "
            f"hub {spread(hub)} µs, bare {spread(bare)} µs); beside it in that round: Mosquitto "
            f"{mid.us(mid.hub_broker_cpu):.0f} µs with the hub, {mid.us(mid.bare_broker_cpu):.0f} µs with the bare "
            f"subscriber{server}; hub drain {case.events / mid.hub_s:,.0f} events/s, bare "
            f"{case.events / mid.bare_s:,.0f}/s; {where}")
    out = [row(BENCH, f"hub CPU per event, {db}, {what}", mid.us(mid.hub_cpu), "µs",
               "bare paho subscriber (json.loads only)", mid.us(mid.bare_cpu), higher_is_better=False,
               min_ratio=1 / COST_TARGET if case.per_message == 1 else None, note=note)]
    for i, c in enumerate(costs):
        check = (f"{c.held_ok_stores} of {case.stores} stores hold seq 1..{case.per_store}, {c.rows:,} rows, "
                 f"{c.open_gaps} open gaps, {c.acked_stores} stores acknowledged to the end")
        if c.error or c.held_ok_stores != case.stores or c.rows != case.events or c.open_gaps or \
                c.acked_stores != case.stores:
            out.append(failure_row(BENCH, f"cost {db}, {what}, round {i + 1}: zero loss", c.held_ok_stores,
                                   case.stores, "stores", f"{c.error or ''} {check}".strip()))
        elif i == 0:
            out.append(check_row(BENCH, f"cost {db}, {what}: zero loss, every store acknowledged", c.rows,
                                 case.events, "events", check + f" (each of {len(costs)} rounds)"))
    return out


def main() -> int:
    """The whole run, or with ``--cost`` only the cost rows; exit 1 if a correctness check failed."""
    args = arguments(__doc__.splitlines()[0], lambda p: p.add_argument(
        "--cost", action="store_true", help="only the hub's CPU per event against a bare subscriber"))
    plan = QUICK if args.quick else DEFAULT
    rows = measure_cost(plan) if args.cost else measure(plan) + measure_cost(plan)
    report(rows, args)
    return 1 if any(is_check(r) and not r["met"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
