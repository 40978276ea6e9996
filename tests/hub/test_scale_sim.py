"""bench/sim_scale.py in small: its checker catches what it must, and a short run with real
workers, a real Mosquitto and real databases keeps every store's order, loses nothing, acks
every store's last seq and keeps worker memory within its bound.

The run is the smallest that still puts one store's consecutive batches on different workers
(3 workers in one shared subscription, several batches of a store in flight while the backlog
drains) and goes through every fault: a worker killed and restarted, stores cut off, every
worker stopped and let go.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import sim_scale  # noqa: E402 - bench/ is not a package; its scripts import `common` by name

SMALL = dataclasses.replace(sim_scale.QUICK, stores=60, workers=3, seconds=12, rate=2.0, pg_rate=1.0,
                            kill_down_s=1, drop_s=2, outage_s=4, resend_after_s=2, finish_s=90)

# What the run must show; figures without a target are the model's inputs, not checked here.
MUST = ("holds seq 1..N in order", "got the ack of its last seq", "worker RSS at most")


def _hub_db(path: Path, per_store: int, stores: int) -> sim_scale.Database:
    """A SQLite hub database as ``edge-hub run`` makes it, filled as a perfect run would leave it."""
    from sync.hub.db import open_db

    open_db(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    with conn:
        for i in range(stores):
            sid = sim_scale.store_id(i)
            conn.executemany(
                "INSERT INTO events (store, stream, seq, id, type, time, event, received_at) "
                "VALUES (?, ?, ?, ?, 'retail.sale.completed', NULL, '{}', ?)",
                [(sid, sim_scale.stream_of(sid), seq, sim_scale.event_id(sid, seq), f"2026-01-01T00:00:{seq:02d}")
                 for seq in range(1, per_store + 1)])
    conn.close()
    db = sim_scale.Database("sqlite", path.parent, "")
    db.path = path
    return db


PHASES = {"all": ("", "9999")}


def test_checker_passes_a_perfect_history(tmp_path: Path) -> None:
    found = sim_scale.check_stored(_hub_db(tmp_path / "hub.db", 5, 3), 3, 5, PHASES)
    assert (found.rows, found.short, found.wrong_position, found.repeated_ids) == (15, [], 0, 0)


@pytest.mark.parametrize("damage, field", [
    ("DELETE FROM events WHERE store = 'sim-00001' AND seq = 3", "short"),
    ("UPDATE events SET id = 'x' || id WHERE store = 'sim-00002' AND seq = 2", "wrong_position"),
    # Two events swapped: each id sits at the other's seq.
    ("UPDATE events SET seq = -4 WHERE store = 'sim-00000' AND seq = 2; "
     "UPDATE events SET seq = 2 WHERE store = 'sim-00000' AND seq = 4; "
     "UPDATE events SET seq = 4 WHERE store = 'sim-00000' AND seq = -4", "wrong_position"),
    ("UPDATE events SET id = (SELECT id FROM events WHERE store = 'sim-00000' AND seq = 1) "
     "WHERE store = 'sim-00000' AND seq = 5", "repeated_ids"),
])
def test_checker_catches_a_lost_moved_or_doubled_event(tmp_path: Path, damage: str, field: str) -> None:
    db = _hub_db(tmp_path / "hub.db", 5, 3)
    conn = sqlite3.connect(db.path)
    conn.executescript(damage)
    conn.close()
    found = sim_scale.check_stored(db, 3, 5, PHASES)
    assert getattr(found, field), found


def test_a_store_missing_altogether_is_short(tmp_path: Path) -> None:
    found = sim_scale.check_stored(_hub_db(tmp_path / "hub.db", 5, 2), 3, 5, PHASES)
    assert found.short == ["sim-00002"]


def _run(tmp_path: Path, kind: str, pg_server: str = "") -> list[sim_scale.Row]:
    run = sim_scale.simulate(SMALL, kind, pg_server, tmp_path)
    rows = sim_scale.rows_for(run)
    checked = [r for r in rows if any(m in r["figure"] for m in MUST)]
    assert len(checked) == len(MUST), [r["figure"] for r in rows]
    failed = [(r["figure"], r["value"], r["baseline_value"], r["note"]) for r in rows
              if r["met"] is False and any(m in r["figure"] for m in MUST + ("FAILED",))
              and "came back at its first start" not in r["figure"]]
    assert not failed, failed
    return rows


def test_small_run_on_sqlite(tmp_path: Path) -> None:
    rows = _run(tmp_path, "sqlite")
    order = next(r for r in rows if "out of order" in r["figure"])
    assert "holes opened" in order["note"]


def test_small_run_on_postgresql(tmp_path: Path, postgres_server) -> None:
    _run(tmp_path, "postgresql", postgres_server.url("postgres"))
