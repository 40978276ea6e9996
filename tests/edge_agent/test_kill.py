"""SIGKILL while 32 writers commit: every acknowledged sale survives, seq stays gapless."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from edge_agent.store import outbox
from support.agent import TOKENS

WRITERS = 32
KILL_AFTER = 400  # acknowledged sales before the kill


def _writer(url: str, token: str, acked: list[tuple[str, int]], lock: threading.Lock,
            enough: threading.Event, stop: threading.Event) -> int:
    """Post sales until the agent dies; record each 201 (client_sale_id, seq)."""
    errors = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        while not stop.is_set():
            key = str(uuid.uuid4())
            body = {"client_sale_id": key, "lines": [{"code": "TOTE01", "qty": 1}],
                    "payment": {"method": "cash"}}
            try:
                r = c.post("/v1/sales", json=body)
            except httpx.TransportError:
                errors += 1
                if errors > 3:
                    return errors  # the agent is gone
                continue
            assert r.status_code == 201, r.text
            with lock:
                acked.append((key, r.json()["seq"]))
                if len(acked) >= KILL_AFTER:
                    enough.set()
    return errors


def test_sigkill_during_32_writers_loses_no_acknowledged_sale(make_agent):
    agent = make_agent()
    agent.import_catalog()
    agent.start()
    acked: list[tuple[str, int]] = []
    lock, enough, stop = threading.Lock(), threading.Event(), threading.Event()

    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(_writer, agent.url, TOKENS["kiosk"], acked, lock, enough, stop)
                   for _ in range(WRITERS)]
        assert enough.wait(60), f"only {len(acked)} sales acknowledged:\n{agent.log()}"
        agent.kill()  # mid-stream: writers are still posting
        stop.set()
        for f in futures:
            f.result()

    with lock:
        acknowledged = dict(acked)
    assert len(acknowledged) >= KILL_AFTER

    # Restart on the same data dir: the store must reopen and keep counting.
    agent.start()
    with agent.client("kiosk") as c:
        r = c.post("/v1/sales", json={"client_sale_id": str(uuid.uuid4()),
                                      "lines": [{"code": "TOTE01", "qty": 1}], "payment": {"method": "cash"}})
        assert r.status_code == 201
        next_seq = r.json()["seq"]
        # A retry of an acknowledged sale after the crash returns the same sale.
        key, seq = next(iter(acknowledged.items()))
        replay = c.post("/v1/sales", json={"client_sale_id": key, "lines": [{"code": "TOTE01", "qty": 1}],
                                           "payment": {"method": "cash"}})
        assert replay.status_code == 201 and replay.json()["seq"] == seq
    assert agent.stop() == 0

    db = sqlite3.connect(agent.data_dir / "store.db")
    seqs = [row[0] for row in db.execute("SELECT seq FROM outbox ORDER BY seq")]
    last_seq = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    stored = {str(uuid.UUID(bytes=key)): seq for key, seq in db.execute("SELECT client_sale_id, seq FROM sales")}
    # The events as the link reads them, their data from each sale's row.
    event_keys = {e.data["client_sale_id"]: e.seq for e in outbox.pending(db, 0, 1_000_000)
                  if e.type == "retail.sale.completed"}
    db.close()

    assert seqs == list(range(1, len(seqs) + 1)), "outbox seq has gaps or does not start at 1"
    assert last_seq == seqs[-1] == next_seq
    for key, seq in acknowledged.items():
        assert stored.get(key) == seq, f"acknowledged sale {key} (seq {seq}) lost or renumbered"
        assert event_keys.get(key) == seq, f"outbox event of sale {key} missing"
    assert len(event_keys) == len(stored) == len(seqs)  # one event per sale, no duplicates
