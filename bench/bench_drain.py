"""Backlog drain: a store's buffered events to the hub, end to end, against one message per event.

A store that was offline for a while holds a backlog in its outbox. This
measures how fast the agent's link (sync/link.py: CloudEvents batches, QoS 1)
empties it into the reference hub (``edge-hub run``, its own process, SQLite)
through a real Mosquitto: the clock runs from ``HubLink.start()`` until the
hub has acknowledged the last seq, so it covers reading the outbox, encoding,
MQTT, the hub's parse + insert + commit, the ack and the outbox delete.

Baseline, same broker, same run: a bare paho client (defaults: MQTT 5, 20
messages in flight) publishing the same CloudEvents JSON, one event per
message at QoS 1, until every PUBACK is back. It publishes to a topic
nobody subscribes to, so the broker only receives and acknowledges: the
cheapest per-event path there is, an upper bound for any one-message-per-event
design, while the drain's figure also pays for the hub storing every event.
paho tracks at most 65,535 messages (the 16-bit packet id) and silently
overwrites older ones beyond that, so the baseline keeps at most 10,000
unacknowledged. It runs on a fixed sub-count (one message per event costs
about 0.1 ms, a million would take minutes), half before and half after
the drain, so a noisy neighbour that comes or goes shows in both.

Correctness, checked after the drain: the hub holds exactly seq 1..N of the
store (no gap, no loss; the ``(store, seq)`` key makes a duplicate row
impossible, the hub's duplicate counter says whether anything was sent twice)
and the outbox is empty. Otherwise a failure row and exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from common import (
    script_main,
    HubProcess, Row, check_row, cpu_seconds, durable_tmpdir, failure_row, machine, row, sale_data,
)
from edge_agent import config as agent_config
from edge_agent.bus import EventBus
from edge_agent.store import Store
from edge_agent.store import codec
from edge_agent.store.db import uuid7
from edge_agent.store import outbox as outbox_rows
from edge_agent.store.link_outbox import StoreOutbox, hub_settings
from sync.hub.db import open_db
from sync.link import HubLink, LinkSettings
from sync.localbroker import LocalMosquitto
from sync.topics import encode_event

BENCH = "drain"
STORE_ID = "store-0042"
SOURCE = f"edge/{STORE_ID}"
EVENT_TYPE = "retail.sale.completed"
BASELINE_TOPIC = "bench/baseline/events"   # no subscriber: the broker only PUBACKs
BASELINE_WINDOW = 10_000                   # unacknowledged messages at most (paho's packet ids are 16-bit)
DRAIN_TIMEOUT_S = 600
STOP_TIMEOUT_S = 30

@dataclass(frozen=True)
class Plan:
    """How many events to drain, and how many the baseline publishes (half before, half after)."""

    events: int
    baseline_events: int


DEFAULT = Plan(events=1_000_000, baseline_events=200_000)   # about 1.5 min on 2 cores
QUICK = Plan(events=50_000, baseline_events=50_000)         # about 15 s


def prepare(path: Path, n: int) -> int:
    """An agent store at ``path`` whose outbox holds seq 1..n; returns the bytes of event data."""
    asyncio.run(_migrate(path))
    rng = random.Random(42)
    start = datetime(2024, 11, 11, 8, 0, tzinfo=timezone.utc)
    data_bytes = 0

    def rows():
        nonlocal data_bytes
        for seq in range(1, n + 1):
            data = sale_data(rng, STORE_ID, seq)
            data_bytes += len(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
            at = (start + timedelta(milliseconds=600 * seq)).isoformat()
            # Packed in the outbox row itself: the drain reads it the same way
            # whether it sits there or in the sale's record.
            yield seq, uuid7().bytes, EVENT_TYPE, at, 0, codec.pack(data)

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")    # setting up, not measuring: the outbox is not durable yet
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO outbox (seq, id, type, time, priority, data) VALUES (?, ?, ?, ?, ?, ?)", rows())
        conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (n,))
        # The run that numbered them: their stream (edge_agent/store/streams.py), as the store writes it.
        conn.execute("INSERT INTO streams (id, base, started_at) VALUES (?, 0, ?)", (str(uuid.uuid4()),
                                                                                   start.isoformat()))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return data_bytes


async def _migrate(path: Path) -> None:
    store = Store(path)
    await store.start()
    await store.stop()


def baseline_payloads(path: Path, count: int) -> list[bytes]:
    """The first ``count`` events of the outbox as CloudEvents JSON, one per message."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT seq, id, type, time, priority, data FROM outbox ORDER BY seq LIMIT ?",
                            (count,)).fetchall()
    finally:
        conn.close()
    return [encode_event(SOURCE, outbox_rows.from_row(r)) for r in rows]


