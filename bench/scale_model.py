"""The hub's capacity model: per-event costs and a chain's load in, workers, broker, PostgreSQL and network out.

docs/scale.md quotes what this prints. Every cost is an input, per event at
one event per MQTT message (what a store at its peak sends: the agent sends
as events come, so batches stay small; a store catching up batches 500 at a
time and costs less per event). Change one input (``--hub-us 90`` once the
hub is cheaper) and every table follows.

    .venv/bin/python bench/scale_model.py                   # the measured costs, 100,000 events a store a day
    .venv/bin/python bench/scale_model.py --hub-us 90 --db-us 120
    .venv/bin/python bench/scale_model.py --events-per-day 20000 --retention-days 14

Where each default comes from is in ``COSTS`` (measured here, by which
command) and in ``BROKERS`` (vendors' published figures, de-rated as said);
the load and the headroom are assumptions, stated in ``Load`` and ``Sizing``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

CHAINS = (1_000, 10_000, 50_000)


@dataclass(frozen=True)
class Costs:
    """What one event costs, at one event per message."""

    hub_us: float        # hub worker CPU (paho, parse, validate, database client, ack)
    broker_us: float     # broker CPU, the store's publish in and the worker's delivery and ack out
    db_us: float         # PostgreSQL server CPU (the backends serving the workers)
    wal_bytes: float     # PostgreSQL WAL written
    stored_bytes: float  # the events table and its index, per event kept
    wire_bytes: float    # the event's CloudEvents JSON
    source: str


COSTS = {
    # bench/sim_scale.py, full run, PostgreSQL: 2,000 stores, 6 workers draining a 20 s outage's backlog
    # (every worker busy, about one event per message); docs/scale.md, "The simulation".
    "postgresql": Costs(hub_us=290, broker_us=23, db_us=159, wal_bytes=1936, stored_bytes=1017, wire_bytes=663,
                        source="bench/sim_scale.py full run on PostgreSQL, the backlog's drain: hub 290 µs, "
                               "Mosquitto 23 µs, PostgreSQL backends 159 µs, WAL 1,936 B, table 1,017 B"),
    # The same run on SQLite; README's bench_hub_scale.py figures (hub 145 µs, Mosquitto 17 µs) agree within 15 %.
    "sqlite": Costs(hub_us=160, broker_us=22, db_us=0, wal_bytes=0, stored_bytes=1037, wire_bytes=663,
                    source="bench/sim_scale.py full run on SQLite, the backlog's drain: hub 160 µs (the database "
                           "in it), Mosquitto 22 µs, file 1,037 B"),
}


@dataclass(frozen=True)
class Load:
    """A chain's load at its peak (assumed; docs/scale.md says why these figures)."""

    events_per_store_day: float = 100_000
    peak_hour_share: float = 0.15      # of a day's events, in its busiest hour
    burst: float = 1.5                 # the busiest minute over that hour's mean
    retention_days: int = 30           # raw events kept (edge-hub run --retention-days)

    def store_peak(self) -> float:
        """Events per second of one store in the busiest minute."""
        return self.events_per_store_day * self.peak_hour_share / 3600 * self.burst


@dataclass(frozen=True)
class Sizing:
    """How much room to leave (assumed)."""

    worker_load: float = 0.5           # a worker at the peak uses this share of its core: the rest is catch-up
    spare_workers: float = 0.1         # on top, for the ones dead or being replaced (at least one)
    db_cores_load: float = 0.6
    broker_load: float = 0.5
    outage_h: float = 1.0              # a regional outage, in hours, at the peak
    outage_share: float = 0.2          # of the stores
    resend_after_s: float = 30.0       # the agent's first resend when acks stall (sync/link.py LinkSettings)
    resend_max_s: float = 600.0        # each later one waits twice as long, up to this
    # One PostgreSQL primary, comfortably: WAL it writes and replicates, cores it has (assumed, not measured).
    primary_wal_mb_s: float = 100.0
    primary_cores: float = 32.0
    # SQLite: every worker's transaction holds the one file's write lock; the SQL part of a worker's
    # 145 µs an event (README: "a third in parsing and SQLite", parsing runs before the lock).
    sqlite_locked_us: float = 40.0
    window_events: int = 20_000        # the agent's window of unacknowledged events


