"""Staged rollouts of a release: a canary store, then a share, then all; halted and rolled back when updated stores get worse.

``edge-hub rollout start VERSION --base-url URL --manifest-sha256 HEX`` (or
``--releases DIR``, the hub's bundles, where the hashes are read) plans the
waves (``--waves 1,25%,100%``: the canary, then a quarter of the stores, then
all; each a count or a share of the stores, counted from the start), notes
the release each store runs now (what a rollback asks it for), and asks the
first wave for the release on ``hub/{store}/update`` (QoS 1, retained:
``DesiredRelease``). From there the engine (rollout_engine.py, run by every
``edge-hub run``) moves it on, or halts and rolls it back by itself.

``halt`` (an operator's pause, no rollback), ``resume`` and ``rollback`` are
the operator's; every action is kept in ``rollout_actions`` with who did it.
``status`` (rollout_status.py) shows waves and stores. A command sends what it
asked for itself when the broker is there; what it could not send, ``edge-hub
run`` sends.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import math
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from sync.hub.broker import BrokerURL, make_client, parse_broker_url
from sync.hub.db import HubDB, Tx, open_db
from sync.hub.publish import DownlinkError
from sync.hub.fleet.rollout_engine import HALTED, RUNNING, action, ask_wave, pending, roll_back, send_pending
from sync.hub.fleet.rollout_status import format_list, format_view, views
from sync.topics import MAX_MANIFEST_BYTES, VERSION_PATTERN, DesiredRelease, StoreTopics

_OK, _FAIL, _USAGE = 0, 1, 2
MAX_WAVES = 20
MAX_STORES = 100_000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(VERSION_PATTERN)


class RolloutError(ValueError):
    """A rollout that cannot be started or acted on as asked; the message says why and what to do."""


# Plans ----------------------------------------------------------------------------------

def parse_waves(spec: str) -> list[str]:
    """``1,25%,100%`` as a list; each a count of stores or a share of them (cumulative)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts or len(parts) > MAX_WAVES:
        raise RolloutError(f"--waves {spec!r}: give 1 to {MAX_WAVES} waves, e.g. 1,25%,100%")
    for p in parts:
        m = re.fullmatch(r"([0-9]{1,6})(%?)", p)
        if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(1)) > 100):
            raise RolloutError(f"--waves: {p!r} is neither a count of stores (1, 5) nor a share (25%, 100%)")
    return parts


def plan_waves(stores: list[str], canary: str, waves: list[str]) -> list[list[str]]:
    """The stores of each wave: the canary first, then the others by id; each wave's spec says how many
    stores have been asked once it starts; a wave that adds nobody is left out, and the last takes the rest."""
    order = [canary, *sorted(s for s in stores if s != canary)]
    out: list[list[str]] = []
    done = 0
    for spec in waves:
        want = math.ceil(len(order) * int(spec[:-1]) / 100) if spec.endswith("%") else int(spec)
        want = min(max(want, done), len(order))
        if want > done:
            out.append(order[done:want])
            done = want
    if done < len(order):
        out.append(order[done:])
    return out


@dataclass(frozen=True, slots=True)
class Release:
    """A release as a store is asked for it: version, bundle URL, manifest hash."""

    version: str
    base_url: str
    manifest_sha256: str


def manifest_sha256(releases: Path, version: str) -> str | None:
    """The SHA-256 of ``releases/<version>/manifest.json`` (the hub's bundles, edge-hub release build), or None
    when there is no such bundle; RolloutError when it is not a manifest of that version."""
    if not _VERSION.match(version):
        return None  # never a path of anything but a version
    path = releases / version / "manifest.json"
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise RolloutError(f"{path}: {err.strerror or err}") from err
    try:
        said = json.loads(data).get("version") if len(data) <= MAX_MANIFEST_BYTES else None
    except (ValueError, AttributeError):
        said = None
    if said != version:
        raise RolloutError(f"{path} is not the manifest of release {version}; edge-hub release build makes one")
    return hashlib.sha256(data).hexdigest()


