"""Durable outbox writes per second: the agent's store against raw sqlite3.

Four configurations, each on a fresh database, interleaved round by round so
that a noisy neighbour slows all of them alike:

- agent, 1 writer:   one task awaiting ``store.emit`` in a loop;
- agent, 32 writers: 32 tasks doing the same at once (group commit);
- raw, 1 writer:     a plain sqlite3 connection with the agent's pragmas
  (WAL, synchronous=FULL), BEGIN IMMEDIATE + INSERT + COMMIT per event;
- raw, 32 writers:   32 threads, one connection each, the same per event
  (what a naive app does; SQLite serialises them on its write lock).

Each measurement runs for a fixed time after a short warm-up; the figure is
the median of the rounds. After every agent run the outbox must hold seq
1..N without a gap; if not, a failure row is printed and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import Row, arguments, cpu_count, durable_tmpdir, failure_row, is_check, median, report, row, spread

from edge_agent.store import codec
from edge_agent.store.db import Store, connect
from edge_agent.store.migrations import migrate
from edge_core.bus import utcnow

BENCH = "outbox"
# An event the outbox stores itself (a sale's event lives in its sales row).
EVENT_TYPE = "retail.stock.adjusted"
MANY = 32
POOL = 256          # distinct payloads, cycled through
Payloads = list[dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    """How long to measure: seconds per measurement, warm-up seconds, rounds."""

    seconds: float
    warmup: float
    rounds: int


DEFAULT = Plan(seconds=1.5, warmup=0.25, rounds=3)   # about 30 s on 2 cores
QUICK = Plan(seconds=0.3, warmup=0.05, rounds=1)     # about 3 s; a smoke run


@dataclass
class Run:
    """One measurement: events written in the timed window and how long it took."""

    events: int
    seconds: float
    mean_group: float = 1.0
    largest_group: int = 1
    problem: str | None = None
    total: int = 0      # events written, warm-up included
    found: int = 0      # rows in the outbox afterwards

    @property
    def rate(self) -> float:
        """Events per second in the timed window."""
        return self.events / self.seconds


def sale_event(i: int) -> dict[str, Any]:
    """A small sale event shaped like ``edge_agent.sales.record`` emits (about 360 bytes of JSON)."""
    return {
        "sale_id": str(uuid.uuid4()),
        "client_sale_id": f"pos-1-{i:08d}",
        "store": "store-0042",
        "client": "pos-1",
        "lines": [
            {"sku": "SKU-100234", "qty": 2, "unit_price": "3.49"},
            {"sku": "SKU-220871", "qty": 1, "unit_price": "12.90"},
        ],
        "total": "19.88",
        "currency": "EUR",
        "member_id": None,
        "points_earned": 0,
        "points_redeemed": 0,
        "payment": {"method": "card", "amount": "19.88"},
    }


# The agent's store -------------------------------------------------------------

async def _emit_until(store: Store, deadline: float, worker: int, payloads: Payloads) -> tuple[int, int]:
    n = seqs = 0
    while time.perf_counter() < deadline:
        event = await store.emit(EVENT_TYPE, payloads[(worker + n) % len(payloads)])
        seqs += event.seq
        n += 1
    return n, seqs


async def _drive(store: Store, writers: int, seconds: float, payloads: Payloads) -> tuple[int, int, float]:
    start = time.perf_counter()
    deadline = start + seconds
    done = await asyncio.gather(*(_emit_until(store, deadline, w, payloads) for w in range(writers)))
    return sum(n for n, _ in done), sum(s for _, s in done), time.perf_counter() - start


async def _agent(path: Path, writers: int, plan: Plan, payloads: Payloads) -> Run:
    store = Store(path)
    await store.start()
    try:
        warm, warm_seqs, _ = await _drive(store, writers, plan.warmup, payloads)
        commits, writes = store.stats.commits, store.stats.writes
        events, seqs, seconds = await _drive(store, writers, plan.seconds, payloads)
        commits, writes = store.stats.commits - commits, store.stats.writes - writes
        largest = store.stats.largest_group
    finally:
        await store.stop()
    total = warm + events
    found, problem = _check_outbox(path, total, warm_seqs + seqs)
    return Run(events, seconds, writes / max(commits, 1), largest, problem, total, found)


def _check_outbox(path: Path, expected: int, seq_sum: int) -> tuple[int, str | None]:
    """Rows found, and None if the outbox holds exactly seq 1..expected and the
    callers were handed those seqs (their sum is 1+2+...+expected), else what is wrong."""
    conn = sqlite3.connect(path)
    try:
        count, lo, hi = conn.execute("SELECT count(*), min(seq), max(seq) FROM outbox").fetchone()
        last_seq = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    finally:
        conn.close()
    if (count, lo, hi, last_seq) != (expected, 1, expected, expected):
        return count, (f"{count} rows, seq {lo}..{hi}, meta.last_seq {last_seq}; "
                       f"expected {expected} rows, seq 1..{expected}")
    if seq_sum != expected * (expected + 1) // 2:
        return count, f"the rows are right but the seqs returned by emit() sum to {seq_sum}, not 1+...+{expected}"
    return count, None


def agent_run(path: Path, writers: int, plan: Plan, payloads: Payloads) -> Run:
    """Emit through the agent's store with ``writers`` concurrent tasks for ``plan.seconds``."""
    return asyncio.run(_agent(path, writers, plan, payloads))


# Raw sqlite3 -------------------------------------------------------------------