@dataclass(frozen=True)
class Broker:
    """One broker node's capacity for this traffic (from its vendor's figures, de-rated)."""

    name: str
    msgs_per_node: float               # QoS 1 messages in per second, our ~700-byte payloads
    connections_per_node: float
    min_nodes: int
    source: str


BROKERS = (
    Broker("Mosquitto (one node, one thread)", 0.0, 50_000, 1,
           "single-threaded: one core's worth, from the measured broker CPU per event; connections: "
           "an assumption (TLS handshakes of a mass reconnect all land on that one thread)"),
    Broker("EMQX cluster", 50_000, 1_000_000, 3,
           "EMQX 4.3 test report: 5 nodes of 32 cores, 10 M connections, 500,000 QoS 1 msg/s of 50-byte "
           "payloads (100,000 a node); halved here for ~700-byte payloads; 3 nodes at least for a quorum"),
)


def ceil(x: float) -> int:
    return int(math.ceil(x - 1e-9))


@dataclass(frozen=True)
class Plan:
    """What a chain of ``stores`` needs at its peak."""

    stores: int
    peak: float                 # events per second
    workers: int
    worker_capacity: float      # events per second a worker takes at its full core
    broker: str
    broker_nodes: int
    db_cores: float
    primaries: int              # PostgreSQL primaries, the stores split among them
    wal_mb_s: float
    wal_gb_day: float
    storage_tb: float
    partitions: int
    network_mbit: float
    catch_up_h: float           # after the regional outage
    resend_copies: float        # events the stores send per real one, hub down for the outage's length


def plan(stores: int, c: Costs, load: Load, s: Sizing) -> Plan:
    """The sizing for one chain."""
    peak = stores * load.store_peak()
    per_worker = 1e6 / c.hub_us
    busy = peak / (per_worker * s.worker_load)
    workers = ceil(busy) + max(1, ceil(busy * s.spare_workers))
    mosquitto_cap = 1e6 / c.broker_us * s.broker_load
    if peak <= mosquitto_cap and stores <= BROKERS[0].connections_per_node:
        broker, nodes = BROKERS[0].name, 1
    else:
        b = BROKERS[1]
        nodes = max(b.min_nodes, ceil(peak / (b.msgs_per_node * s.broker_load)) + 1,
                    ceil(stores / b.connections_per_node) + 1)
        broker = b.name
    day = stores * load.events_per_store_day
    # Catch-up: the stores cut off send what they made meanwhile; the workers' spare capacity takes it.
    backlog = s.outage_share * stores * load.store_peak() * s.outage_h * 3600
    spare = workers * per_worker - peak
    # The hub down (the broker up): every store resends its unacknowledged events after resend_after_s,
    # then after twice as long each time, up to resend_max_s; each resend sends all made so far (window-capped).
    rate = load.store_peak()
    outage = s.outage_h * 3600
    sent, at, wait = 0.0, 0.0, s.resend_after_s
    while at + wait <= outage:
        at += wait
        sent += min(rate * at, s.window_events)
        wait = min(wait * 2, max(s.resend_max_s, s.resend_after_s))
    return Plan(
        stores=stores, peak=peak, workers=workers, worker_capacity=per_worker, broker=broker, broker_nodes=nodes,
        db_cores=peak * c.db_us / 1e6 / s.db_cores_load,
        primaries=max(1, ceil(peak * c.wal_bytes / 1e6 / s.primary_wal_mb_s),
                      ceil(peak * c.db_us / 1e6 / s.db_cores_load / s.primary_cores)),
        wal_mb_s=peak * c.wal_bytes / 1e6,
        wal_gb_day=day * c.wal_bytes / 1e9, storage_tb=day * load.retention_days * c.stored_bytes / 1e12,
        partitions=load.retention_days + 3, network_mbit=peak * (c.wire_bytes + 120) * 2 * 8 / 1e6,
        catch_up_h=backlog / spare / 3600 if spare > 0 else math.inf,
        resend_copies=(rate * outage + sent) / (rate * outage))