def _previous_releases(db: HubDB, version: str, base_url: str, given: dict[str, str],
                       running: Iterable[str], releases: Path | None) -> dict[str, Release]:
    """Every release the hub can ask a store to go back to: those of earlier rollouts, ``given`` (version ->
    manifest hash) and those of ``running`` found in ``releases``; the bundles of the last two next to the
    new one's."""
    known: dict[str, Release] = {}
    for v, url, sha in db.query("SELECT version, base_url, manifest_sha256 FROM rollouts ORDER BY created_at"):
        known[v] = Release(v, url, sha)
    given = dict(given)
    for v in set(running) - set(known) - set(given) - {version}:
        if releases is not None and (sha := manifest_sha256(releases, v)) is not None:
            given[v] = sha
    suffix = f"/{version}/"
    for v, sha in given.items():
        if not base_url.endswith(suffix):
            raise RolloutError(f"--previous-manifest {v}=...: the bundle of {v} is looked for next to {version}'s, "
                               f"but --base-url does not end in {suffix}")
        known[v] = Release(v, base_url[: -len(suffix)] + f"/{v}/", sha)
    return known


def start(db: HubDB, version: str, base_url: str, manifest_sha256: str, *, stores: str = "all",
          canary: str | None = None, waves: str = "1,25%,100%", soak_s: float = 600.0, grace_s: float = 600.0,
          by: str = "edge-hub", previous: dict[str, str] | None = None, releases: Path | None = None) -> str:
    """Plan a rollout and ask its first wave (marked to send); its id. RolloutError when it cannot start.

    A store is asked back, if need be, for the release it runs now: one an
    earlier rollout brought, one in ``previous`` (version -> manifest hash) or
    one whose bundle is in ``releases`` (the hub's directory of bundles).
    """
    try:
        DesiredRelease(version=version, base_url=base_url, manifest_sha256=manifest_sha256, rollout="r", by=by[:128])
    except ValueError as err:
        raise RolloutError(f"the release does not make a valid update message: {err}") from err
    if not (0 <= soak_s <= 7 * 86400) or not (0 < grace_s <= 7 * 86400):
        raise RolloutError("--soak-s is 0 to 604800 seconds and --grace-s 1 to 604800")
    specs = parse_waves(waves)
    known = {r[0]: r[1] for r in db.query("SELECT store, status_version FROM stores")}
    if stores == "all":
        chosen = sorted(s for s, v in known.items() if v)
        if not chosen:
            raise RolloutError("no store has told this hub which version it runs yet; nothing to roll out to")
    else:
        chosen = sorted({s.strip() for s in stores.split(",") if s.strip()})
        if not chosen or len(chosen) > MAX_STORES:
            raise RolloutError("--stores: give all, or store ids separated by commas")
        for s in chosen:
            StoreTopics(s)  # a bad store id stops here
        unknown = [s for s in chosen if not known.get(s)]
        if unknown:
            raise RolloutError(f"no version known for {', '.join(unknown[:10])}: a store must have reported to this "
                               "hub (its status names the version it runs) before a rollout can take it back")
    # A store that runs the version already has nothing to do (and its agent says nothing about it).
    chosen = [s for s in chosen if known[s] != version]
    if not chosen:
        raise RolloutError(f"every store of the rollout runs {version} already")
    canary = canary or chosen[0]
    if canary not in chosen:
        raise RolloutError(f"--canary {canary} is not among the rollout's stores (or runs {version} already)")
    back = _previous_releases(db, version, base_url, previous or {}, {known[s] for s in chosen}, releases)
    lacking = sorted({known[s] for s in chosen if known[s] not in back})
    if lacking:
        raise RolloutError(f"stores run {', '.join(lacking)}, whose bundle this hub never rolled out, so it could not "
                           "ask them back; give --releases DIR holding it, or --previous-manifest VERSION=SHA256 "
                           "(of that version's manifest.json, served next to the new one) for each")
    plan = plan_waves(chosen, canary, specs)
    rid = f"r-{uuid.uuid4().hex[:12]}"
    with db.transaction() as tx:
        busy = tx.execute("SELECT rs.store, r.id FROM rollout_stores rs JOIN rollouts r ON r.id = rs.rollout "
                          "WHERE r.state = ?", (RUNNING,)).fetchall()
        clash = sorted({(s, r) for s, r in busy if s in set(chosen)})
        if clash:
            raise RolloutError(f"{clash[0][0]} is in rollout {clash[0][1]}, still running: halt it first "
                               f"({len(clash)} store(s) in running rollouts)")
        tx.execute("INSERT INTO rollouts (id, version, base_url, manifest_sha256, waves, plan, soak_s, grace_s, state, "
                   "wave, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                   (rid, version, base_url, manifest_sha256, ",".join(specs), json.dumps([len(w) for w in plan]),
                    float(soak_s), float(grace_s), RUNNING, tx.now, by, tx.now))
        for i, wave in enumerate(plan):
            for s in wave:
                prev = back.get(known[s])
                tx.execute("INSERT INTO rollout_stores (rollout, store, wave, previous, previous_base_url, "
                           "previous_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                           (rid, s, i, known[s], prev.base_url if prev else None, prev.manifest_sha256 if prev else None))
        action(tx, rid, by, "start", f"{version} to {len(chosen)} store(s) in {len(plan)} wave(s) "
                f"({', '.join(str(len(w)) for w in plan)}), canary {canary}, soak {soak_s:g} s")
        ask_wave(tx, rid, 0)
    return rid


# The operator's actions --------------------------------------------------------------

def _state(tx: Tx, rid: str) -> tuple[str, str | None]:
    row = tx.execute("SELECT state, rolled_back_at FROM rollouts WHERE id = ?", (rid,)).fetchone()
    if row is None:
        raise RolloutError(f"no rollout {rid}; edge-hub rollout status lists them")
    return row[0], row[1]


def halt(db: HubDB, rid: str, by: str) -> None:
    """Pause a running rollout where it is (no store is asked anything); resume carries on."""
    with db.transaction() as tx:
        state, _ = _state(tx, rid)
        if state != RUNNING:
            raise RolloutError(f"rollout {rid} is {state}, not running")
        tx.execute("UPDATE rollouts SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                   (HALTED, f"halted by {by}", tx.now, rid))
        action(tx, rid, by, "halt", "paused by hand")


def resume(db: HubDB, rid: str, by: str) -> None:
    """Carry on a rollout halted by hand; one that rolled back is over (start a new one)."""
    with db.transaction() as tx:
        state, rolled_back = _state(tx, rid)
        if state != HALTED:
            raise RolloutError(f"rollout {rid} is {state}, not halted")
        if rolled_back:
            raise RolloutError(f"rollout {rid} rolled back its stores; start a new rollout once the release is fixed")
        tx.execute("UPDATE rollouts SET state = ?, reason = NULL, updated_at = ? WHERE id = ?", (RUNNING, tx.now, rid))
        action(tx, rid, by, "resume", "resumed by hand")


def rollback(db: HubDB, rid: str, by: str) -> int:
    """Halt a rollout and ask every store it asked for its previous release; how many."""
    with db.transaction() as tx:
        _state(tx, rid)
        return roll_back(tx, rid, by, f"rolled back by {by}")


# Publishing from the command line -----------------------------------------------------

class _Broker:
    """One connection for the messages a command sends, each waited for (PUBACK)."""

    def __init__(self, broker: BrokerURL, timeout: float = 10.0):
        self.broker, self.timeout = broker, timeout
        self.client = make_client(broker, f"edge-hub-rollout-{uuid.uuid4().hex[:12]}")
        self.ok = False

    def __enter__(self) -> "_Broker":
        connected, refused = threading.Event(), []

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
            if reason_code.is_failure:
                refused.append(str(reason_code))
            connected.set()
        self.client.on_connect = on_connect
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=True)
        except OSError as err:
            raise DownlinkError(f"cannot reach the broker {self.broker}: {err}") from err
        self.client.loop_start()
        self.ok = connected.wait(self.timeout) and not refused
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> bool:
        if not self.ok:
            return False
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(self.timeout)
        return info.is_published()


def _send(db: HubDB, broker_url: str) -> str:
    try:
        with _Broker(parse_broker_url(broker_url)) as b:
            n = send_pending(db, b.publish)
    except DownlinkError as err:
        return f"not sent now ({err}); edge-hub run sends it once the broker is back"
    left = len(pending(db))
    return f"{n} update message(s) sent" + (f", {left} left for edge-hub run to send" if left else "")


# Commands ------------------------------------------------------------------------------

def _previous_opt(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        version, _, sha = v.partition("=")
        if not _VERSION.match(version) or not _HEX64.match(sha):
            raise RolloutError(f"--previous-manifest {v!r}: give VERSION=SHA256, e.g. 0.1.0=<64 hex digits>")
        out[version] = sha
    return out


def _run(args: argparse.Namespace, fn: Callable[[HubDB], str]) -> int:
    db = open_db(args.db)
    try:
        print(fn(db))
    except RolloutError as err:
        print(f"edge-hub: {err}", file=sys.stderr)
        return _FAIL
    finally:
        db.close()
    return _OK


def cmd_start(args: argparse.Namespace) -> int:
    """Plan a rollout and ask its first wave."""
    try:
        previous = _previous_opt(args.previous_manifest or [])
        parse_waves(args.waves)
    except RolloutError as err:
        print(f"edge-hub: {err}", file=sys.stderr)
        return _USAGE

    releases = Path(args.releases) if args.releases else None

    def go(db: HubDB) -> str:
        sha = args.manifest_sha256 or (manifest_sha256(releases, args.version) if releases else None)
        if not sha:
            raise RolloutError(f"no manifest for {args.version}: give --manifest-sha256 HEX, or --releases DIR "
                               f"holding {args.version}/manifest.json")
        rid = start(db, args.version, args.base_url, sha, stores=args.stores, canary=args.canary,
                    waves=args.waves, soak_s=args.soak_s, grace_s=args.grace_s, by=args.by, previous=previous,
                    releases=releases)
        return f"rollout {rid} of {args.version} started; {_send(db, args.broker)}; edge-hub rollout status {rid}"
    return _run(args, go)


def cmd_status(args: argparse.Namespace) -> int:
    """One rollout in full, or every rollout in a line."""
    def show(db: HubDB) -> str:
        vs = views(db, args.id)
        if args.id and not vs:
            raise RolloutError(f"no rollout {args.id}")
        return format_view(vs[0]) if args.id else format_list(vs)
    return _run(args, show)


def cmd_halt(args: argparse.Namespace) -> int:
    """Pause a running rollout."""
    def go(db: HubDB) -> str:
        halt(db, args.id, args.by)
        return f"rollout {args.id} halted; edge-hub rollout resume {args.id} carries on"
    return _run(args, go)


def cmd_resume(args: argparse.Namespace) -> int:
    """Carry on a rollout halted by hand."""
    def go(db: HubDB) -> str:
        resume(db, args.id, args.by)
        return f"rollout {args.id} running again (edge-hub run moves it on)"
    return _run(args, go)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Halt a rollout and ask its stores for their previous release."""
    def go(db: HubDB) -> str:
        n = rollback(db, args.id, args.by)
        return f"rollout {args.id} rolled back: {n} store(s) asked for their previous version; {_send(db, args.broker)}"
    return _run(args, go)


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of rollouts."""
    ro = sub.add_parser("rollout", help="roll a release out in waves: canary, a share, all; halt and roll back")
    verbs = ro.add_subparsers(dest="verb", required=True)
    st = verbs.add_parser("start", help="plan a rollout of VERSION and ask its first wave (the canary)")
    st.add_argument("version", metavar="VERSION")
    st.add_argument("--base-url", required=True, help="where the bundle is, ending in /VERSION/")
    st.add_argument("--manifest-sha256", default=None, metavar="HEX",
                    help="SHA-256 of the bundle's manifest.json (default: read from --releases)")
    st.add_argument("--releases", default=None, metavar="DIR",
                    help="the hub's bundles (edge-hub release build): the manifests' hashes of VERSION and of the "
                         "versions the stores run now are read there")
    st.add_argument("--stores", default="all", help="all (every store that reported a version), or a,b,c")
    st.add_argument("--canary", default=None, metavar="STORE", help="the first wave's store (default: the first by id)")
    st.add_argument("--waves", default="1,25%,100%", help="counts or shares of the stores, cumulative (default 1,25%%,100%%)")
    st.add_argument("--soak-s", type=float, default=600.0, metavar="S",
                    help="how long a wave stays healthy before the next starts (default 600)")
    st.add_argument("--grace-s", type=float, default=600.0, metavar="S",
                    help="an asked store offline longer than this halts the rollout (default 600)")
    st.add_argument("--previous-manifest", action="append", metavar="VERSION=SHA256",
                    help="a version stores run now that no earlier rollout brought: its manifest.json's hash "
                         "(its bundle next to VERSION's); repeatable")
    st.set_defaults(func=cmd_start)
    status = verbs.add_parser("status", help="every rollout, or one: waves, each store's state, version, health")
    status.add_argument("id", metavar="ID", nargs="?", default=None)
    status.set_defaults(func=cmd_status)
    h = verbs.add_parser("halt", help="pause a running rollout where it is")
    h.add_argument("id", metavar="ID")
    h.set_defaults(func=cmd_halt)
    r = verbs.add_parser("resume", help="carry on a rollout halted by hand")
    r.add_argument("id", metavar="ID")
    r.set_defaults(func=cmd_resume)
    rb = verbs.add_parser("rollback", help="halt and ask every store the rollout asked for its previous release")
    rb.add_argument("id", metavar="ID")
    rb.set_defaults(func=cmd_rollback)
    for sp in (st, status, h, r, rb):
        sp.add_argument("--db", default=env_db)
    for sp in (st, h, r, rb):
        sp.add_argument("--by", default=_who(), help="who does it (default: the user running this)")
    for sp in (st, rb):
        broker_opt(sp)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "edge-hub"

