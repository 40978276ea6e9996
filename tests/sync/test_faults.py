"""Faults between the agent and the hub, end to end: nothing lost, nothing doubled.

Everything is real: ``edge-agent run`` (support/agent.py), the reference hub
``edge-hub run`` on a SQLite file (support/hubprocess.py), Mosquitto, and for
the network faults a TCP proxy between the agent and the broker
(support/proxy.py). After each fault ``assert_exactly_once`` checks the
promise of CONTRACT section 5: every sale that got its 201 is at the hub
exactly once, in seq order with no gap, and the agent's outbox drains to 0.

Waits are on messages, on the hub's database or on ``/v1/health``, each with
a deadline; nothing sleeps to synchronize.
"""

from __future__ import annotations

import json
import queue
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from support.agent import AgentProcess, config_dict, free_port
from support.hubprocess import HubProcess
from support.proxy import TCPProxy
from support.storepcs import wait_for
from sync.hub.db import HubDB, open_db

STORE = "store-test"
Sale = tuple[str, int]  # (client_sale_id, seq) of a sale that got its 201


# Helpers ---------------------------------------------------------------------

def sale_body(client_sale_id: str | None = None) -> dict:
    return {"client_sale_id": client_sale_id or str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}],
            "payment": {"method": "cash"}}


def post_sale(client: httpx.Client, body: dict) -> Sale:
    """POST one sale; it must get its 201."""
    r = client.post("/v1/sales", json=body)
    assert r.status_code == 201, r.text
    return body["client_sale_id"], r.json()["seq"]


