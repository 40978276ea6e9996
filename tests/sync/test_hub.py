"""The reference hub against a real Mosquitto: ``edge-hub run`` subprocesses and plain paho stores.

Every wait is on a message (an ack, a readiness line, a command answer) with
a timeout; nothing sleeps to synchronize. A store's messages reach the hub
in the order it published them, so an ack also proves that the status and
health published before the batch are in the database.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sync.hub import cli
from sync.hub.db import open_db
from sync.topics import CommandResult, StoreTopics, decode_json

from support.hubprocess import HubProcess

ROOT = Path(__file__).resolve().parents[2]


def event(store: str, seq: int | None, id_: str | None = None, source: str | None = None) -> dict:
    ev = {"specversion": "1.0", "id": id_ or f"{store}-{seq}", "source": source or f"edge/{store}",
          "type": "retail.sale.completed", "time": "2024-11-11T10:00:00+08:00",
          "datacontenttype": "application/json", "data": {"total": "1.00"}}
    if seq is not None:
        ev["seq"] = seq
    return ev


def batch(store: str, seqs, **kw) -> bytes:
    return json.dumps([event(store, s, **kw) for s in seqs]).encode()


class FakeStore:
    """A store as the hub sees it: publishes uplink, collects acks and answers commands."""

    def __init__(self, port: int, store: str, answer_commands: bool = False):
        self.store = store
        self.topics = StoreTopics(store)
        self.acks: queue.Queue[int] = queue.Queue()
        self.downlink: queue.Queue[tuple[str, dict | list]] = queue.Queue()
        self.answer_commands = answer_commands
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{store}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in self.topics.subscriptions()])
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, client, userdata, msg) -> None:
        body = decode_json(msg.payload)
        kind = self.topics.downlink_kind(msg.topic)
        if kind == "ack":
            self.acks.put(body["seq"])
        elif kind == "cmd" and self.answer_commands:
            ok = body["action"] != "fail"
            res = CommandResult(id=body["id"], ok=ok, result={"echo": body["args"]} if ok else None,
                                error=None if ok else "paper out")
            client.publish(self.topics.cmd_res, res.wire(), qos=1)
        else:
            self.downlink.put((msg.topic, body))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def send(self, seqs, **kw) -> None:
        self.publish(self.topics.events, batch(self.store, seqs, **kw))

    def wait_ack(self, seq: int, timeout: float = 10.0) -> list[int]:
        """Acks received until one says ``seq``; fails on a timeout."""
        seen = []
        while True:
            try:
                seen.append(self.acks.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"{self.store}: no ack {seq} within {timeout} s; got {seen}") from None
            assert seen[-1] <= seq, f"{self.store}: ack {seen[-1]} beyond {seq}"
            if seen[-1] == seq:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def hubs(tmp_path: Path, mosquitto):
    made: list[HubProcess] = []

    def factory(client_id: str = "hub-1", db: str | None = None, group: str = "hub") -> HubProcess:
        hub = HubProcess(mosquitto.url, db or f"sqlite:///{tmp_path}/hub.db", tmp_path / f"hub{len(made)}.log",
                         client_id, group)
        made.append(hub)
        return hub

    yield factory
    for hub in made:
        hub.close()


@pytest.fixture
def stores(mosquitto):
    made: list[FakeStore] = []

    def factory(store: str, **kw) -> FakeStore:
        made.append(FakeStore(mosquitto.port, store, **kw))
        return made[-1]

    yield factory
    for s in made:
        s.close()


def test_events_are_acknowledged_after_commit_deduplicated_and_held_at_gaps(hubs, stores, tmp_path):
    hub = hubs().start()
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    a = stores("store-a")
    a.publish(a.topics.status, json.dumps({"state": "online", "version": "0.1.0",
                                           "since": "2024-11-11T02:00:00+00:00"}).encode(), retain=True)
    a.publish(a.topics.health, json.dumps({"outbox_depth": 3, "devices": {}}).encode(), retain=True)
    a.send([1, 2, 3])
    a.wait_ack(3)
    assert sorted(db.event_ids("store-a")) == [1, 2, 3]
    sh = db.status_health("store-a")
    assert (sh["status"], sh["status_version"], json.loads(sh["health"])["outbox_depth"]) == ("online", "0.1.0", 3)

    # The same batch again (the agent missed the ack): acknowledged again, stored once.
    a.send([1, 2, 3])
    assert a.wait_ack(3) == [3]
    assert db.store("store-a").events == 3

    b = stores("store-b")
    b.send([1, 2])
    b.wait_ack(2)
    b.send([5, 6])
    assert b.wait_ack(2) == [2]  # never past the hole
    assert [(g.first, g.last, g.closed_at) for g in db.gaps("store-b")] == [(3, 4, None)]
    b.send([3, 4])
    b.wait_ack(6)
    assert sorted(db.event_ids("store-b")) == [1, 2, 3, 4, 5, 6]
    assert db.store("store-b").open_gaps == 0

    # Bad payloads: refused whole, logged, the hub stays up and acknowledges the next good batch.
    bad = [b"not json at all", batch("store-a", [4], source="edge/store-b"),
           json.dumps([event("store-a", 4), event("store-a", None, id_="x")]).encode(),
           os.urandom(3 * 1024 * 1024), b"[" + b" " * (5 * 1024 * 1024) + b"]"]
    for payload in bad:
        a.publish(a.topics.events, payload)
    a.publish(a.topics.status, b"{not json", retain=False)
    a.send([4])
    a.wait_ack(4)
    assert hub.alive()
    assert sorted(db.event_ids("store-a")) == [1, 2, 3, 4]
    assert db.event_ids("store-b")[5] == "store-b-5"
    assert db.store("store-a").rejected == 6
    assert {r[0] for r in db.rejected("store-a")} >= {"json", "source", "seq", "size"}

    out = cli.format_stores(db.stores())
    assert out.splitlines()[0].split()[:5] == ["STORE", "STATUS", "SINCE", "STREAMS", "ACKED"]
    # One (legacy) stream, 4 acknowledged, 4 events, no open gap, no conflict, nothing about its identity.
    assert out.splitlines()[1].split()[:9] == ["store-a", "online", "2024-11-11T02:00:00", "1", "4", "4", "0", "0",
                                               "ok"]
    db.close()

    rc, last = hub.stop()
    assert rc == 0, hub.log()
    assert "10 events stored" in last and "6 refused" in last, last
    assert "refused a message on edge/store-a/events" in hub.log()


def test_sigkill_loses_nothing_and_acks_resume(hubs, stores, tmp_path):
    hub = hubs().start()
    a = stores("store-a")
    a.send(range(1, 11))
    a.wait_ack(10)
    # A burst, killed mid-way: some batches committed, some in flight, some not yet delivered.
    for start in range(11, 511, 10):
        a.client.publish(a.topics.events, batch("store-a", range(start, start + 10)), qos=1)
    a.acks.get(timeout=10)
    hub.kill()
    # Published while no hub runs: the broker keeps them in the hub's session.
    for start in range(511, 601, 10):
        a.send(range(start, start + 10))
    hub.start()
    a.wait_ack(600, timeout=15)
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    ids = db.event_ids("store-a")
    assert ids == {s: f"store-a-{s}" for s in range(1, 601)}
    assert (db.store("store-a").contiguous, db.store("store-a").events) == (600, 600)
    db.close()
    assert hub.stop()[0] == 0


def test_the_hub_rides_out_a_broker_restart(mosquitto, tmp_path):
    hub = HubProcess(mosquitto.url, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log", "hub-1")
    a = None
    try:
        hub.start()
        a = FakeStore(mosquitto.port, "store-a")
        a.send([1])
        a.wait_ack(1)
        a.close()
        mosquitto.stop()
        mosquitto.start()
        a = FakeStore(mosquitto.port, "store-a")
        # Mosquitto 2.0.11 restores the hub's session but not its shared subscription
        # from the persistence file: a batch published before the hub has subscribed
        # again may be dropped. The agent resends what stays unacknowledged, as here.
        a.send([2, 3])
        hub.expect_log("subscribed to $share/hub/edge/+/events", timeout=15, count=2)
        a.send([2, 3])
        a.wait_ack(3)
        assert hub.alive()
        assert "lost the broker" in hub.log() and "(session resumed)" in hub.log()
    finally:
        if a is not None:
            a.close()
        hub.close()


def test_two_workers_split_the_stores_and_store_each_event_once(hubs, stores, db_url):
    one, two = hubs("hub-1", db_url).start(), hubs("hub-2", db_url).start()
    fleet = [stores(f"store-{i}") for i in range(5)]
    for n in range(20):
        for s in fleet:
            s.client.publish(s.topics.events, batch(s.store, range(n * 5 + 1, n * 5 + 6)), qos=1)
    for s in fleet:
        s.wait_ack(100, timeout=20)
    stats = [h.stop() for h in (one, two)]
    assert [rc for rc, _ in stats] == [0, 0]
    batches = [int(line.split("; ")[1].split()[0]) for _, line in stats]
    assert all(n > 0 for n in batches), stats  # both workers took a share
    assert sum(batches) == 100, stats
    db = open_db(db_url)
    assert db.event_count() == 500
    assert [(r.store, r.contiguous, r.events, r.open_gaps) for r in db.stores()] == [
        (f"store-{i}", 100, 100, 0) for i in range(5)]
    db.close()


def test_in_process_service_acks_and_reports_a_lasting_gap_once(mosquitto, stores, tmp_path, caplog):
    from sync.hub.service import HubService

    caplog.set_level(logging.INFO, logger="sync.hub")
    svc = HubService(mosquitto.url, f"sqlite:///{tmp_path}/hub.db", client_id="in-process", gap_grace=0.2)
    svc.start()
    try:
        assert svc.wait_ready(10)
        a = stores("store-a")
        a.send([1, 2, 5])
        a.wait_ack(2)
        deadline = time.monotonic() + 10
        while not any("events 3..4 still missing" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no gap warning"
            threading.Event().wait(0.05)
        a.send([3, 4])
        a.wait_ack(5)
        assert (svc.stats.batches, svc.stats.events, svc.stats.acks) == (2, 5, 2)
    finally:
        svc.stop()
    assert sum("still missing" in r.getMessage() for r in caplog.records) == 1


def test_two_workers_with_one_client_id_are_told_apart(hubs):
    # Mosquitto 2.0 drops the older connection without a reason code (brokers that send
    # 142 "session taken over" make the older worker exit 1): both flap, both say why.
    first = hubs("hub-x").start()
    second = hubs("hub-x").start()
    for hub in (first, second):
        hub.expect_log("give every hub worker its own --client-id", timeout=15)


def test_cmd_round_trip_error_and_timeout(hubs, stores, mosquitto, tmp_path, capsys):
    hubs().start()
    stores("store-a", answer_commands=True)
    db_url = f"sqlite:///{tmp_path}/hub.db"
    base = ["cmd", "--broker", mosquitto.url, "--db", db_url, "--store"]
    assert cli.main(base + ["store-a", "--device", "printer-1", "--action", "test_page",
                            "--args", '{"copies": 2}']) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is True and answer["result"] == {"echo": {"copies": 2}}
    db = open_db(db_url)
    row = db.command(answer["id"])
    assert (row["store"], row["device"], row["action"], row["state"]) == ("store-a", "printer-1", "test_page", "ok")

    assert cli.main(base + ["store-a", "--device", "printer-1", "--action", "fail"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert (answer["ok"], answer["error"]) == (False, "paper out")
    assert db.command(answer["id"])["state"] == "error"

    assert cli.main(base + ["store-z", "--device", "printer-1", "--action", "test_page", "--timeout", "0.5"]) == 3
    assert "no answer from store store-z within 0.5 s" in capsys.readouterr().err
    db.close()

    assert cli.main(base + ["store-a", "--device", "p", "--action", "a", "--args", "[1]"]) == 2


def test_publish_catalog_stock_order_member_verdict(stores, mosquitto, tmp_path, capsys):
    a = stores("store-a")
    broker = ["--broker", mosquitto.url]
    catalog = ROOT / "demo" / "catalog.json"
    assert cli.main(["publish", "catalog", str(catalog), "--store", "all", *broker]) == 0
    topic, body = a.downlink.get(timeout=5)
    assert topic == a.topics.all_catalog
    items = json.loads(catalog.read_text())
    assert [e["data"]["sku"] for e in body] == [i["sku"] for i in items]
    assert {e["type"] for e in body} == {"retail.catalog.updated"} and {e["source"] for e in body} == {"hub"}
    assert "stock_store" not in body[0]["data"] and body[0]["data"]["version"] == items[0]["version"]
    assert "stock_store" in capsys.readouterr().err

    assert cli.main(["publish", "stock", "--store", "store-a", "--sku", "LIP-RED-01", "--qty", "7", *broker]) == 0
    topic, body = a.downlink.get(timeout=5)
    assert (topic, body["type"], body["data"]) == (a.topics.downlink["stock"], "retail.stock.set",
                                                   {"sku": "LIP-RED-01", "qty": 7})

    order = {"order_id": "O-1", "pickup_code": "4821", "member_id": "M-1",
             "lines": [{"sku": "LIP-RED-01", "qty": 1}], "ready_by": "2024-11-11T12:00:00+08:00"}
    (tmp_path / "order.json").write_text(json.dumps(order))
    assert cli.main(["publish", "order", str(tmp_path / "order.json"), "--store", "store-a", *broker]) == 0
    topic, body = a.downlink.get(timeout=5)
    assert (topic, body["type"], body["data"]["order_id"]) == (a.topics.downlink["orders"], "retail.order.created", "O-1")

    member = {"member_id": "M-1", "tier": "gold", "points": 120, "interests": ["LIP-RED-01"]}
    (tmp_path / "member.json").write_text(json.dumps(member))
    assert cli.main(["publish", "member", str(tmp_path / "member.json"), "--store", "store-a", *broker]) == 0
    topic, body = a.downlink.get(timeout=5)
    assert (topic, body["type"], body["data"]["tier"]) == (a.topics.downlink["members"], "retail.member.arrived", "gold")

    assert cli.main(["publish", "verdict", "--store", "store-a", "--return-id", "R-9", "--verdict", "rejected",
                     "--reason", "outside 30 days", *broker]) == 0
    topic, body = a.downlink.get(timeout=5)
    assert (topic, body["type"], body["data"]) == (a.topics.downlink["returns"], "retail.return.verdict",
                                                   {"return_id": "R-9", "verdict": "rejected",
                                                    "reason": "outside 30 days"})

    # Bad input is refused before anything is published.
    (tmp_path / "bad.json").write_text(json.dumps({**order, "phone": "555"}))
    assert cli.main(["publish", "order", str(tmp_path / "bad.json"), "--store", "store-a", *broker]) == 2
    assert cli.main(["publish", "stock", "--store", "all", "--sku", "X", "--qty", "1", *broker]) == 2
    assert cli.main(["publish", "stock", "--store", "Bad_Store", "--sku", "X", "--qty", "1", *broker]) == 2
    assert a.downlink.empty()


def test_stores_command_and_unreachable_broker(tmp_path, capsys):
    assert cli.main(["stores", "--db", f"sqlite:///{tmp_path}/empty.db"]) == 0
    assert "no store has reported yet" in capsys.readouterr().out
    from support.agent import free_port

    url = f"mqtt://127.0.0.1:{free_port()}"
    assert cli.main(["publish", "stock", "--store", "store-a", "--sku", "X", "--qty", "1", "--broker", url]) == 1
    assert "cannot reach the broker" in capsys.readouterr().err


def test_a_backlog_waits_in_the_broker_not_in_the_hubs_memory(mosquitto, stores, tmp_path):
    from sync.hub.observe import Observer
    from sync.hub.service import HubService

    class HeldObserver(Observer):
        """Holds the worker after its first commit until the test lets go."""

        def __init__(self) -> None:
            super().__init__()
            self.held, self.release = threading.Event(), threading.Event()

        def committed(self) -> None:
            super().committed()
            if not self.held.is_set():
                self.held.set()
                assert self.release.wait(30)

    observer = HeldObserver()
    svc = HubService(mosquitto.url, f"sqlite:///{tmp_path}/hub.db", client_id="bounded", max_group=5,
                     observer=observer)
    svc.start()
    try:
        assert svc.wait_ready(10)
        assert svc.queue_limit == 10
        a = stores("store-a")
        a.send([1])
        assert observer.held.wait(10), "the first batch was never committed"
        for seq in range(2, 61):  # 59 more batches while the worker is held
            a.publish(a.topics.events, batch("store-a", [seq]))
        # Every publish above has its PUBACK, so Mosquitto (one thread) has handed the hub all it
        # would. The hub takes what its queue holds: the broker stops at the hub's Receive Maximum
        # (the first batch, unacknowledged in the worker, plus 9), and a broker that ignored it
        # would find the queue full. A "no more than" needs a window to watch: half a second.
        deadline = time.monotonic() + 10
        while svc._queue.qsize() < svc.queue_limit - 1:
            assert time.monotonic() < deadline, f"queue at {svc._queue.qsize()}"
            threading.Event().wait(0.02)
        watch_until = time.monotonic() + 0.5
        while time.monotonic() < watch_until:
            assert svc._queue.qsize() <= svc.queue_limit - 1  # never full: the broker holds the rest
            threading.Event().wait(0.01)
        # A broker that ignored Receive Maximum would meet the full queue: its network thread waits.
        extra = [mqtt.MQTTMessage(mid=0, topic=b"edge/store-b/events") for _ in range(2)]
        for seq, msg in enumerate(extra, start=1):
            msg.payload, msg.qos = batch("store-b", [seq]), 0
        pushing = threading.Thread(target=lambda: [svc._on_message(None, None, m) for m in extra], daemon=True)
        pushing.start()
        deadline = time.monotonic() + 10
        while svc._queue.qsize() < svc.queue_limit:
            assert time.monotonic() < deadline, f"queue at {svc._queue.qsize()}"
            threading.Event().wait(0.01)
        pushing.join(0.3)
        assert pushing.is_alive(), "a message went past the full queue"
        observer.release.set()
        pushing.join(10)
        assert not pushing.is_alive()
        a.wait_ack(60)
    finally:
        observer.release.set()
        svc.stop()
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    try:
        assert [(r.store, r.contiguous, r.events, r.open_gaps) for r in db.stores()] == [
            ("store-a", 60, 60, 0), ("store-b", 2, 2, 0)]
    finally:
        db.close()


def test_a_message_the_database_cannot_take_is_quarantined_and_holds_nothing_back(mosquitto, stores, tmp_path,
                                                                                  monkeypatch, caplog):
    """One poison message (here a batch whose insert raises) must not keep the group it came in, nor
    the next ones, from being stored and acknowledged: alone, it is refused and quarantined."""
    from sync.hub.db import Tx
    from sync.hub.service import HubService

    ingest = Tx.ingest

    def picky(self, store, rows):
        if store == "store-bad":
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return ingest(self, store, rows)

    monkeypatch.setattr(Tx, "ingest", picky)
    caplog.set_level(logging.INFO, logger="sync.hub")
    svc = HubService(mosquitto.url, f"sqlite:///{tmp_path}/hub.db", client_id="in-process")
    svc.start()
    try:
        assert svc.wait_ready(10)
        bad, good = stores("store-bad"), stores("store-a")
        bad.send([1])
        good.send([1, 2])
        good.wait_ack(2)
        good.send([3])
        good.wait_ack(3)
        deadline = time.monotonic() + 10
        while not svc.stats.rejected:
            assert time.monotonic() < deadline, "the poison message was not refused"
            threading.Event().wait(0.05)
    finally:
        svc.stop()
    db = open_db(f"sqlite:///{tmp_path}/hub.db")
    try:
        assert db.store("store-a").events == 3
        assert [r[0] for r in db.rejected("store-bad")] == ["error"]
        assert db.event_ids("store-bad") == {}
    finally:
        db.close()
    assert any("quarantined" in r.getMessage() for r in caplog.records)