# The baseline: a bare paho client ------------------------------------------------

def bare_paho(port: int, payloads: list[bytes]) -> float:
    """Seconds from the first publish until every PUBACK is back (QoS 1, one event per message)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    window = threading.Semaphore(BASELINE_WINDOW)
    connected, done = threading.Event(), threading.Event()
    acked = 0
    failed: list[str] = []

    def on_publish(_c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        nonlocal acked
        if reason.is_failure:
            failed.append(str(reason))
        acked += 1
        window.release()
        if acked == len(payloads):
            done.set()

    client.on_connect = lambda *_: connected.set()
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("the baseline client could not connect")
        start = time.perf_counter()
        for payload in payloads:
            window.acquire()
            client.publish(BASELINE_TOPIC, payload, qos=1)
        if not done.wait(DRAIN_TIMEOUT_S):
            raise RuntimeError(f"baseline: {acked} of {len(payloads)} PUBACKs after {DRAIN_TIMEOUT_S} s")
        seconds = time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()
    if failed:
        raise RuntimeError(f"baseline: the broker refused {len(failed)} publish(es): {failed[0]}")
    return seconds


# The agent's drain ---------------------------------------------------------------

@dataclass
class Drain:
    """One drain: how long, what the link and the outbox say afterwards, CPU used."""

    seconds: float
    acked: int
    stats: dict[str, int]
    outbox_left: int
    agent_cpu: float     # CPU seconds of this process (store, link, paho) during the drain
    problem: str | None = None


async def _drain(path: Path, broker_url: str, data_dir: Path, n: int, settings: LinkSettings) -> Drain:
    cfg = agent_config.parse(f"store:\n  id: {STORE_ID}\n  name: Bench store\nhub:\n  url: {broker_url}\n",
                             "bench.yaml", {})
    bus = EventBus()
    store = Store(path)
    await store.start()
    link = HubLink(hub_settings(cfg), StoreOutbox(store), bus, "bench", data_dir, settings=settings)
    try:
        cpu0 = time.process_time()
        start = time.perf_counter()
        await link.start()
        deadline = start + DRAIN_TIMEOUT_S
        while link._acked < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    finally:
        # A link that does not stop is a finding, not a reason to hang the benchmark. Seen in about 1
        # run of 30 on Python 3.11: asyncio.wait_for() in HubLink._drain swallows stop()'s cancel.
        stopping = asyncio.create_task(link.stop())
        done, _ = await asyncio.wait({stopping}, timeout=STOP_TIMEOUT_S)
        problem = None
        if not done:
            stuck = [f"{t.get_name()} at {_where(t)}" for t in asyncio.all_tasks()
                     if t.get_name().startswith("hub-") and not t.done()]
            problem = f"HubLink.stop() did not return within {STOP_TIMEOUT_S} s; still running: {', '.join(stuck)}"
            stopping.cancel()
            if link._client is not None:
                link._client.disconnect()
                await asyncio.to_thread(link._client.loop_stop)
    left = await store.read(lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0])
    await asyncio.wait_for(store.stop(), STOP_TIMEOUT_S)
    return Drain(seconds, link._acked, dict(link.stats), left, cpu, problem)


def _where(task: asyncio.Task) -> str:
    """``file:line`` where a task waits."""
    frames = task.get_stack(limit=1)
    return f"{Path(frames[0].f_code.co_filename).name}:{frames[0].f_lineno}" if frames else "?"


def agent_drain(path: Path, broker_url: str, data_dir: Path, n: int,
                settings: LinkSettings = LinkSettings()) -> Drain:
    """Start a fresh Store + HubLink on the prepared outbox; time until the hub acknowledged seq n."""
    return asyncio.run(_drain(path, broker_url, data_dir, n, settings))


# The run ---------------------------------------------------------------------------

def measure(plan: Plan) -> list[Row]:
    """Prepare, baseline (first half), drain, baseline (second half), check; the rows."""
    n = plan.events
    where = machine()
    with durable_tmpdir("bench-drain-") as tmp:
        path = tmp / "store.db"
        t = time.perf_counter()
        data_bytes = prepare(path, n)
        prep_s = time.perf_counter() - t
        payloads = baseline_payloads(path, plan.baseline_events)
        half = len(payloads) // 2
        broker = LocalMosquitto(tmp / "mosquitto").start()
        hub = HubProcess(broker.url, f"sqlite:///{tmp / 'hub.db'}", tmp / "hub.log")
        try:
            base1 = bare_paho(broker.port, payloads[:half])
            hub.start()
            hub_cpu0, broker_cpu0 = cpu_seconds(hub.pid), cpu_seconds(broker.proc.pid)
            drain = agent_drain(path, broker.url, tmp, n)
            hub_cpu, broker_cpu = cpu_seconds(hub.pid) - hub_cpu0, cpu_seconds(broker.proc.pid) - broker_cpu0
            hub_stats = hub.stop()
            base2 = bare_paho(broker.port, payloads[half:])
        finally:
            hub.kill()
            broker.stop()
        db = open_db(f"sqlite:///{tmp / 'hub.db'}")
        try:
            stores = {s.store: s for s in db.stores()}
            held = db.event_count()
        finally:
            db.close()

    base_rate = len(payloads) / (base1 + base2)
    rate = n / drain.seconds
    batches = drain.stats["batches_sent"]
    sent = drain.stats["events_sent"]
    s = stores.get(STORE_ID)
    rows = [
        row(BENCH, f"drain {n:,} buffered events to the hub, acked", rate, "events/s",
            "bare paho, 1 event/message QoS 1", base_rate, min_ratio=1.5,
            note=(f"drain {drain.seconds:.1f}s ({sent / max(batches, 1):.0f} events/batch, {batches:,} batches, "
                  f"{drain.stats['resends']} resends); CPU per event: agent {drain.agent_cpu / n * 1e6:.0f} µs, "
                  f"hub {hub_cpu / n * 1e6:.0f} µs, mosquitto {broker_cpu / n * 1e6:.1f} µs; "
                  f"baseline {len(payloads):,} events, {half / base1:,.0f}/s before and "
                  f"{(len(payloads) - half) / base2:,.0f}/s after the drain (no subscriber); "
                  f"{data_bytes / n:.0f}-byte sale data; {where}; prepared in {prep_s:.0f}s")),
        check_row(BENCH, "hub holds seq 1..N of the store", s.contiguous if s else 0, n, "seq",
                  f"contiguous {s.contiguous if s else 0}, events {s.events if s else 0}, "
                  f"open gaps {s.open_gaps if s else '-'}, rows {held:,}; link acked {drain.acked:,}; "
                  f"hub duplicates {hub_stats.get('duplicates', '?')}"),
    ]
    if s is not None and (s.events != n or held != n or s.open_gaps):
        rows.append(check_row(BENCH, "hub rows == N, no open gap", held, n, "events",
                              f"stores.events {s.events}, open gaps {s.open_gaps}"))
    rows.append(check_row(BENCH, "outbox empty after the last ack", drain.outbox_left, 0, "events",
                          "acknowledged events leave the outbox"))
    if drain.problem is not None:
        rows.append(failure_row(BENCH, "the link stops", 0, 1, "", drain.problem))
    return rows


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT))
