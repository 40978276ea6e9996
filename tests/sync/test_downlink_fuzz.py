"""Random downlink against a running agent, through the real broker: it stays up and answers every command.

``storm`` builds 10,000 payloads from one seeded ``random.Random`` (so a
failure replays exactly): random bytes, random JSON, nesting deeper than any
parser allows, near-valid CloudEvents for every downlink kind with wrong
types and values, huge numbers, odd unicode, and commands that look valid
with random devices, actions and arguments. They go out in bulk at QoS 1 on
``hub/{store}/{ack|catalog|stock|orders|members|cmd}`` and ``hub/all/catalog``.
A Hypothesis test then aims at the command promise with shrinking (every
command payload gets exactly one answer, with its id), and small tests pin
each bug the storm found, so that it stays fixed.
"""

from __future__ import annotations

import json
import queue
import random
import socket
import string
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from support.agent import AgentProcess, config_dict, free_port

STORE = "store-fuzz"
SEED = 20241111
TOTAL = 10_000
# Python refuses to parse an integer literal longer than this (sys.get_int_max_str_digits());
# the storm stays below it, test_a_command_with_a_5000_digit_number_is_answered goes beyond.
MAX_DIGITS = 4000  # json.dumps itself refuses more; test_a_command_with_a_5000_digit_number_is_answered sends a raw one
KINDS = ("ack", "catalog", "stock", "orders", "members", "cmd")
TYPES = {"catalog": "retail.catalog.updated", "stock": "retail.stock.set", "orders": "retail.order.created",
         "members": "retail.member.arrived"}


# The payloads -------------------------------------------------------------------

def _text(rng: random.Random, longest: int = 40) -> str:
    """Unicode of every kind: ASCII, CJK, emoji, controls, NUL, RTL marks, lone surrogates."""
    pools = [string.printable, "店铺收银台会员积分", "😀🛒💳🧾", "\x00\x01\x1b\x7f", "\u202e\u200b\ufeff",
             "\ud800\udfff", "'\";--/*\\"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, longest)))


def _number(rng: random.Random) -> Any:
    return rng.choice([
        0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1,
        int("9" * rng.randint(20, MAX_DIGITS)), -int("7" * rng.randint(20, 400)),
        0.5, -0.0, 1e308, 5e-324, float("nan"), float("inf"), float("-inf"), rng.uniform(-1e9, 1e9),
        rng.randint(-10, 10**6),
    ])


