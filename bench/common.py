"""What every benchmark shares: the row shape, the table, timing, statistics,
and a scratch directory where fsync really reaches the disk.

A benchmark script builds its rows with ``row()`` and ends with
``report(rows, args)``: with ``--json`` it prints the rows as a JSON list
(what ``bench/harness.py`` reads), otherwise the same table the harness
prints. Every figure stands next to a baseline measured in the same run,
because on a shared machine a ratio is stable and an absolute time is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import queue
import random
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypedDict

REPO = Path(__file__).resolve().parent.parent

# File systems whose fsync does not reach a disk: a durable-write benchmark
# run on one of them measures memory, not durability.
VOLATILE_FS = {"tmpfs", "ramfs", "devtmpfs", "overlay-tmpfs"}

# The target of a correctness check's row (see failure_row).
CHECK = "correct"


class Row(TypedDict):
    """One figure of one benchmark, with its in-run baseline; every script emits this shape."""

    bench: str              # the script's short name, e.g. "outbox"
    figure: str             # what was measured
    value: float
    unit: str               # e.g. "events/s", "ms"
    baseline: str           # what the figure is compared with
    baseline_value: float
    ratio: float            # value / baseline_value (higher_is_better) or the inverse
    target: str | None      # e.g. "≥5x"; None when the figure is only informative
    met: bool | None        # None when there is no target
    note: str | None        # how it was measured, spread, anything needed to read the figure


def row(
    bench: str,
    figure: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    *,
    min_ratio: float | None = None,
    higher_is_better: bool = True,
    note: str | None = None,
) -> Row:
    """Build a row; ``ratio`` is how many times better than the baseline, ``min_ratio`` the target."""
    if higher_is_better:
        ratio = value / baseline_value if baseline_value else math.inf
    else:
        ratio = baseline_value / value if value else math.inf
    met = None if min_ratio is None else ratio >= min_ratio
    target = None if min_ratio is None else f"≥{min_ratio:g}x"
    return Row(
        bench=bench, figure=figure, value=value, unit=unit, baseline=baseline,
        baseline_value=baseline_value, ratio=ratio, target=target, met=met, note=note,
    )


def failure_row(bench: str, figure: str, found: float, expected: float, unit: str, note: str) -> Row:
    """A row for a correctness check that failed; the script must then exit non-zero."""
    return Row(
        bench=bench, figure=f"FAILED: {figure}", value=found, unit=unit, baseline="expected",
        baseline_value=expected, ratio=found / expected if expected else 0.0,
        target=CHECK, met=False, note=note,
    )


def check_row(bench: str, figure: str, found: float, expected: float, unit: str, note: str) -> Row:
    """A correctness check's row: ``correct ✓`` when ``found == expected``, else a failure row."""
    if found != expected:
        return failure_row(bench, figure, found, expected, unit, note)
    return Row(
        bench=bench, figure=figure, value=found, unit=unit, baseline="expected", baseline_value=expected,
        ratio=1.0, target=CHECK, met=True, note=note,
    )


def is_check(r: Row) -> bool:
    """Whether ``r`` reports a correctness check rather than a performance figure."""
    return r["target"] == CHECK


# Statistics and timing -------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """``min..max`` of repeated measurements, for a row's note."""
    return f"{_num(min(values))}..{_num(max(values))}"


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed:``; ``elapsed()`` gives seconds so far, frozen at exit."""
    start = time.perf_counter()
    end: float | None = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


# Payloads -----------------------------------------------------------------------

# The demo catalog's SKUs and prices (demo/catalog.json): what a sale line carries.
DEMO_SKUS = [("LIP-RED-01", "159.00"), ("LIP-NUDE-02", "189.00"), ("GLS-ROUND-BLK", "399.00"),
             ("BLUSH-PEACH", "129.00"), ("SHADOW-BRONZE", "259.00"), ("TOTE-CANVAS", "49.90")]


def sale_data(rng: random.Random, store_id: str, i: int) -> dict[str, Any]:
    """The data of a ``retail.sale.completed`` as ``edge_agent.sales.record`` builds it (about 400 bytes
    of JSON): 1 to 3 lines of the demo catalog, 40 % with a member id."""
    lines = []
    total = 0.0
    for sku, price in rng.sample(DEMO_SKUS, rng.randint(1, 3)):
        qty = rng.choice((1, 1, 1, 2, 3))
        lines.append({"sku": sku, "qty": qty, "unit_price": price})
        total += float(price) * qty
    member = f"M-{rng.randrange(10**8):08d}" if rng.random() < 0.4 else None
    return {
        "sale_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "client_sale_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "store": store_id,
        "client": f"kiosk-{i % 4 + 1}",
        "lines": lines,
        "total": f"{total:.2f}",
        "currency": "CNY",
        "member_id": member,
        "points_earned": int(total) if member else 0,
        "points_redeemed": 0,
        "payment": {"method": rng.choice(("card", "qr", "cash")), "reference": None},
    }


# Where databases go ----------------------------------------------------------

def fs_type(path: Path) -> str:
    """The type of the file system holding ``path``, from /proc/self/mounts ('' if unknown)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    path = path.resolve()
    best, best_type = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        if (path == Path(mount_point) or Path(mount_point) in path.parents) and len(mount_point) > len(best):
            best, best_type = mount_point, fields[2]
    return best_type


