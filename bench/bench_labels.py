"""Shelf labels: a full re-price of 10,000 labels, and 100 new prices among them, through a real agent.

The agent runs as its own process (``edge-agent run``, with its render
worker) linked to a real Mosquitto, with 10,000 labels bound in devices.yaml
(``--quick``: 1,000) on emulated OpenEPaperLink access points
(drivers/shelf_label/ap_emulator.py, real HTTP, in this process): 250 tags
per AP, as the AP's tag list cannot page past 256 tags, so 40
``shelf_label.oepl`` devices with the defaults (4 pushes at once per AP, the
tag list read every 30 s), 2.9" labels (m2-2.9-bwr, with a QR code of the
product page). The catalog has one product per label, imported with
``edge-agent catalog-import``.

Figures, each timed from the moment the catalog change is published on
``hub/{store}/catalog`` (as the hub sends it; the first from the agent's
start) until every label concerned has received its new picture at its AP
(the upload answered "Ok"): the initial fill after start-up (no picture
drawn before, so every QR code is new), the full re-price (every price
changes), and the incremental update (100 prices change). The tags check in
once at the end (the emulator converts the pictures then: the AP's work, not
the store PC's) and the agent's polls confirm them; that is reported in a
note, untimed.

Baseline, same run: Pillow drawing the same labels with no agent around it
(``render()`` of each label's content in a loop, in this process, in the
same order: the initial contents first, so both sides draw the re-price with
the QR codes already known). Target: the full re-price under 60 s on this
machine (2 cores), everything included (the agent, the broker and the
emulated access points share the cores).

Checks: every label got exactly one new picture in the re-price, the 100
changed labels and no other got one in the incremental update, a sample of
labels shows exactly ``render()`` of its expected content, and every label
is compliant at the end (GET /v1/health).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from common import REPO, Row, check_row, cpu_seconds, durable_tmpdir, machine, row, script_main, stopwatch
from drivers.shelf_label.ap_emulator import ApEmulator
from drivers.shelf_label.models import get_model
from drivers.shelf_label.render import LabelContent, render
from edge_agent.catalog import Product
from sync.localbroker import LocalMosquitto, free_port

BENCH = "labels"
STORE = "store-bench"
TOKEN = "bench-console"
TAGS_PER_AP = 250
MODEL = "m2-2.9-bwr"
URL = "https://shop.example.com/p/{sku}"
TZ = "Asia/Shanghai"
TARGET_S = 60.0
SAMPLE = 20


@dataclass(frozen=True)
class Plan:
    """How many labels, and how many prices the incremental update changes."""

    labels: int
    changed: int = 100


DEFAULT = Plan(labels=10_000)
QUICK = Plan(labels=1_000)


def item(i: int, rng: random.Random, version: int, price: Decimal | None = None) -> dict:
    """Catalog item ``i``: a realistic name, price, rating; ``version`` as the hub counts."""
    return {"sku": f"SKU-{i:05d}", "barcodes": [f"69{i:011d}"], "name": f"商品 {i:05d} Organic Product Name {i % 97}",
            "price": str(price or Decimal(rng.randrange(100, 99_900)) / 100), "currency": "CNY",
            "rating": round(rng.uniform(1, 5), 1), "reviews": rng.randrange(5000),
            "stock_online": rng.randrange(200), "stock_store": rng.randrange(50), "version": version}


def mac(i: int) -> str:
    return f"0000BE{i // TAGS_PER_AP:04X}{i % TAGS_PER_AP:06X}"


def content(it: dict) -> LabelContent:
    """What the label of catalog item ``it`` shows (what the agent must push)."""
    product = Product(sku=it["sku"], barcodes=it["barcodes"], name=it["name"], price=Decimal(it["price"]),
                      currency=it["currency"], promo=None, stock_store=it["stock_store"],
                      stock_online=it["stock_online"], rating=it["rating"], reviews=it["reviews"],
                      version=it["version"])
    return LabelContent.from_product(product, at=datetime.now(timezone.utc), url=URL.format(sku=it["sku"]),
                                     tz=ZoneInfo(TZ))


def events(items: list[dict]) -> bytes:
    """A catalog batch as the hub publishes it."""
    return json.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "source": "hub",
                        "type": "retail.catalog.updated", "data": {k: v for k, v in it.items() if k != "stock_store"}}
                       for it in items]).encode()


def config(port: int, broker: str, aps: list[ApEmulator], n: int) -> dict:
    devices = []
    for a, ap in enumerate(aps):
        devices.append({"id": f"ap-{a:02d}", "kind": "shelf_label.oepl", "url": ap.url, "model": MODEL,
                        "url_template": URL,
                        "labels": [{"mac": mac(i), "sku": f"SKU-{i:05d}"}
                                   for i in range(a * TAGS_PER_AP, min(n, (a + 1) * TAGS_PER_AP))]})
    return {"store": {"id": STORE, "name": "Bench", "timezone": TZ, "currency": "CNY"},
            "hub": {"url": broker},
            "api": {"listen": f"127.0.0.1:{port}", "clients": [
                {"name": "console-1", "role": "console", "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}]},
            "devices": devices}


class Uploads:
    """Counts the pictures the emulated APs received since ``mark()``."""

    def __init__(self, aps: list[ApEmulator]):
        self.aps = aps
        self.start = [0] * len(aps)

    def mark(self) -> None:
        self.start = [len(ap.uploads) for ap in self.aps]

    def since(self) -> list[str]:
        out: list[str] = []
        for ap, begin in zip(self.aps, self.start):
            with ap.lock:
                out += [u.mac for u in ap.uploads[begin:]]
        return out

    def wait(self, macs: set[str], timeout: float) -> None:
        """Until every label of ``macs`` got a picture; reads only what arrived since the last look."""
        deadline = time.monotonic() + timeout
        seen = list(self.start)
        missing = set(macs)
        while missing:
            for a, ap in enumerate(self.aps):
                with ap.lock:
                    new = ap.uploads[seen[a]:]
                seen[a] += len(new)
                missing.difference_update(u.mac for u in new)
            if missing and time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} label(s) got no picture within {timeout:g} s")
            if missing:
                time.sleep(0.02)  # polling the emulators' counters, not synchronising a test


def agent_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the agent, and of its children (the render worker)."""
    children = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return cpu_seconds(pid), children