def _value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value; containers get rarer with depth."""
    pick = rng.randrange(8 if depth < 4 else 5)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return _number(rng)
    if pick in (3, 4):
        return _text(rng)
    if pick == 5:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {_text(rng, 8): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _valid_data(rng: random.Random, kind: str) -> dict:
    sku = rng.choice(["TOTE-CANVAS", "LIP-RED-01", "NO-SUCH-SKU", f"FZ-{rng.randint(0, 50)}"])
    if kind == "catalog":
        return {"sku": sku if sku != "TOTE-CANVAS" else "FZ-TOTE", "barcodes": [f"FZ{rng.randint(0, 10**6)}"],
                "name": _text(rng) or "x", "price": f"{rng.randint(0, 9999)}.{rng.randint(0, 99):02d}",
                "currency": "CNY", "version": rng.randint(0, 100), "rating": rng.choice([None, 4.5]),
                "reviews": rng.randint(0, 100), "stock_online": rng.randint(0, 100)}
    if kind == "stock":
        return {"sku": sku, "qty": rng.randint(0, 500)}
    if kind == "orders":
        return {"order_id": f"FZ-O-{rng.randint(0, 10**9)}", "pickup_code": f"{rng.randint(1000, 9999)}",
                "member_id": rng.choice([None, "M-1"]), "lines": [{"sku": sku, "qty": rng.randint(1, 5)}],
                "ready_by": "2024-11-11T12:00:00+08:00"}
    return {"member_id": f"M-{rng.randint(0, 99)}", "tier": rng.choice(["gold", "silver"]),
            "tags": ["vip"], "points": rng.randint(0, 10**6), "interests": [sku]}


def _event(rng: random.Random, kind: str) -> dict:
    return {"specversion": "1.0", "id": str(uuid.UUID(int=rng.getrandbits(128))), "source": "hub",
            "type": TYPES[kind], "time": "2024-11-11T10:00:00+08:00", "datacontenttype": "application/json",
            "data": _valid_data(rng, kind)}


def _mutate(rng: random.Random, obj: dict) -> dict:
    """One to three wrong things: a key gone, a wrong type or value, an extra key, in the event or its data."""
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        target = obj["data"] if isinstance(obj.get("data"), dict) and rng.random() < 0.6 else obj
        keys = list(target)
        how = rng.randrange(5)
        if how == 0 and keys:
            del target[rng.choice(keys)]
        elif how == 1 and keys:
            target[rng.choice(keys)] = _value(rng)
        elif how == 2 and keys:
            long = "x" * (70_000 if rng.random() < 0.1 else 1000)  # over every max_length, now and then by far
            target[rng.choice(keys)] = rng.choice([_number(rng), _text(rng, 300), "", [], {}, None, long])
        elif how == 3:
            target[_text(rng, 10)] = _value(rng)
        else:
            obj["type"] = rng.choice([*TYPES.values(), "retail.member.card", "", _text(rng)])
    return obj


def _deep(rng: random.Random) -> bytes:
    depth = 100_000 if rng.random() < 0.05 else rng.choice([50, 500, 990, 1500, 20_000])
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _command(rng: random.Random, i: int) -> Any:
    args = rng.choice([
        {}, {"level": rng.choice(["info", "warning", "error", "debug", "loud", "", None, 5])},
        {"seq": rng.choice([0, 1, 2, 10**9, -1, 2**64, "3", True, None])}, _value(rng, 3),
        {_text(rng, 8): _value(rng) for _ in range(rng.randint(0, 4))},
    ])
    cmd = {"id": f"fz-{i}", "device": rng.choice(["agent", "heartbeat-1", "printer-1", "", _text(rng, 70)]),
           "action": rng.choice(["status", "set_log_level", "resend_from", "reopen", "test_page", "format_disk",
                                 "", _text(rng, 70)]),
           "args": args}
    for _ in range(rng.choice([0, 0, 1, 2, 3])):  # most look right, the rest have one to three things wrong
        how, key = rng.randrange(4), rng.choice(list(cmd))
        if how == 0:
            del cmd[key]
        elif how == 1:
            cmd[key] = _value(rng)
        elif how == 2:
            cmd[_text(rng, 10)] = _value(rng)
        else:
            cmd["id"] = rng.choice([f"fz-{i}-" + "i" * 200, "", 42, None, ["fz"], _text(rng, 20)])
        if not cmd:
            break
    return cmd


def _payload(rng: random.Random, kind: str, i: int) -> bytes:
    roll = rng.random()
    if roll < 0.10:
        return rng.randbytes(rng.choice([0, 1, 2, 7, 64, 512, 4096]))
    if roll < 0.13:
        return _deep(rng)
    if roll < 0.25:
        return json.dumps(_value(rng)).encode()
    if kind == "cmd":
        return json.dumps(_command(rng, i), ensure_ascii=rng.random() < 0.5).encode(errors="surrogatepass")
    if kind == "ack":
        return json.dumps(rng.choice([{"seq": _number(rng)}, {"seq": rng.randint(0, 50)}, {"seq": "5"},
                                      {"seq": 1, "extra": 1}, {}, [{"seq": 1}]])).encode()
    events = [_event(rng, kind) for _ in range(rng.choice([1, 1, 1, 2, 5, 50]))]
    if roll < 0.35:
        pass  # valid, applied
    else:
        j = rng.randrange(len(events))
        events[j] = _mutate(rng, events[j])
    body: Any = events if len(events) > 1 or rng.random() < 0.5 else events[0]
    if roll > 0.97:
        body = []  # an empty batch
    return json.dumps(body, ensure_ascii=rng.random() < 0.5).encode(errors="surrogatepass")


def storm(seed: int = SEED, total: int = TOTAL) -> list[tuple[str, bytes]]:
    """``total`` (topic, payload) pairs; a command with a known id comes last, as a marker."""
    rng = random.Random(seed)
    out = []
    for i in range(total - 1):
        kind = rng.choices(KINDS, weights=(1, 2, 2, 2, 2, 3))[0]
        topic = "hub/all/catalog" if kind == "catalog" and rng.random() < 0.3 else f"hub/{STORE}/{kind}"
        out.append((topic, _payload(rng, kind, i)))
    out.append((f"hub/{STORE}/cmd", json.dumps({"id": "fz-last", "device": "agent", "action": "status"}).encode()))
    return out


def answer_id(payload: bytes) -> str:
    """The id the answer must carry (CONTRACT section 4): the command's id when it has a string one, else "".

    Compared as the hub reads it back from the answer's JSON: two lone surrogates that the
    command carried as (invalid) UTF-8 come back escaped, and read as one character.
    """
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    if not (isinstance(raw, dict) and isinstance(raw.get("id"), str)):
        return ""
    return json.loads(json.dumps(raw["id"]))


# The harness ---------------------------------------------------------------------

class Downlink:
    """A hub-side client: publishes at QoS 1 in bulk and collects the answers on ``cmd/res`` and events."""

    def __init__(self, port: int):
        self.answers: queue.Queue[dict] = queue.Queue()
        self.events: queue.Queue[list] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        # paho leaves Nagle on: a PUBLISH right behind a PUBACK would wait ~40 ms for the broker's delayed ACK.
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(f"edge/{STORE}/cmd/res", 1), (f"edge/{STORE}/events", 1)])
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/cmd/res"):
            self.answers.put(json.loads(msg.payload))
        else:
            self.events.put(json.loads(msg.payload))

    def publish_all(self, messages: list[tuple[str, bytes]], timeout: float = 60.0) -> None:
        infos = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not take every payload in time"

    def collect_answers(self, count: int, timeout: float) -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                got.append(self.answers.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class HealthWatch:
    """Polls ``/v1/health`` every 100 ms in a thread; keeps every failure."""

    def __init__(self, agent: AgentProcess):
        self.url = f"{agent.url}/v1/health"
        self.polls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=5) as c:
            while not self._stop.wait(0.1):
                try:
                    r = c.get(self.url)
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as err:
                    self.failures.append(repr(err))
                self.polls += 1

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def fuzz_agent(make_agent, mosquitto) -> AgentProcess:
    agent = make_agent(config=config_dict(free_port(), store_id=STORE, hub_url=mosquitto.url))
    agent.import_catalog()
    agent.start()
    with httpx.Client(base_url=agent.url, timeout=10) as c:
        deadline = time.monotonic() + 15
        while c.get("/v1/health").json()["hub"] != "online":
            assert time.monotonic() < deadline, "the agent did not reach the broker"
            time.sleep(0.05)
    return agent


@pytest.fixture
def downlink(mosquitto, fuzz_agent):
    d = Downlink(mosquitto.port)
    yield d
    d.close()


def sell_and_see_it_uplink(agent: AgentProcess, d: Downlink) -> None:
    """A normal sale gets its 201 and its event reaches the broker."""
    key = str(uuid.uuid4())
    with agent.client("kiosk") as c:
        r = c.post("/v1/sales", json={"client_sale_id": key, "lines": [{"code": "TOTE01", "qty": 1}],
                                      "payment": {"method": "cash"}})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    while True:
        try:
            batch = d.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"sale {key} did not reach the broker:\n{agent.log()[-3000:]}") from None
        if any((e.get("data") or {}).get("client_sale_id") == key for e in batch):
            return


# The tests -------------------------------------------------------------------------

def test_ten_thousand_random_downlink_payloads(fuzz_agent, downlink):
    messages = storm()
    assert len(messages) == TOTAL
    expected = Counter(answer_id(p) for t, p in messages if t.endswith("/cmd"))
    started = time.monotonic()
    with HealthWatch(fuzz_agent) as watch:
        downlink.publish_all(messages)
        answers = downlink.collect_answers(sum(expected.values()), timeout=90)
    took = time.monotonic() - started
    print(f"\n{TOTAL} payloads ({sum(expected.values())} commands) handled in {took:.1f} s, "
          f"{watch.polls} health polls")
    assert fuzz_agent.proc.poll() is None, fuzz_agent.log()[-3000:]
    assert not watch.failures, watch.failures[:5]
    assert watch.polls > 0
    assert Counter(a["id"] for a in answers) == expected, \
        f"{len(answers)} answers to {sum(expected.values())} commands"
    assert all(isinstance(a["ok"], bool) and ("result" in a) == a["ok"] for a in answers)
    assert {"id": "fz-last", "ok": True} == {k: answers[-1][k] for k in ("id", "ok")}
    assert downlink.answers.empty(), "more answers than commands"
    assert httpx.get(f"{fuzz_agent.url}/v1/health").status_code == 200
    sell_and_see_it_uplink(fuzz_agent, downlink)


def _command_answers(agent: AgentProcess, d: Downlink, payloads: list[bytes]) -> list[dict]:
    """Publish command payloads, then a marker; the answers that came before the marker's."""
    marker = f"mark-{uuid.uuid4().hex}"
    d.publish_all([(f"hub/{STORE}/cmd", p) for p in payloads]
                  + [(f"hub/{STORE}/cmd", json.dumps({"id": marker, "device": "agent", "action": "status"}).encode())])
    got = []
    while True:
        try:
            a = d.answers.get(timeout=10)
        except queue.Empty:
            raise AssertionError(f"no answer to the marker; agent alive: {agent.proc.poll() is None}") from None
        if a["id"] == marker:
            return got
        got.append(a)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_command_like = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20) | _json, "device": st.sampled_from(["agent", "heartbeat-1"]) | st.text(),
     "action": st.sampled_from(["status", "set_log_level", "resend_from", "reopen"]) | st.text(),
     "args": st.dictionaries(st.sampled_from(["level", "seq"]) | st.text(max_size=5), _json, max_size=3) | _json},
    optional={"extra": _json},
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payloads=st.lists(st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode())
                         | _command_like.map(lambda v: json.dumps(v).encode()), min_size=1, max_size=20))