def make_sales(agent: AgentProcess, count: int, threads: int = 32) -> list[Sale]:
    """``count`` sales over HTTP from ``threads`` threads; every one must get its 201."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def one(_: int) -> Sale:
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = agent.client("kiosk", timeout=30)
            with lock:
                clients.append(c)
        return post_sale(c, sale_body())

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for c in clients:
            c.close()


class SalePoster:
    """Threads that keep selling until stopped, so that sales go on through a fault.

    A POST that gets no answer (the agent was killed under it) is kept in
    ``unanswered``: the client does not know whether it happened, and retries
    it with the same ``client_sale_id`` later, as a kiosk would.
    """

    def __init__(self, agent: AgentProcess, threads: int = 4):
        self.agent = agent
        self.sales: list[Sale] = []
        self.unanswered: list[dict] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._stop = threading.Event()
        self._grew = threading.Condition()

    def start(self) -> "SalePoster":
        for t in self._threads:
            t.start()
        return self

    def _run(self) -> None:
        with self.agent.client("kiosk", timeout=30) as c:
            while not self._stop.is_set():
                body = sale_body()
                try:
                    r = c.post("/v1/sales", json=body)
                except httpx.TransportError:
                    with self._grew:
                        self.unanswered.append(body)
                    return  # the agent is gone; its restart is the test's business
                with self._grew:
                    if r.status_code == 201:
                        self.sales.append((body["client_sale_id"], r.json()["seq"]))
                    else:
                        self.errors.append(f"{r.status_code} {r.text}")
                    self._grew.notify_all()

    def count(self) -> int:
        with self._grew:
            return len(self.sales)

    def wait_more(self, more: int, timeout: float = 30.0) -> None:
        """Block until ``more`` further sales got their 201."""
        with self._grew:
            target = len(self.sales) + more
            ok = self._grew.wait_for(lambda: len(self.sales) >= target or self.errors, timeout)
            assert not self.errors, self.errors[:3]
            assert ok, f"only {len(self.sales)} of {target} sales within {timeout} s:\n{self.agent.log()[-3000:]}"

    def stop(self, agent_killed: bool = False) -> None:
        """Stop selling; unless the agent was killed, every POST must have had its answer."""
        self._stop.set()
        for t in self._threads:
            t.join(30)
        assert not self.errors, self.errors[:3]
        assert agent_killed or not self.unanswered, f"{len(self.unanswered)} POSTs got no answer"


def health(agent: AgentProcess) -> dict:
    r = httpx.get(f"{agent.url}/v1/health", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


class Watch:
    """A plain MQTT client on the real broker; ``get`` waits for the next message on a topic."""

    def __init__(self, port: int, *filters: str):
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        # paho leaves Nagle on: a PUBLISH right behind a PUBACK would wait ~40 ms for the broker's delayed ACK.
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if filters:
            self.client.subscribe([(f, 1) for f in filters])
            assert subscribed.wait(5), "no SUBACK"

    def get(self, topic: str, match: Callable[[bytes], bool] = lambda _: True, timeout: float = 15.0) -> bytes:
        """The payload of the next message on ``topic`` for which ``match`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"nothing matching on {topic} within {timeout} s") from None
            if msg.topic == topic and match(msg.payload):
                return msg.payload

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Rig:
    """One store: an agent (directly on the broker, or through a proxy) and the reference hub."""

    def __init__(self, tmp_path: Path, broker: Any, make_agent: Callable[..., AgentProcess], via_proxy: bool):
        self.broker = broker
        self.db_url = f"sqlite:///{tmp_path / 'hub.db'}"
        self.db_path = tmp_path / "hub.db"
        self.hub = HubProcess(broker.url, self.db_url, tmp_path / "hub.log", client_id="hub-1")
        self.proxy = TCPProxy(broker.port).start() if via_proxy else None
        url = self.proxy.url if self.proxy else broker.url
        self.agent = make_agent(config=config_dict(free_port(), [], store_id=STORE, hub_url=url))
        self.agent.import_catalog()
        self._db: HubDB | None = None

    @property
    def db(self) -> HubDB:
        """The hub's database, opened once the hub has created it."""
        if self._db is None:
            self._db = open_db(self.db_url)
        return self._db

    def contiguous(self) -> int:
        """The acknowledged seq of the store's latest stream (the running agent's)."""
        row = self.db.store(STORE)
        return row.contiguous if row else 0

    def held(self) -> int:
        """Events the hub holds for the store, every stream."""
        row = self.db.store(STORE)
        return row.events if row else 0

    def close(self) -> None:
        self.hub.close()
        if self.proxy is not None:
            self.proxy.close()
        if self._db is not None:
            self._db.close()

    def hub_events(self) -> list[tuple[int, str, dict]]:
        """(local seq, event id, data) of every event the hub holds for the store, in the store's order.

        Each run of the agent's database numbers in a stream of its own, from 1; the hub holds the
        streams' chain (each first event names the stream before it and its last seq), so following
        it from the first stream gives back the database's own seq: the stream's base + seq in it.
        """
        streams = {s.stream: s for s in self.db.streams(STORE)}
        first = [s for s in streams.values() if s.prev_stream is None]
        assert len(first) == 1, f"one chain of streams, not {[s.stream for s in first]}"
        order, s = [], first[0]
        while s is not None:
            order.append(s)
            s = streams.get(s.successor) if s.successor else None
        assert len(order) == len(streams), "every stream of the store on the chain"
        out, base = [], 0
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True) as conn:
            for s in order:
                rows = conn.execute("SELECT seq, id, event FROM events WHERE store = ? AND stream = ? ORDER BY seq",
                                    (STORE, s.stream))
                out += [(base + seq, id_, json.loads(event)["data"]) for seq, id_, event in rows]
                base += s.high
        return out

    def wait_exactly_once(self, sales: list[Sale], timeout: float = 60.0) -> None:
        """Wait until the hub holds N events and the outbox is empty, then check each sale is there once."""
        n = len(sales)
        wait_for(f"hub holds {n} events (now {self.held()}) and outbox_depth == 0",
                 lambda: self.held() >= n and health(self.agent)["outbox_depth"] == 0, timeout)
        assert_exactly_once(self, sales)


def assert_exactly_once(rig: Rig, sales: list[Sale]) -> None:
    """Every sale that got its 201 is at the hub once, under its own seq; seq 1..N with no gap and nothing else."""
    n = len(sales)
    by_seq = dict((seq, key) for key, seq in sales)
    assert len(by_seq) == n and sorted(by_seq) == list(range(1, n + 1)), \
        "the agent gave the acknowledged sales seq 1..N, each once"
    row = rig.db.store(STORE)
    assert (row.events, row.open_gaps, row.conflicts, row.identity) == (n, 0, 0, 0), row
    for s in rig.db.streams(STORE):  # each run's stream gapless and acknowledged to its end
        assert s.contiguous == s.high == s.events, s
    assert rig.db.event_count() == n
    held = rig.hub_events()
    assert [seq for seq, _, _ in held] == list(range(1, n + 1)) and len({i for _, i, _ in held}) == n
    keys = Counter(data["client_sale_id"] for _, _, data in held)
    assert not [k for k, c in keys.items() if c > 1], "a sale is at the hub twice"
    assert set(keys) == set(by_seq.values()), "a sale that got its 201 is missing at the hub"
    assert all(data["client_sale_id"] == by_seq[seq] for seq, _, data in held), "a sale under another seq"
    assert health(rig.agent)["outbox_depth"] == 0


@pytest.fixture
def rig(tmp_path: Path, mosquitto, make_agent) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def factory(via_proxy: bool = False) -> Rig:
        made.append(Rig(tmp_path, mosquitto, make_agent, via_proxy))
        return made[-1]

    yield factory
    for r in made:
        r.close()


# The faults --------------------------------------------------------------------

def test_broker_outage_with_sales_going_on_then_restart(rig, mosquitto):
    r = rig()
    r.hub.start()
    r.agent.start()
    sales = make_sales(r.agent, 100)
    poster = SalePoster(r.agent).start()
    try:
        poster.wait_more(20)
        mosquitto.stop()
        wait_for("agent sees the hub offline", lambda: health(r.agent)["hub"] == "offline", 15)
        # Sales go on while the broker is away, across at least one failed reconnect.
        poster.wait_more(100)
        wait_for("a failed reconnect", lambda: health(r.agent).get("hub_error"), 15)
        poster.wait_more(50)
        mosquitto.start()
        wait_for("agent back online", lambda: health(r.agent)["hub"] == "online", 30)
        poster.wait_more(50)
    finally:
        poster.stop()
    r.wait_exactly_once(sales + poster.sales)
    assert r.hub.alive()


def test_hub_sigkilled_twice_while_sales_flow(rig):
    r = rig()
    r.hub.start()
    r.agent.start()
    poster = SalePoster(r.agent).start()
    try:
        for _ in range(2):
            poster.wait_more(100)
            wait_for("the hub ingesting", lambda: r.contiguous() > 0, 15)
            r.hub.kill()  # mid-group: some batches committed, some not yet acknowledged to the broker
            poster.wait_more(200)  # the broker keeps them in the hub's session meanwhile
            r.hub.start()
        poster.wait_more(100)
    finally:
        poster.stop()
    r.wait_exactly_once(poster.sales)


def test_agent_sigkilled_while_publishing_a_backlog(rig):
    n = 5000
    r = rig(via_proxy=True)
    r.hub.start()
    # The agent's link is blackholed from the start: the backlog waits in its outbox.
    r.proxy.pause()
    r.agent.start()
    sales = make_sales(r.agent, n, threads=48)
    h = health(r.agent)
    assert (h["outbox_depth"], h["hub"]) == (n, "offline"), h
    # A slow uplink (about 1 MB/s) stretches the drain over seconds, so the kill lands mid-batch.
    r.proxy.limit_rate(1_000_000)
    r.proxy.resume()
    poster = SalePoster(r.agent).start()  # and checkouts are in flight at the kill too
    try:
        at_kill = wait_for("the hub's first ack", r.contiguous, 60, every=0.005)
        r.agent.kill()
    finally:
        poster.stop(agent_killed=True)
    assert 0 < at_kill < n, at_kill
    r.proxy.limit_rate(None)
    r.agent.start()
    # A kiosk retries what got no answer, with the same key: the sale happens once.
    with r.agent.client("kiosk") as c:
        retried = [post_sale(c, body) for body in poster.unanswered]
        after = [post_sale(c, sale_body()) for _ in range(20)]
    all_sales = sales + poster.sales + retried + after
    # seq is never reused after the kill: the sales after the restart continue the count.
    assert min(seq for _, seq in after) == len(all_sales) - len(after) + 1
    r.wait_exactly_once(all_sales)


def test_connection_cut_mid_publish_several_times(rig):
    n = 3000
    r = rig(via_proxy=True)
    r.hub.start()
    r.proxy.pause()
    # Each of the next three connections is reset once that many bytes went up: in the middle of
    # an MQTT packet, with the batch before it maybe acknowledged and the one after it not.
    r.proxy.cut_after_bytes(150_000, 300_000, 450_000)
    r.agent.start()
    sales = make_sales(r.agent, n, threads=48)
    poster = SalePoster(r.agent).start()
    try:
        r.proxy.resume()
        r.proxy.wait_accepted(4, timeout=60)
        wait_for("the agent back after the cuts", lambda: health(r.agent)["hub"] == "online", 30)
        # And one more cut, from outside, while the drain may still run.
        poster.wait_more(50)
        r.proxy.cut()
        r.proxy.wait_accepted(5, timeout=30)
        poster.wait_more(50)
    finally:
        poster.stop()
    assert r.proxy.cuts >= 4
    r.wait_exactly_once(sales + poster.sales)
    assert "disconnected" in r.agent.log()


def test_a_batch_delivered_twice_is_stored_once_and_acked_the_same(rig, mosquitto):
    r = rig()
    r.hub.start()
    watch = Watch(mosquitto.port, f"edge/{STORE}/events", f"hub/{STORE}/ack")
    try:
        r.agent.start()
        sales = make_sales(r.agent, 300)
        r.wait_exactly_once(sales)
        # Every batch the agent published, as the broker delivered it.
        batches: list[bytes] = []
        seen: set[int] = set()
        while len(seen) < 300:
            payload = watch.get(f"edge/{STORE}/events")
            batches.append(payload)
            seen.update(e["seq"] for e in json.loads(payload))
        while not watch.messages.empty():
            watch.messages.get_nowait()
        # The same batches again, as the store (its credentials may publish only there): all of
        # them in a burst, then the middle one on its own. Each time the hub acknowledges 300 again.
        for payload in batches:
            watch.publish(f"edge/{STORE}/events", payload)
        assert json.loads(watch.get(f"hub/{STORE}/ack"))["seq"] == 300
        middle = batches[len(batches) // 2]
        watch.publish(f"edge/{STORE}/events", middle)
        assert json.loads(watch.get(f"hub/{STORE}/ack"))["seq"] == 300
        assert_exactly_once(r, sales)
        # The link goes on as before.
        more = make_sales(r.agent, 50)
        r.wait_exactly_once(sales + more)
    finally:
        watch.close()
    rc, last = r.hub.stop()
    assert rc == 0
    dups = int(last.split(" duplicates")[0].rsplit(" ", 1)[1])
    assert dups >= 300 + len(json.loads(middle)), last


def test_an_ack_for_a_seq_never_sent_is_ignored_and_real_acks_still_work(rig, mosquitto):
    r = rig()
    r.hub.start()
    r.agent.start()
    sales = make_sales(r.agent, 100)
    r.wait_exactly_once(sales)
    assert r.hub.stop()[0] == 0  # the broker keeps what comes meanwhile in the hub's session
    more = make_sales(r.agent, 50)
    watch = Watch(mosquitto.port, f"edge/{STORE}/cmd/res")
    try:
        watch.publish(f"hub/{STORE}/cmd", json.dumps({"id": "which", "device": "agent", "action": "status"}).encode())
        stream = json.loads(watch.get(f"edge/{STORE}/cmd/res", lambda p: json.loads(p)["id"] == "which"))["result"]
        stream = stream["stream"]
        for bogus in (10**9, 151, 2**64):
            watch.publish(f"hub/{STORE}/ack", json.dumps({"seq": bogus, "stream": stream}).encode())
        # Nor is an ack for another database's stream, or for the legacy stream this one never had.
        watch.publish(f"hub/{STORE}/ack", json.dumps({"seq": 150, "stream": str(uuid.uuid4())}).encode())
        watch.publish(f"hub/{STORE}/ack", json.dumps({"seq": 150}).encode())
        # A command is handled after the acks published before it: its answer shows their effect.
        watch.publish(f"hub/{STORE}/cmd", json.dumps({"id": "probe", "device": "agent", "action": "status"}).encode())
        status = json.loads(watch.get(f"edge/{STORE}/cmd/res", lambda p: json.loads(p)["id"] == "probe"))
    finally:
        watch.close()
    assert (status["result"]["outbox_depth"], status["result"]["acked_seq"]) == (50, 100), status
    assert health(r.agent)["outbox_depth"] == 50
    assert "ack for seq 1000000000 ignored" in r.agent.log()
    r.hub.start()
    r.wait_exactly_once(sales + more)
    last = make_sales(r.agent, 20)
    r.wait_exactly_once(sales + more + last)


def test_a_batch_the_hub_cannot_parse_is_refused_and_holds_nothing_back(rig, mosquitto):
    r = rig()
    r.hub.start()
    r.agent.start()
    sales = make_sales(r.agent, 50)
    r.wait_exactly_once(sales)
    assert r.hub.stop()[0] == 0
    watch = Watch(mosquitto.port)
    try:
        # Valid JSON (RFC 8259 sets no limit on a number's digits), but not a batch: to be refused.
        watch.publish(f"edge/{STORE}/events", b"[" + b"9" * 5000 + b"]")
    finally:
        watch.close()
    more = make_sales(r.agent, 50)  # queued at the broker behind it, for the hub's session
    r.hub.start()
    r.wait_exactly_once(sales + more, timeout=8)  # well before the agent's 30 s resend
    assert r.db.store(STORE).rejected == 1
