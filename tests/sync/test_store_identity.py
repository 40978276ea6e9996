"""A store's identity through a replaced PC, a restored backup and two PCs with one store id.

Everything is real: ``edge-agent run`` processes, Mosquitto, and the reference
hub ``edge-hub run`` on SQLite and on PostgreSQL. Each test ends with the
promise of CONTRACT section 5 as extended by streams: every sale that got its
201 is at the hub exactly once, every stream the hub holds is gapless with
nothing open, no conflicting event anywhere, and every agent's outbox empty.
What the hub noticed about the store is checked too (``identity``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.agent import AgentProcess
from support.storepcs import STORE, HubChain, health, sale_body, sell, wait_for

class Poster:
    """A kiosk that keeps selling until stopped; a sale counts once it got its 201."""

    def __init__(self, agent: AgentProcess):
        self.agent, self.sales, self.errors = agent, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Poster":
        self._thread.start()
        return self

    def _run(self) -> None:
        with self.agent.client("kiosk", timeout=30) as c:
            while not self._stop.is_set():
                body = sale_body()
                r = c.post("/v1/sales", json=body)
                if r.status_code == 201:
                    self.sales.append(body["client_sale_id"])
                else:
                    self.errors.append(f"{r.status_code} {r.text}")
                self._stop.wait(0.05)  # a kiosk's pace, not a flood

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(30)
        assert not self.errors, self.errors[:3]
        return self.sales


@pytest.fixture(params=["sqlite", "postgresql"])
def chain(request, tmp_path: Path, mosquitto, make_agent) -> Iterator[HubChain]:
    url = f"sqlite:///{tmp_path / 'hub.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    c = HubChain(tmp_path, mosquitto, url, make_agent, hub_args=("--duplicate-clear", "8"))
    c.hub.start()
    yield c
    c.close()


def backup(agent: AgentProcess, to: Path) -> None:
    """An online backup of the running agent's store, as sqlite3's .backup takes it."""
    src = sqlite3.connect(agent.data_dir / "store.db")
    dst = sqlite3.connect(to)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


def restore(agent: AgentProcess, frm: Path) -> None:
    """Put a backup in place of the (stopped) agent's store; its WAL and shared memory go."""
    db = agent.data_dir / "store.db"
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        extra.unlink(missing_ok=True)
    shutil.copyfile(frm, db)


# The tests ---------------------------------------------------------------------

def test_a_pc_replaced_with_an_empty_disk_mid_day(chain):
    old = chain.agent("old-pc").start()
    before = sell(old, 25)
    wait_for("the old PC's sales at the hub", lambda: chain.drained(old))
    old.kill()  # the PC dies
    new = chain.agent("new-pc").start()  # a new disk: same devices.yaml, empty data dir
    after = sell(new, 25)
    chain.assert_exactly_once(before + after, new)
    streams = [s for s in chain.db.streams(STORE) if s.events]
    assert len(streams) == 2 and [s.events for s in streams] == [25, 25]
    # A new PC is an ordinary event: nothing to alert about.
    assert chain.issues() == []
    assert health(new)["status"] == "ok"


def test_yesterdays_backup_restored_after_a_day_of_sales(chain, tmp_path):
    pc = chain.agent("pc").start()
    morning = sell(pc, 20)
    wait_for("the morning at the hub", lambda: chain.drained(pc))
    # The nightly backup is taken while the hub is away: it holds events the hub will get later.
    chain.hub.stop()
    evening = sell(pc, 10)
    backup(pc, tmp_path / "backup.db")
    chain.hub.start()
    day = sell(pc, 30)
    wait_for("the day at the hub", lambda: chain.drained(pc))
    pc.stop()
    restore(pc, tmp_path / "backup.db")  # as docs/install.md says: agent stopped, WAL and SHM gone
    pc.start()
    after = sell(pc, 15)
    chain.assert_exactly_once(morning + evening + day + after, pc)
    # The hub saw the database go back to the backup, and the store was told its counts lag.
    restored = chain.issues("database_restored")
    assert len(restored) == 1 and "restored from a backup or copied" in restored[0].detail
    # The agent resent what the backup held unacknowledged and learnt from the ack that the hub has
    # more of that stream: its alert says the counts lag, and reaches the hub's console.
    assert "the database was restored from a backup or copied" in pc.log()
    wait_for("the agent's alert at the hub", lambda: chain.db.query(
        "SELECT message FROM device_alerts WHERE store = ? AND code = 'database_behind_hub'", (STORE,)), 30)
    assert chain.issues("stream_conflict") == [] and chain.issues("duplicate_store") == []


