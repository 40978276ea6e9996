"""Simulated stores for the console: retained status and health snapshots, as agents publish them.

    python -m sync.hub.console.simulate --broker mqtt://127.0.0.1:1883 --stores 1000 --devices 10

One MQTT client publishes for every store (a thousand agents would be a
thousand connections for nothing): ``edge/{store}/status`` and
``edge/{store}/health``, retained, in the agent's shapes. A seeded share of
the stores has something wrong (a device offline or in error, shelf labels
not compliant, a failed print job, a skewed clock, the store offline), so
the console has something to show. The benchmark (bench/bench_console.py)
and the documentation's screenshots use it; it is no part of the hub.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt

from sync.hub.broker import BrokerURL, make_client, parse_broker_url
from sync.topics import StoreTopics

# Ten devices of a store, by kind: what a mid-size store runs.
KINDS = ("printer.escpos", "printer.escpos", "scanner.serial", "scanner.serial", "scanner.hid", "scanner.hid",
         "shelf_label.oepl", "sensor.heartbeat", "sensor.heartbeat", "scanner.serial")
# What each kind says when it fails, as its driver would.
ERRORS = {
    "printer": {"offline": "connection refused (192.168.1.50:9100)", "error": "paper out"},
    "scanner": {"offline": "/dev/serial/by-id/usb-scanner-if00 is gone (unplugged?)",
                "error": "read failed: [Errno 5] Input/output error"},
    "shelf_label": {"offline": "access point 192.168.1.60 unreachable: connection refused",
                    "error": "access point answered 500 to the tag list"},
    "sensor": {"offline": "connection refused (192.168.1.70:9601)", "error": "no PONG within 2 s"},
}


# The remote actions each family's driver declares, as the snapshot carries them.
ACTIONS = {"printer": ["reopen", "print_test_page"], "shelf_label": ["reopen", "refresh_labels"]}


def store_id(i: int) -> str:
    """``store-0000`` .. ``store-0999``."""
    return f"store-{i:04d}"


def snapshot(store: str, devices: int, rng: random.Random, now: datetime, marker: int = 0,
             trouble: bool = False) -> dict[str, Any]:
    """A health snapshot as sync/link.py builds it, with a trouble spot if asked; ``marker`` is the outbox depth."""
    devs = []
    for k in range(devices):
        kind = KINDS[k % len(KINDS)]
        dev_id = f"{kind.split('.')[0].replace('_', '-')}-{k + 1}"
        since = now - timedelta(seconds=rng.randint(600, 86400))
        devs.append({"id": dev_id, "kind": kind, "state": "online", "since": since.isoformat(), "last_error": None,
                     "counters": {"ops": rng.randint(0, 5000)},
                     "actions": ACTIONS.get(kind.split(".")[0], ["reopen"])})
    snap: dict[str, Any] = {
        "store": store, "version": "0.1.0", "time": now.isoformat(), "devices": devs,
        "outbox_depth": marker, "oldest_unacked_age_s": 0.4 if marker else 0.0, "last_seq": 10_000 + marker,
        "acked_seq": 10_000, "disk_free_bytes": 40 * 2**30, "outbox_bytes": 200_000, "outbox_budget_bytes": 2**30,
        "telemetry_dropped": 0, "over_budget": False, "clock_offset_s": round(rng.uniform(-0.4, 0.4), 3),
        "labels": {"labels": 400, "non_compliant": 0, "oldest_non_compliant_since": None, "alerts": 0,
                   "past_grace": 0, "oldest_past_grace_since": None},
        "printing": {"queued": rng.randint(0, 2), "waiting": 0, "failed": 0},
    }
    if trouble:
        what = rng.choice(("device", "device", "labels", "printing", "clock"))
        if what == "device":
            d = rng.choice(devs)
            d["state"] = rng.choice(("offline", "error"))
            d["since"] = (now - timedelta(seconds=rng.randint(40, 7200))).isoformat()
            d["last_error"] = ERRORS[d["kind"].split(".")[0]][d["state"]]
        elif what == "labels":
            n, since = rng.randint(1, 12), (now - timedelta(minutes=rng.randint(2, 90))).isoformat()
            snap["labels"].update(non_compliant=n, oldest_non_compliant_since=since, past_grace=n,
                                  oldest_past_grace_since=since)
        elif what == "printing":
            snap["printing"].update(waiting=rng.randint(1, 4), failed=1)
        else:
            snap["clock_offset_s"] = round(rng.choice((-1, 1)) * rng.uniform(6, 90), 1)
    snap["reasons"] = _reasons(snap)
    snap["status"] = "degraded" if snap["reasons"] else "ok"
    return snap


def _reasons(snap: dict[str, Any]) -> list[dict[str, Any]]:
    """The reasons edge_agent/health.py would give for this snapshot."""
    out = [{"code": f"device_{d['state']}", "subject": d["id"],
            "message": f"{d['id']} ({d['kind']}) is {d['state']}: {d['last_error']}"}
           for d in snap["devices"] if d["state"] in ("offline", "error")]
    lab, pr = snap["labels"], snap["printing"]
    if lab["past_grace"]:
        out.append({"code": "labels_non_compliant", "subject": "labels",
                    "message": f"{lab['past_grace']} of {lab['labels']} shelf labels show another price than the "
                               "checkout past their grace"})
    if pr["failed"]:
        out.append({"code": "print_jobs_failed", "subject": "printing", "message": f"{pr['failed']} print job failed"})
    return out


class Simulator:
    """Publishes the retained status and health of many stores through one connection."""

    def __init__(self, broker: BrokerURL, stores: int, devices: int = 10, trouble: float = 0.05,
                 offline: float = 0.01, seed: int = 7):
        self.ids = [store_id(i) for i in range(stores)]
        self.devices = devices
        self.rng = random.Random(seed)
        self.troubled = {s for s in self.ids if self.rng.random() < trouble}
        self.offline = {s for s in self.ids if self.rng.random() < offline}
        self._client = make_client(broker, f"console-sim-{uuid.uuid4().hex[:8]}")
        self._connected = threading.Event()
        self._client.on_connect = lambda *a: self._connected.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError(f"cannot connect to {broker}")

    def publish_status(self) -> None:
        """Every store's retained status (online, or offline for the offline share)."""
        now = datetime.now(timezone.utc)
        infos = []
        for s in self.ids:
            state = "offline" if s in self.offline else "online"
            since = (now - timedelta(seconds=self.rng.randint(60, 36000))).isoformat()
            body = {"state": state} if state == "offline" else {"state": state, "version": "0.1.0", "since": since}
            infos.append(self._client.publish(StoreTopics(s).status, json.dumps(body), qos=1, retain=True))
        self._wait(infos)

    def publish_health(self, marker: int = 0, only: list[str] | None = None, trouble: bool = True) -> int:
        """Every store's (or ``only`` these) health snapshot, outbox depth = ``marker``; how many were sent.

        ``trouble=False`` first and then the default gives the troubled stores'
        timelines two states: the devices' times are the same for one marker.
        """
        now = datetime.now(timezone.utc)
        infos = []
        for s in only or self.ids:
            snap = snapshot(s, self.devices, random.Random(f"{s}-{marker}"), now, marker,
                            trouble and s in self.troubled)
            infos.append(self._client.publish(StoreTopics(s).health, json.dumps(snap), qos=1, retain=True))
        self._wait(infos)
        return len(infos)

    @staticmethod
    def _wait(infos: list[mqtt.MQTTMessageInfo]) -> None:
        for info in infos:
            info.wait_for_publish(30)

    def clear(self) -> None:
        """Remove every retained message published (an empty retained payload deletes it)."""
        self._wait([self._client.publish(t, b"", qos=1, retain=True)
                    for s in self.ids for t in (StoreTopics(s).status, StoreTopics(s).health)])

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    """Publish once and exit."""
    ap = argparse.ArgumentParser(prog="python -m sync.hub.console.simulate", description=__doc__.splitlines()[0])
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--stores", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--trouble", type=float, default=0.05, help="share of stores with something wrong")
    ap.add_argument("--clear", action="store_true", help="remove the simulated stores' retained messages")
    args = ap.parse_args(argv)
    sim = Simulator(parse_broker_url(args.broker), args.stores, args.devices, args.trouble)
    try:
        if args.clear:
            sim.clear()
        else:
            sim.publish_status()
            sim.publish_health(trouble=False)
            sim.publish_health()
    finally:
        sim.close()
    print(f"{'cleared' if args.clear else 'published'} {args.stores} store{'' if args.stores == 1 else 's'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
