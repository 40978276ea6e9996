"""Run every ``bench/bench_*.py`` and print one table of their figures.

Each script runs in its own process, one after another (benchmarks running
side by side would measure each other), as ``python bench/bench_x.py --json``
and prints a JSON list of rows (``bench/common.py`` defines the shape).

Exit status: 0 when every script ran, 1 when one crashed, timed out, printed
something that is not a list of rows, or failed its own correctness check.
A missed performance target is shown in the table, not in the exit status.

    .venv/bin/python bench/harness.py [--quick] [--out rows.json] [-k outbox]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, Row, is_check, print_table

HERE = Path(__file__).resolve().parent
FIELDS = set(Row.__annotations__)
GRACE_S = 30  # after a timeout's SIGTERM, before SIGKILL


def discover(pattern: str | None) -> list[Path]:
    """The benchmark scripts, in name order; only those whose name contains ``pattern`` if given."""
    scripts = sorted(HERE.glob("bench_*.py"))
    return [s for s in scripts if pattern is None or pattern in s.stem]


def run_script(script: Path, quick: bool, timeout: float) -> tuple[list[Row], str | None]:
    """Run one script; returns its rows and None, or the rows it managed and why it failed."""
    cmd = [sys.executable, str(script), "--json", *(["--quick"] if quick else [])]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the script stops the brokers and hubs it started and removes its temp dirs.
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        if stderr.strip():
            sys.stderr.write(stderr)
        return [], f"timed out after {timeout:g}s"
    if stderr.strip():
        sys.stderr.write(stderr)
    try:
        rows = json.loads(stdout)
        if not isinstance(rows, list) or not all(isinstance(r, dict) and FIELDS <= r.keys() for r in rows):
            raise ValueError(f"expected a list of rows with the fields {sorted(FIELDS)}")
    except ValueError as err:
        tail = stdout.strip()[-500:]
        return [], f"exit status {proc.returncode}; unreadable output ({err}): {tail!r}"
    if proc.returncode != 0:
        return rows, f"exit status {proc.returncode}"
    return rows, None


def main() -> int:
    """Run the benchmarks, print the table, write ``--out``; 1 if a script failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke runs; figures are rough")
    parser.add_argument("--out", type=Path, help="also write all rows to this JSON file")
    parser.add_argument("-k", dest="pattern", help="only scripts whose name contains this")
    # bench_hub_scale.py takes about 3.5 min on 2 cores; a busy machine needs headroom.
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per script (default 900)")
    args = parser.parse_args()

    scripts = discover(args.pattern)
    if not scripts:
        print(f"no bench_*.py in {HERE} matches", file=sys.stderr)
        return 1
    rows: list[Row] = []
    failures: list[str] = []
    for script in scripts:
        print(f"running {script.name}{' --quick' if args.quick else ''} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        got, failure = run_script(script, args.quick, args.timeout)
        print(f"  {script.name}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
        rows.extend(got)
        if failure is not None:
            failures.append(f"{script.name}: {failure}")

    print_table(rows)
    missed = [r for r in rows if r["met"] is False and not is_check(r)]
    if missed:
        print(f"\n{len(missed)} target(s) missed.")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    if failures:
        print("\nFAILED:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