def table(c: Costs, load: Load, s: Sizing) -> str:
    """The model's table, as markdown."""
    plans = [plan(n, c, load, s) for n in CHAINS]
    head = "| | " + " | ".join(f"{p.stores:,} stores" for p in plans) + " |"
    lines = [head, "|---|" + "---|" * len(plans)]

    def line(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    line("events/s at the peak", [f"{p.peak:,.0f}" for p in plans])
    line(f"hub workers (one core each, {s.worker_load:.0%} busy at the peak, + spares)",
         [f"{p.workers:,}" for p in plans])
    line("broker", [f"{p.broker}, {p.broker_nodes} node{'s' * (p.broker_nodes > 1)}" for p in plans])
    line("broker connections (stores + workers)", [f"{p.stores + p.workers:,}" for p in plans])
    if c.db_us:
        line(f"PostgreSQL cores ({s.db_cores_load:.0%} busy at the peak)", [f"{p.db_cores:,.1f}" for p in plans])
        line("PostgreSQL WAL at the peak", [f"{p.wal_mb_s:,.0f} MB/s" for p in plans])
        line(f"PostgreSQL primaries (≤ {s.primary_wal_mb_s:g} MB/s of WAL, ≤ {s.primary_cores:g} cores each)",
             [f"{p.primaries}" for p in plans])
        line("PostgreSQL WAL a day", [f"{p.wal_gb_day:,.0f} GB" for p in plans])
    line(f"events kept ({load.retention_days} days)", [f"{p.storage_tb:,.1f} TB" for p in plans])
    line("daily partitions", [f"{p.partitions}" for p in plans])
    line("network at the hub, in + out", [f"{p.network_mbit:,.0f} Mbit/s" for p in plans])
    line(f"catch-up after {s.outage_share:.0%} of the stores were cut off {s.outage_h:g} h at the peak",
         [f"{p.catch_up_h * 60:,.0f} min" for p in plans])
    line(f"events sent per event made, hub down {s.outage_h:g} h (agents resend after {s.resend_after_s:g} s, "
         f"doubling to {s.resend_max_s:g} s)",
         [f"{p.resend_copies:,.0f}x" for p in plans])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", choices=sorted(COSTS), default="postgresql", help="which measured costs")
    for f in dataclasses.fields(Costs):
        if f.name != "source":
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=float, help=f"override {f.name}")
    parser.add_argument("--events-per-day", type=float, help="events per store per day")
    parser.add_argument("--retention-days", type=int)
    args = parser.parse_args()
    c = COSTS[args.costs]
    c = dataclasses.replace(c, **{f.name: getattr(args, f.name) for f in dataclasses.fields(Costs)
                                  if f.name != "source" and getattr(args, f.name) is not None})
    load = Load()
    if args.events_per_day:
        load = dataclasses.replace(load, events_per_store_day=args.events_per_day)
    if args.retention_days:
        load = dataclasses.replace(load, retention_days=args.retention_days)
    s = Sizing()
    print(f"Costs per event ({args.costs}): hub {c.hub_us:g} µs, broker {c.broker_us:g} µs, PostgreSQL "
          f"{c.db_us:g} µs, WAL {c.wal_bytes:g} B, stored {c.stored_bytes:g} B, on the wire {c.wire_bytes:g} B")
    print(f"  from: {c.source}")
    print(f"Load: {load.events_per_store_day:,.0f} events a store a day, {load.peak_hour_share:.0%} of them in "
          f"the busiest hour, its busiest minute {load.burst:g}x the hour's mean: {load.store_peak():.2f} events/s "
          f"a store at the peak; one worker takes {1e6 / c.hub_us:,.0f} events/s at a full core")
    sqlite_max = 1e6 / s.sqlite_locked_us
    print(f"SQLite, one file on one machine: at most {sqlite_max:,.0f} events/s under its write lock "
          f"({s.sqlite_locked_us:g} µs held an event, assumed), {sqlite_max * s.worker_load:,.0f} at "
          f"{s.worker_load:.0%}: about {sqlite_max * s.worker_load / load.store_peak():,.0f} stores at this load")
    print()
    print(table(c, load, s))


if __name__ == "__main__":
    main()