@contextmanager
def durable_tmpdir(prefix: str) -> Iterator[Path]:
    """A temporary directory where fsync reaches a disk, removed afterwards.

    The system temp dir if it is on a real disk, else ``.run/bench`` in the
    repository (git-ignored)."""
    base = Path(tempfile.gettempdir())
    if fs_type(base) in VOLATILE_FS:
        base = REPO / ".run" / "bench"
        base.mkdir(parents=True, exist_ok=True)
    if fs_type(base) in VOLATILE_FS:
        raise RuntimeError(f"{base} is on {fs_type(base)}: fsync would not reach a disk")
    with tempfile.TemporaryDirectory(prefix=prefix, dir=base) as name:
        yield Path(name)


# Command line and output -------------------------------------------------------

def arguments(description: str,
              extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The options every benchmark script takes: ``--json``, ``--quick``, and what ``extra`` adds.

    Also turns SIGTERM (what the harness sends on a timeout) into SystemExit,
    so that ``finally`` blocks stop brokers and hubs and remove temp dirs."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (for bench/harness.py)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run; figures are rough")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def report(rows: list[Row], args: argparse.Namespace) -> None:
    """Print the rows as JSON with ``--json``, else as a table."""
    if args.json:
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print_table(rows)


def _num(x: float) -> str:
    if math.isinf(x) or math.isnan(x):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _target(r: Row) -> str:
    if r["target"] is None:
        return ""
    if is_check(r):
        return f"{CHECK} {'✓' if r['met'] else '✗ FAILED'}"
    return f"{r['target']} {'✓' if r['met'] else '✗ MISSED'}"


def print_table(rows: Sequence[Row], file: TextIO | None = None) -> None:
    """One aligned text table of ``rows``; numbers right-aligned, notes last."""
    out = file or sys.stdout
    header = ["bench", "figure", "value", "unit", "baseline", "baseline value", "ratio", "target", "note"]
    body = [
        [
            r["bench"], r["figure"], _num(r["value"]), r["unit"], r["baseline"],
            _num(r["baseline_value"]), f"{_num(r['ratio'])}x", _target(r), r.get("note") or "",
        ]
        for r in rows
    ]
    right = {2, 5, 6}
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    print(fmt(header), file=out)
    print("  ".join("-" * w for w in widths).rstrip(), file=out)
    for line in body:
        print(fmt(line), file=out)
    out.flush()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0.0 if it is gone), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """CPUs and the 1-minute load average, for a note: a busy neighbour shows here."""
    return f"{cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} before the run"