def test_two_pcs_with_one_store_id_for_a_minute(chain):
    a = chain.agent("pc-a", trouble_hold=5, takeover_backoff=3).start()
    b = chain.agent("pc-b", trouble_hold=5, takeover_backoff=3).start()
    pa, pb = Poster(a).start(), Poster(b).start()
    started = time.monotonic()
    try:
        # Detected within a minute: at the hub, and on both agents' health.
        wait_for("the hub sees two agents", lambda: chain.issues("duplicate_store"), 60)

        def degraded(agent: AgentProcess) -> bool:
            codes = {r["code"] for r in health(agent)["reasons"]}
            return bool(codes & {"duplicate_store", "mqtt_session_taken_over"})
        wait_for("both agents say so", lambda: degraded(a) and degraded(b), 60)
        assert time.monotonic() - started < 60 + 30  # a generous bound for a loaded machine
        # ... and they keep running side by side for the rest of the minute.
        wait_for("a minute of two agents", lambda: time.monotonic() - started > 60, 90, every=1)
    finally:
        sales_a, sales_b = pa.stop(), pb.stop()
    assert sales_a and sales_b
    # Neither stream is lost: both drain, though they share one MQTT session.
    wait_for("both outboxes drained", lambda: chain.drained(a, b), 120)
    b.stop()
    chain.assert_exactly_once(sales_a + sales_b, a)
    issue = chain.issues("duplicate_store")[0]
    assert STORE in issue.detail and issue.count >= 1
    # The second PC gone, the alert clears at the hub, then on the remaining agent.
    wait_for("the hub clears the duplicate", lambda: not chain.issues("duplicate_store"), 60)
    wait_for("the agent is ok again", lambda: health(a)["status"] == "ok", 60)
    assert chain.issues("stream_conflict") == []


def test_a_dead_pcs_disk_is_drained_beside_its_replacement(chain):
    old = chain.agent("old-pc").start()
    sent = sell(old, 10)
    wait_for("the first sales at the hub", lambda: chain.drained(old))
    chain.hub.stop()  # the hub is away when the PC dies: its last sales are only on its disk
    stranded = sell(old, 15)
    old.kill()
    chain.hub.start()
    new = chain.agent("new-pc").start()
    after = sell(new, 10)
    wait_for("the new PC's sales at the hub", lambda: chain.drained(new))
    # The old disk, mounted on the new PC: its events go out in their own stream, beside the live agent.
    done = subprocess.run([sys.executable, "-m", "edge_agent.cli", "drain", "--config", str(new.config_path),
                           "--data-dir", str(old.data_dir), "--timeout", "120"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "15 event(s) to send" in done.stdout and "every event is at the hub" in done.stdout
    chain.assert_exactly_once(sent + stranded + after, new)
    # The live agent was never disturbed: no takeover, no duplicate, nothing to alert.
    assert chain.issues() == [] and health(new)["status"] == "ok"
    again = subprocess.run([sys.executable, "-m", "edge_agent.cli", "drain", "--config", str(new.config_path),
                            "--data-dir", str(old.data_dir)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to send" in again.stdout
    # The live agent's own directory is refused: it sends its events itself.
    live = subprocess.run([sys.executable, "-m", "edge_agent.cli", "drain", "--config", str(new.config_path),
                           "--data-dir", str(new.data_dir)], capture_output=True, text=True, timeout=60)
    assert live.returncode == 2 and "another process" in live.stderr, live.stderr
