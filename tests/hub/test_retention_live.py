"""Retention in a running hub: ``edge-hub run --retention-days`` against a real Mosquitto, with its console,
purging on its timer while a store's events keep coming.

Every wait is on a message (an ack) or on a condition polled with a timeout; nothing sleeps to synchronize.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sync.hub import cli, retention
from sync.hub.db import HubDB, PostgresHubDB, open_db
from sync.hub.ingest import parse_batch
from sync.topics import StoreTopics, decode_json

from support.agent import free_port
from support.hubprocess import HubProcess

TOKEN = "retention-test-token"
ROUNDS = 3
OLD_PER_ROUND = 1500


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def event(store: str, seq: int) -> dict:
    return {"specversion": "1.0", "id": f"{store}-{seq}", "source": f"edge/{store}", "type": "retail.sale.completed",
            "time": iso(datetime.now(timezone.utc)), "seq": seq, "data": {"total": "1.00"}}


class Store:
    """A store publishing batches one after another, each sent once its predecessor was acknowledged."""

    def __init__(self, port: int, store: str):
        self.store = store
        self.topics = StoreTopics(store)
        self.acks: queue.Queue[int] = queue.Queue()
        self.acked = 0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"store-{store}", protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, msg: self.acks.put(decode_json(msg.payload)["seq"])
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(self.topics.downlink["ack"], 1)
        assert subscribed.wait(5), "no SUBACK"

    def announce(self) -> None:
        """Status and health, as an agent sends them: the console knows the store from them."""
        now = iso(datetime.now(timezone.utc))
        self.client.publish(self.topics.status, json.dumps({"state": "online", "version": "0.1.0", "since": now}),
                            qos=1, retain=True).wait_for_publish(5)
        health = {"store": self.store, "version": "0.1.0", "time": now, "devices": [], "outbox_depth": 0,
                  "oldest_unacked_age_s": 0, "clock_offset_s": 0.0}
        self.client.publish(self.topics.health, json.dumps(health), qos=1, retain=True).wait_for_publish(5)

    def send_acked(self, first: int, n: int, timeout: float = 30.0) -> None:
        """Publish seqs first..first+n-1 and wait for the ack that covers them."""
        last = first + n - 1
        self.client.publish(self.topics.events, json.dumps([event(self.store, s) for s in range(first, last + 1)]),
                            qos=1).wait_for_publish(5)
        while self.acked < last:
            try:
                seq = self.acks.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no ack {last} within {timeout} s (last {self.acked})") from None
            assert seq <= last, f"ack {seq} beyond {last}"
            self.acked = max(self.acked, seq)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def seed_old(db: HubDB, when: datetime, first: int, n: int, partition: bool = False) -> None:
    """Events of store-old as if the hub had received them at ``when`` (past the policy); with ``partition``,
    in a partition of their day's made in the same transaction (the hub's timer drops it once committed)."""
    body = json.dumps([event("store-old", s) for s in range(first, first + n)]).encode()
    with db.transaction() as tx:
        if partition:
            retention.ensure_partitions(tx, when, ahead=0)
        tx.now = iso(when)
        tx.ingest("store-old", parse_batch("store-old", body))


def held(db: HubDB, store: str) -> list[int]:
    return sorted(int(s) for (s,) in db.query("SELECT seq FROM events WHERE store = ?", (store,)))


def wait_until(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)  # polling interval of a condition, not a synchronization
    return got


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_running_hub_purges_while_it_ingests_and_its_console_answers(dialect, request, tmp_path: Path,
                                                                         mosquitto, capsys):
    url = request.getfixturevalue("postgres_url") if dialect == "postgresql" else f"sqlite:///{tmp_path}/hub.db"
    (tmp_path / "tokens").write_text(f"staff:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    port = free_port()
    hub = HubProcess(mosquitto.url, url, tmp_path / "hub.log")
    hub.args += ["--http", f"127.0.0.1:{port}", "--console-tokens", str(tmp_path / "tokens"),
                 "--retention-days", "7", "--retention-every", "0.1"]
    db = open_db(url)
    hub.start()
    store = Store(mosquitto.port, "store-a")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                       timeout=10)
    sending = threading.Event()
    sending.set()
    sent: list[int] = []
    failed: list[BaseException] = []

    def publish() -> None:
        seq = 1
        try:
            while sending.is_set():
                store.send_acked(seq, 10)
                seq += 10
                sent.append(seq - 1)
        except BaseException as err:  # reported by the test thread
            failed.append(err)

    try:
        store.announce()
        publisher = threading.Thread(target=publish)
        publisher.start()
        now = datetime.now(timezone.utc)
        for r in range(ROUNDS):
            acked_before = len(sent)
            # On PostgreSQL, two rounds in a day's partition (dropped whole), the last in the default one.
            seed_old(db, now - timedelta(days=10 + r), r * OLD_PER_ROUND + 1, OLD_PER_ROUND,
                     partition=isinstance(db, PostgresHubDB) and r < ROUNDS - 1)
            wait_until(f"round {r} purged", lambda: not held(db, "store-old"))
            # The console answers during the purges, from the bounded tables.
            fleet = api.get("/api/fleet")
            assert fleet.status_code == 200 and "store-a" in [s["store"] for s in fleet.json()["stores"]]
            page = api.get("/api/stores/store-a")
            assert page.status_code == 200, page.text
            assert page.json()["identity"]["conflicts"] == 0
            # Ingest went on meanwhile: batches were acknowledged while this round was being purged.
            wait_until("an ack after the purge", lambda: len(sent) > acked_before + 1 or failed)
            assert not failed, failed
        sending.clear()
        publisher.join(60)
        assert not publisher.is_alive() and not failed, failed
    finally:
        sending.clear()
        store.close()
        api.close()
    last = sent[-1]
    rc, line = hub.stop()
    assert rc == 0, hub.log()
    # Every event the store sent is held once, gapless, and acknowledged; store-old's are all gone.
    assert held(db, "store-a") == list(range(1, last + 1))
    row = db.store("store-a")
    assert (row.contiguous, row.events, row.open_gaps) == (last, last, 0)
    assert held(db, "store-old") == [] and db.store("store-old").events == ROUNDS * OLD_PER_ROUND
    assert sum(int(n) for (n,) in db.query("SELECT removed FROM purges")) == ROUNDS * OLD_PER_ROUND
    if isinstance(db, PostgresHubDB):
        dropped = " ".join(p for (p,) in db.query("SELECT partitions FROM purges"))
        assert dropped.count("events_") == ROUNDS - 1
    db.close()
    assert "retention:" in hub.log() and "purged" in hub.log()
    # edge-hub stores counts from the bounded tables: every event ever stored, not only those held.
    assert cli.main(["stores", "--db", url]) == 0
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[1:-1]}
    assert lines["store-a"][4:6] == [str(last), str(last)]
    assert lines["store-old"][5] == str(ROUNDS * OLD_PER_ROUND)