def cpu_count() -> int:
    """CPUs this process may use (for notes: results on 2 cores differ from 8)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Child processes ---------------------------------------------------------------

_HUB_STATS = re.compile(r"(\d+) batches, (\d+) events stored, (\d+) duplicates, (\d+) refused, (\d+) acks")


class HubProcess:
    """``edge-hub run`` as a child process, on its own core like in production; stopped by its PID.

    Ready means subscribed: the hub prints its "connected" line only after
    the broker granted its subscriptions. ``stop()`` returns the counters
    the hub prints when it ends (batches, events, duplicates, refused, acks).
    """

    def __init__(self, broker_url: str, db_url: str, log_path: Path, client_id: str = "bench-hub-1",
                 group: str = "hub"):
        self.args = [sys.executable, "-m", "sync.hub", "run", "--broker", broker_url, "--db", db_url,
                     "--group", group, "--client-id", client_id, "--log-level", "warning"]
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> "HubProcess":
        """Spawn the hub; return once it is connected and subscribed."""
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, args=(self.proc, self._lines), daemon=True).start()
        self._expect("edge-hub: connected", timeout)
        return self

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"no {prefix!r} line from edge-hub within {timeout:g} s:\n{self.log()}") from None
            if line is None:
                raise RuntimeError(f"edge-hub exited ({self.proc.wait() if self.proc else '?'}) before "
                                   f"{prefix!r}:\n{self.log()}")
            if line.startswith(prefix):
                return line

    def pause(self) -> None:
        """SIGSTOP: the hub is down for the broker's purposes, its session and socket stay."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM, wait; the hub's counters (empty if it printed none)."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        self.proc.send_signal(signal.SIGCONT)  # a paused hub cannot handle SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            line = self._expect("edge-hub: stopped", timeout)
            self.proc.wait(10)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.kill()
            return {}
        m = _HUB_STATS.search(line)
        if m is None:
            return {}
        return dict(zip(("batches", "events", "duplicates", "refused", "acks"), map(int, m.groups())))

    def kill(self) -> None:
        """SIGKILL by PID (cleanup after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        """What the hub wrote to stderr (its log, warnings and up)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def agent_tls(directory: Path) -> tuple[dict, ssl.SSLContext]:
    """For an agent on HTTPS: its ``api.tls`` section and a client context that trusts it.

    The same CA and certificate ``make run`` makes (edge_agent/demo_tls.py), for 127.0.0.1
    and localhost, in ``directory``."""
    from edge_agent.demo_tls import ensure_tls
    from edge_core.config_types import HostPort

    made = ensure_tls(directory, HostPort(host="127.0.0.1", port=443))
    section = {"cert_file": str(made.cert), "key_file": str(made.key)}
    return section, ssl.create_default_context(cafile=str(made.ca))


def script_main(doc: str, measure: Any, quick: Any, default: Any, https: bool = False) -> int:
    """A benchmark script's main: measure with the quick or default plan, print the rows,
    exit 1 if a correctness check failed (a missed target is printed, not an error).

    ``https``: the script takes ``--https`` (the agent serves TLS; the plan gets ``https=True``)."""
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--https", action="store_true",
                            help="the agent serves HTTPS (api.tls with a CA made for the run) and the clients trust it")

    args = arguments(doc.splitlines()[0], extra if https else None)
    plan = quick if args.quick else default
    if getattr(args, "https", False):
        plan = dataclasses.replace(plan, https=True)
    rows = measure(plan)
    if getattr(plan, "https", False):
        for r in rows:
            r["figure"] += " (HTTPS)"
    report(rows, args)
    return 1 if any(is_check(r) and not r["met"] for r in rows) else 0


class LoadGenerators:
    """Load-generator processes (spawned: the parent has threads), each with a pipe to the parent.

    Each child runs ``target(job, pipe)``: it sends ``"ready"`` once connected, waits for what the
    parent sends it (a start time, commands), and ends by sending its result.
    """

    def __init__(self, target: Callable[[Any, Any], None], jobs: Sequence[Any]):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for i, job in enumerate(jobs):
            parent, child = ctx.Pipe()
            self.pipes.append(parent)
            self.procs.append(ctx.Process(target=target, args=(job, child), name=f"stores-{i}", daemon=True))

    def start(self, timeout: float = 60.0) -> None:
        """Spawn them and wait until every one said it is ready."""
        for p in self.procs:
            p.start()
        for pipe in self.pipes:
            try:
                msg = pipe.recv() if pipe.poll(timeout) else None
            except EOFError:
                msg = "it exited"
            if msg is None:
                raise RuntimeError("a load generator did not get ready")
            if msg != "ready":
                raise RuntimeError(f"load generator failed: {getattr(msg, 'error', msg)}")

    def send(self, index: int, message: Any) -> None:
        self.pipes[index].send(message)

    def go(self, message: Any) -> None:
        """Send every one ``message`` (a start time)."""
        for pipe in self.pipes:
            pipe.send(message)

    def results(self, timeout: float) -> list[Any]:
        """Each one's result, in order; RuntimeError when one is not there within ``timeout`` s in all."""
        out = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"a load generator did not finish within {timeout:g} s")
            try:
                out.append(pipe.recv())
            except EOFError:
                raise RuntimeError("a load generator exited without a result (its traceback is above)") from None
        return out

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def close(self) -> None:
        for p in self.procs:
            if p.pid is None:
                continue  # never started
            if p.is_alive():
                p.terminate()
            p.join(10)
