"""The end of the day: one table of invariants (checks, violations), what the actors did, the faults, the fleet
operations and their outcomes, figures.

``table()`` is what ``make soak`` prints and the 90-second test shows when it
fails; ``write()`` puts the same, with every violation in full, in
``report.json`` in the run dir.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from soak.checks import ROWS, Checks
from soak.ledger import Ledger


def table(checks: Checks, ledger: Ledger, seconds: float, seed: int, setup: list[str] = ()) -> str:
    """The report as text: the rig's settings, the invariant table, the violations, actions, faults and notes."""
    width = max(len(r) for r in ROWS)
    out = [f"Store-day soak: {seconds / 60:.1f} min, seed {seed}", *(f"Rig: {line}" for line in setup), "",
           f"{'invariant':<{width}}  {'checks':>7}  {'violations':>10}", "-" * (width + 21)]
    for row in ROWS:
        out.append(f"{row:<{width}}  {checks.counts[row]:>7}  {len(checks.violated(row)):>10}")
    if checks.violations:
        out += ["", f"Violations ({len(checks.violations)}):"]
        out += ["  " + v.line() for v in checks.violations[:60]]
        if len(checks.violations) > 60:
            out.append(f"  ... {len(checks.violations) - 60} more in violations.jsonl")
    out += ["", "What the actors did:"]
    out += [f"  {n:>6}  {what}" for what, n in sorted(ledger.actions.items())]
    out += ["", "Faults injected and cleared:"]
    out += [f"  {n:>6}  {what}" for what, n in sorted(ledger.faults.items())]
    if ledger.fleet:
        out += ["", "Fleet operations (the hub's versions of devices.yaml) and what came of them:"]
        out += [f"  {line}" for line in ledger.fleet]
    if ledger.figures:
        out += ["", "Figures:"] + [f"  {value:>6}  {what}" for what, value in ledger.figures.items()]
    if checks.notes:
        out += ["", "Notes:"] + ["  " + n.replace("\n", "\n    ") for n in checks.notes[:30]]
    return "\n".join(out)


def write(run_dir: Path, checks: Checks, ledger: Ledger, seconds: float, seed: int, setup: list[str] = ()) -> Path:
    """``report.json``: the rig's settings, the table's rows, every violation, actions, faults, notes."""
    path = run_dir / "report.json"
    path.write_text(json.dumps({
        "seconds": round(seconds, 1), "seed": seed, "rig": list(setup),
        "invariants": [{"invariant": r, "checks": checks.counts[r], "violations": len(checks.violated(r))}
                       for r in ROWS],
        "violations": [asdict(v) for v in checks.violations],
        "actions": dict(ledger.actions), "faults": dict(ledger.faults), "fleet": list(ledger.fleet),
        "figures": dict(ledger.figures),
        "notes": checks.notes,
    }, indent=2, default=str))
    return path
