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
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO, TypedDict

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

def arguments(description: str) -> argparse.Namespace:
    """The options every benchmark script takes: ``--json`` and ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON (for bench/harness.py)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run; figures are rough")
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


def cpu_count() -> int:
    """CPUs this process may use (for notes: results on 2 cores differ from 8)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