def test_every_command_payload_gets_exactly_one_answer_with_its_id(fuzz_agent, downlink, payloads):
    answers = _command_answers(fuzz_agent, downlink, payloads)
    assert [a["id"] for a in answers] == [answer_id(p) for p in payloads]
    assert all(a["ok"] in (True, False) for a in answers)


def test_a_command_with_a_5000_digit_number_is_answered(fuzz_agent, downlink):
    payload = b'{"id": "huge", "device": "agent", "action": "status", "args": {"n": ' + b"9" * 5000 + b"}}"
    assert [a["id"] for a in _command_answers(fuzz_agent, downlink, [payload])] == [""]
    assert fuzz_agent.proc.poll() is None


def _alerts_before_marker(d: Downlink, kind: str, payload: bytes) -> list[dict]:
    """Publish ``payload`` then a marker that is surely refused; the bad_downlink alerts raised before the marker's."""
    marker = f"marker-{uuid.uuid4().hex}"
    bad = {"specversion": "1.0", "id": marker, "source": "hub", "type": marker, "data": {}}
    d.publish_all([(f"hub/{STORE}/{kind}", payload), (f"hub/{STORE}/{kind}", json.dumps(bad).encode())])
    got: list[dict] = []
    deadline = time.monotonic() + 15
    while True:
        try:
            batch = d.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no alert for the marker") from None
        for e in batch:
            data = e.get("data") or {}
            if e["type"] != "retail.device.alert" or data.get("code") != "bad_downlink":
                continue
            if marker in data["message"]:
                return got
            got.append(data)


def test_a_member_card_with_a_lone_surrogate_in_its_tags_raises_an_alert(fuzz_agent, downlink):
    card = {"specversion": "1.0", "id": "m-1", "source": "hub", "type": "retail.member.arrived",
            "data": {"member_id": "M-1", "tier": "gold", "points": 1, "tags": ["\udfff"]}}
    alerts = _alerts_before_marker(downlink, "members", json.dumps(card).encode())
    assert [a["topic_kind"] for a in alerts] == ["members"]


def test_a_catalog_item_with_a_version_beyond_sqlite_integer_raises_an_alert(fuzz_agent, downlink):
    item = {"specversion": "1.0", "id": "c-1", "source": "hub", "type": "retail.catalog.updated",
            "data": {"sku": "FZ-BIG", "name": "x", "price": "1.00", "currency": "CNY", "version": 2**64}}
    alerts = _alerts_before_marker(downlink, "catalog", json.dumps(item).encode())
    assert [a["topic_kind"] for a in alerts] == ["catalog"]
    assert fuzz_agent.proc.poll() is None