_INSERT = "INSERT INTO outbox (id, type, time, priority, data) VALUES (?, ?, ?, 0, ?)"


def _raw_writer(path: Path, gate: threading.Barrier, marks: list[float], windows: list[float],
                counts: list[list[int]], worker: int, payloads: Payloads) -> None:
    # connect() gives the agent's pragmas (WAL, synchronous=FULL, busy timeout);
    # its write connections belong to the thread that opens them.
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        for k, seconds in enumerate(windows):
            gate.wait()                      # every thread starts the window together
            deadline = marks[-1] + seconds
            n = 0
            while time.perf_counter() < deadline:
                # What Tx.emit does per event: id, time, packed JSON, one INSERT.
                data = codec.pack(payloads[(worker + n) % len(payloads)])
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_INSERT, (uuid.uuid4().bytes, EVENT_TYPE, utcnow().isoformat(), data))
                conn.execute("COMMIT")
                n += 1
            counts[k][worker] = n
            gate.wait()                      # the window ends when the last commit has returned
    except threading.BrokenBarrierError:
        return                               # another writer failed and said so
    except BaseException:
        gate.abort()                         # release the others; raw_run reports the failure
        raise
    finally:
        if conn is not None:
            conn.close()


def raw_run(path: Path, writers: int, plan: Plan, payloads: Payloads) -> Run:
    """INSERT + COMMIT per event from ``writers`` threads, one connection each, for ``plan.seconds``."""
    setup = connect(path)
    migrate(setup)
    setup.close()
    windows = [plan.warmup, plan.seconds]
    counts = [[0] * writers for _ in windows]
    marks: list[float] = []
    # The last thread to reach the gate stamps the time before any is released.
    gate = threading.Barrier(writers + 1, action=lambda: marks.append(time.perf_counter()))
    threads = [
        threading.Thread(target=_raw_writer, args=(path, gate, marks, windows, counts, w, payloads), name=f"raw-{w}")
        for w in range(writers)
    ]
    for t in threads:
        t.start()
    try:
        for _ in windows:
            gate.wait()
            gate.wait()
    except threading.BrokenBarrierError:
        pass  # a writer died; join() below and the row count tell
    for t in threads:
        t.join()
    total = sum(map(sum, counts))
    found = _count(path)
    if len(marks) != 4:
        problem = "a writer thread failed (traceback above)"
    elif found != total:
        problem = f"{found} rows, expected {total}"
    else:
        problem = None
    events = sum(counts[1])
    seconds = marks[3] - marks[2] if len(marks) == 4 else float("nan")
    return Run(events, seconds, problem=problem, total=total, found=found)


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()


# The run -----------------------------------------------------------------------

CONFIGS = {
    "agent-1": (agent_run, 1),
    "raw-1": (raw_run, 1),
    f"agent-{MANY}": (agent_run, MANY),
    f"raw-{MANY}": (raw_run, MANY),
}


def measure(plan: Plan) -> dict[str, list[Run]]:
    """Every configuration ``plan.rounds`` times, interleaved, each on a fresh database."""
    runs: dict[str, list[Run]] = {name: [] for name in CONFIGS}
    # Built beforehand so that the figures are the store's, not the caller's.
    payloads = [sale_event(i) for i in range(POOL)]
    with durable_tmpdir("bench-outbox-") as tmp:
        for r in range(plan.rounds):
            for name, (fn, writers) in CONFIGS.items():
                path = tmp / f"{name}-{r}.db"
                runs[name].append(fn(path, writers, plan, payloads))
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
    return runs


def rows_for(runs: dict[str, list[Run]], plan: Plan) -> list[Row]:
    """The three comparison rows, plus a failure row per broken run."""
    rate = {name: median([r.rate for r in rs]) for name, rs in runs.items()}
    how = f"median of {plan.rounds}×{plan.seconds:g}s, {cpu_count()} CPUs"
    many = f"agent-{MANY}"
    groups = runs[many]
    per_round = [a.rate / b.rate for a, b in zip(runs[many], runs["agent-1"])]
    rows = [
        row(BENCH, "agent store, 1 writer", rate["agent-1"], "events/s",
            "raw sqlite3, 1 writer", rate["raw-1"],
            note=f"{how}; agent {spread([r.rate for r in runs['agent-1']])}, "
                 f"raw {spread([r.rate for r in runs['raw-1']])}"),
        row(BENCH, f"agent store, {MANY} writers", rate[many], "events/s",
            f"raw sqlite3, {MANY} threads", rate[f"raw-{MANY}"],
            note=f"{how}; agent {spread([r.rate for r in groups])}, "
                 f"raw {spread([r.rate for r in runs[f'raw-{MANY}']])}; "
                 f"group mean {median([r.mean_group for r in groups]):.1f}, "
                 f"max {max(r.largest_group for r in groups)}"),
        row(BENCH, f"agent store, {MANY} writers", rate[many], "events/s",
            "agent store, 1 writer", rate["agent-1"], min_ratio=5,
            note=f"group commit; ratio per round {spread(per_round)}"),
    ]
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            if r.problem is not None:
                rows.append(failure_row(BENCH, f"{name} round {i + 1}: every event in the outbox",
                                        r.found, r.total, "rows", r.problem))
    return rows


def main() -> int:
    """Measure, print the rows; exit 1 if an outbox check failed."""
    args = arguments(__doc__.splitlines()[0])
    plan = QUICK if args.quick else DEFAULT
    rows = rows_for(measure(plan), plan)
    report(rows, args)
    return 1 if any(is_check(r) and not r["met"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