def wait_health(client: httpx.Client, pred, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the agent exited with {proc.returncode}")
        try:
            health = client.get("/v1/health").json()
            if pred(health):
                return health
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not get there within {timeout:g} s")
        time.sleep(0.1)


class Hub:
    """The hub's side of the broker: publishes catalog batches to the store."""

    def __init__(self, port: int):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-hub-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("cannot connect to the bench broker")

    def catalog(self, payload: bytes) -> None:
        """Publish a catalog batch on hub/{store}/catalog (QoS 1) and wait for the broker's ack."""
        self.client.publish(f"hub/{STORE}/catalog", payload, qos=1).wait_for_publish(30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def baseline(contents: list[LabelContent]) -> float:
    """Seconds Pillow takes to draw ``contents`` with nothing around it."""
    model = get_model(MODEL)
    with stopwatch() as elapsed:
        for c in contents:
            render(c, model)
    return elapsed()


def measure(plan: Plan) -> list[Row]:
    where = machine()
    n = plan.labels
    rng = random.Random(42)
    first = [item(i, rng, 1) for i in range(n)]
    repriced = [dict(it, price=str(Decimal(it["price"]) + Decimal("1.00")), version=2) for it in first]
    changed_idx = sorted(rng.sample(range(n), plan.changed))
    third = list(repriced)
    for i in changed_idx:
        third[i] = dict(repriced[i], price=str(Decimal(repriced[i]["price"]) - Decimal("0.10")), version=3)
    base_fill = baseline([content(it) for it in first])
    base_full = baseline([content(it) for it in repriced])
    base_incr = baseline([content(third[i]) for i in changed_idx])

    aps = [ApEmulator() for _ in range((n + TAGS_PER_AP - 1) // TAGS_PER_AP)]
    now = int(time.time())
    for i in range(n):
        aps[i // TAGS_PER_AP].add_tag(mac(i), 0x01, last_seen=now, next_checkin=now + 600)
    uploads = Uploads(aps)
    all_macs = {mac(i) for i in range(n)}
    changed = {mac(i) for i in changed_idx}
    with durable_tmpdir("bench-labels-") as work:
        broker = LocalMosquitto(work / "broker").start()
        for ap in aps:
            ap.start()
        port = free_port()
        (work / "catalog.json").write_text(json.dumps(first))
        (work / "devices.yaml").write_text(yaml.safe_dump(config(port, broker.url, aps, n)))
        subprocess.run([sys.executable, "-m", "edge_agent.cli", "catalog-import", str(work / "catalog.json"),
                        "--data-dir", str(work / "data")], check=True, capture_output=True)
        log = open(work / "agent.log", "wb")
        began = time.perf_counter()
        prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
        proc = subprocess.Popen([sys.executable, *prof, "-m", "edge_agent.cli", "run", "--config",
                                 str(work / "devices.yaml"), "--data-dir", str(work / "data")],
                                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                env={k: v for k, v in os.environ.items() if not k.startswith("EDGE_")})
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=30)
        hub = Hub(broker.port)
        try:
            uploads.wait(all_macs, 600)
            fill = time.perf_counter() - began
            wait_health(client, lambda h: h["hub"] == "online" and h["labels"], proc, 60)

            uploads.mark()
            cpu = *agent_cpu(proc.pid), time.process_time()
            with stopwatch() as full_time:
                hub.catalog(events(repriced))
                uploads.wait(all_macs, 600)
            full = full_time()
            main, worker = agent_cpu(proc.pid)
            cpu_main, cpu_worker, cpu_aps = main - cpu[0], worker - cpu[1], time.process_time() - cpu[2]
            full_pushed = uploads.since()

            uploads.mark()
            with stopwatch() as incr_time:
                hub.catalog(events([third[i] for i in changed_idx]))
                uploads.wait(changed, 120)
            incr = incr_time()
            # Nothing else may follow: the agent has planned every label by the time the last
            # changed one is pushed, so wait for its queues to be empty rather than for time.
            wait_health(client, lambda h: h["labels"]["queued"] == 0, proc, 60)
            incr_pushed = uploads.since()

            # Every tag checks in (the emulator draws what it got), and the agent's polls confirm.
            with stopwatch() as checkin_time:
                for i in range(n):
                    aps[i // TAGS_PER_AP].checkin(mac(i))
            with stopwatch() as confirm_time:
                end = wait_health(client, lambda h: h["labels"]["non_compliant"] == 0, proc, 180)
            sample = rng.sample(range(n), min(SAMPLE, n))
            model = get_model(MODEL)
            right = sum(aps[i // TAGS_PER_AP].shown(mac(i)).convert("RGB").tobytes()
                        == render(content(third[i]), model).convert("RGB").tobytes() for i in sample)
        finally:
            hub.close()
            client.close()
            proc.terminate()
            proc.wait(30)
            log.close()
            for ap in aps:
                ap.stop()
            broker.stop()

    how = (f"{n:,} labels on {len(aps)} emulated APs, 4 pushes per AP, {where}; CPU per label: "
           f"agent {cpu_main / n * 1000:.1f} ms + its render worker {cpu_worker / n * 1000:.1f} ms, "
           f"emulated APs {cpu_aps / n * 1000:.1f} ms")
    return [
        row(BENCH, f"full re-price, {n:,} labels (catalog change to every picture at its AP)", full, "s",
            "Pillow render() of the same labels, no agent", base_full, higher_is_better=False, note=how),
        Row(bench=BENCH, figure=f"full re-price of {n:,} labels within {TARGET_S:g} s", value=full, unit="s",
            baseline="target", baseline_value=TARGET_S, ratio=TARGET_S / full if full else float("inf"),
            target=f"≤{TARGET_S:g} s", met=full <= TARGET_S,
            note=f"{n / full:,.0f} labels/s; {n / base_full:,.0f}/s drawn by Pillow alone"),
        row(BENCH, f"incremental update, {plan.changed} prices among {n:,} labels", incr, "s",
            "Pillow render() of those labels", base_incr, higher_is_better=False,
            note="catalog batch published to the last changed label's picture at its AP"),
        row(BENCH, f"initial fill after start-up, {n:,} labels (every QR code new)", fill, "s",
            "Pillow render() of the same labels, cold", base_fill, higher_is_better=False,
            note="from the agent's process start"),
        check_row(BENCH, "every label got its new picture once in the re-price", len(full_pushed), n, "labels",
                  f"{len(set(full_pushed)):,} distinct"),
        check_row(BENCH, "changed labels that got a picture in the update", len(set(incr_pushed) & changed),
                  plan.changed, "labels", f"{len(incr_pushed)} picture(s) in all"),
        check_row(BENCH, "unchanged labels that got a picture in the update", len(set(incr_pushed) - changed), 0,
                  "labels", "content_hash unchanged: nothing to push"),
        check_row(BENCH, "sampled labels show render() of their content", right, len(sample), "labels",
                  "emulated tag screens, pixel for pixel"),
        check_row(BENCH, "labels not compliant once the tags checked in", end["labels"]["non_compliant"], 0,
                  "labels", f"GET /v1/health; {n:,} tags checked in in {checkin_time():.1f} s (the emulator "
                            f"converting), all confirmed by the agent's polls {confirm_time():.1f} s later"),
    ]


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT))
