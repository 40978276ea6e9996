"""Desired configuration: every store's devices.yaml, versioned at the hub, sent to the store and reported back.

``edge-hub config push STORE FILE [--by NAME]`` stores the file as the
store's next version (``desired_configs``: store, version, sha256, yaml,
created_at, created_by) and publishes it on ``hub/{store}/config``, QoS 1 and
retained, so a store that reconnects gets the latest. The store checks it with
the same engine as ``edge-agent check`` and answers on ``edge/{store}/config/res``
(the hub service records it here with ``record_result``): ``applied``,
``refused`` with its ``FILE:LINE`` errors, ``restart_required`` or
``rolled_back`` with why. ``edge-hub config status [STORE]`` shows each store's
desired version, the version in force, the state, errors, drift (from the
store's health snapshot) and what was rolled back; ``edge-hub config show
STORE [--version N]`` prints a version's YAML. The hub does not check the
YAML itself (it imports nothing of the agent): the store is the judge.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from sync.hub.broker import BrokerURL, make_client, parse_broker_url
from sync.hub.db import HubDB, Tx, now_iso, open_db
from sync.hub.publish import DownlinkError
from sync.topics import MAX_CONFIG_BYTES, ConfigResult, DesiredConfig, config_sha256, hub_topic

_OK, _FAIL, _USAGE = 0, 1, 2


@dataclass
class ConfigStatus:
    """One store's line in ``edge-hub config status``."""

    store: str
    desired: int | None = None          # the newest version pushed
    in_force: int | None = None         # the version the store runs, by its last word
    state: str | None = None            # of the newest version the store answered about
    answered: int | None = None         # that version
    errors: list[str] = field(default_factory=list)
    reason: str | None = None
    drift: bool | None = None           # from the health snapshot; None before one said
    rolled_back: list[tuple[int, str]] = field(default_factory=list)  # (version, why)
    others: list["Answer"] = field(default_factory=list)  # another agent's differing word (answers())


# The hub's records ------------------------------------------------------------------------

def read_yaml(path: str) -> str:
    """A devices.yaml to push: UTF-8 text of at most MAX_CONFIG_BYTES; ValueError saying what is wrong."""
    data = sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1) if path == "-" else _read_bounded(Path(path))
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: over {MAX_CONFIG_BYTES} bytes; a store's devices.yaml is far smaller")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from err


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(MAX_CONFIG_BYTES + 1)


def store_version(db: HubDB, store: str, text: str, by: str) -> DesiredConfig:
    """Keep ``text`` as the store's next version; the message to publish."""
    sha = config_sha256(text)
    with db.transaction() as tx:
        row = tx.execute("SELECT max(version) FROM desired_configs WHERE store = ?", (store,)).fetchone()
        version = int(row[0] or 0) + 1
        tx.execute("INSERT INTO desired_configs (store, version, sha256, yaml, created_at, created_by) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (store, version, sha, text, now_iso(), by))
    return DesiredConfig(version=version, sha256=sha, yaml=text, by=by)


def record_result(tx: Tx, store: str, res: ConfigResult) -> None:
    """A store's word on one version: the latest word per version and agent stream is kept."""
    tx.execute("INSERT INTO config_results (store, version, stream, ok, state, errors, reason, in_force_version, "
               "in_force_sha256, at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (store, version, stream) DO UPDATE SET ok = excluded.ok, state = excluded.state, "
               "errors = excluded.errors, reason = excluded.reason, in_force_version = excluded.in_force_version, "
               "in_force_sha256 = excluded.in_force_sha256, at = excluded.at, received_at = excluded.received_at",
               (store, res.version, res.stream or "", int(res.ok), res.state,
                json.dumps(res.errors, ensure_ascii=False), res.reason, res.in_force.version, res.in_force.sha256,
                res.at.isoformat(), now_iso()))


@dataclass(frozen=True)
class Answer:
    """What one agent of a store said of one version (a row of ``config_results``)."""

    version: int
    stream: str
    state: str
    errors: list[str]
    reason: str | None
    in_force: int


def answers(db: HubDB, store: str | None = None, other_words: dict[str, list[Answer]] | None = None,
            newest_only: bool = False) -> dict[str, list[Answer]]:
    """Each store's word on each version it answered, oldest version first: its live stream's answer
    (the agent that announced itself last), else the answer heard last. An agent restarted numbers in
    a new stream and says only its last word again, so the versions before keep their earlier stream's
    answer; a second PC running with the store's id answers under its own stream, and its word on a
    version stops standing for the store once the store's agent is back and has answered it.
    ``other_words``, when given, gets, for a store with an open ``duplicate_store`` (two agents run as
    it now), what the other agent said of the store's newest version or a newer one where it differs.
    ``newest_only``: the word on each store's newest version answered, and nothing read of the others
    (the console's fleet table, every store at once)."""
    where, params = (" WHERE c.store = ?", (store,)) if store else ("", ())
    newest = (" JOIN (SELECT store, max(version) AS version FROM config_results GROUP BY store) m "
              "ON m.store = c.store AND m.version = c.version") if newest_only else ""
    rows = db.query("SELECT c.store, c.stream, c.version, c.state, c.errors, c.reason, c.in_force_version, "
                    "c.received_at, s.live_stream FROM config_results c LEFT JOIN stores s ON s.store = c.store"
                    f"{newest}{where} ORDER BY c.store, c.version, c.received_at", params)
    chosen: dict[str, dict[int, Answer]] = {}
    every: dict[str, list[Answer]] = {}
    for s, stream, version, state, errors, reason, in_force, _received, live_stream in rows:
        a = Answer(int(version), stream, state, json.loads(errors), reason, int(in_force))
        every.setdefault(s, []).append(a)
        mine = chosen.setdefault(s, {})
        if a.version not in mine or mine[a.version].stream != live_stream:  # later rows were heard later
            mine[a.version] = a
    out = {s: [mine[v] for v in sorted(mine)] for s, mine in chosen.items()}
    if other_words is not None and out:
        open_dup = {s for (s,) in db.query("SELECT store FROM identity WHERE code = 'duplicate_store' "
                                           "AND cleared_at IS NULL")}
        for s in out.keys() & open_dup:
            newest, said = out[s][-1].version, {a.version: a for a in out[s]}
            other_words[s] = [a for a in every[s] if a.version >= newest and said[a.version].stream != a.stream
                              and said[a.version].state != a.state]
    return out


def answer(db: HubDB, store: str, version: int) -> Answer | None:
    """The store's word on ``version`` by the rule of ``answers``, or None before it said one."""
    return next((a for a in answers(db, store).get(store, []) if a.version == version), None)


def version_yaml(db: HubDB, store: str, version: int | None = None) -> tuple[int, str] | None:
    """(version, YAML) of a store's version, the newest when ``version`` is None."""
    if version is None:
        rows = db.query("SELECT version, yaml FROM desired_configs WHERE store = ? ORDER BY version DESC LIMIT 1",
                        (store,))
    else:
        rows = db.query("SELECT version, yaml FROM desired_configs WHERE store = ? AND version = ?", (store, version))
    return (int(rows[0][0]), rows[0][1]) if rows else None


def statuses(db: HubDB, store: str | None = None) -> list[ConfigStatus]:
    """Each store with a version pushed or a word said, by id (one store when ``store`` is given)."""
    where, params = (" WHERE store = ?", (store,)) if store else ("", ())
    out: dict[str, ConfigStatus] = {}
    for s, desired in db.query(f"SELECT store, max(version) FROM desired_configs{where} GROUP BY store", params):
        out.setdefault(s, ConfigStatus(s)).desired = int(desired)
    others: dict[str, list[Answer]] = {}
    for s, said in answers(db, store, others).items():
        st = out.setdefault(s, ConfigStatus(s))
        st.others = others.get(s, [])
        for a in said:
            st.answered, st.state, st.in_force, st.errors, st.reason = a.version, a.state, a.in_force, a.errors, a.reason
            if a.state == "rolled_back":
                st.rolled_back.append((a.version, a.reason or ""))
    for s, st in out.items():
        row = db.query("SELECT health, live_stream FROM stores WHERE store = ?", (s,))
        health, live = row[0] if row else (None, None)
        try:
            snap = json.loads(health or "null") or {}
            config = snap.get("config")
        except (ValueError, AttributeError):
            snap, config = {}, None
        if snap.get("stream") and live and snap["stream"] != live:
            # Another run's snapshot (a second PC's, kept while the store's agent has sent none since
            # it took the session back): not the store's word on what runs.
            config = None
        if isinstance(config, dict):
            st.drift = bool(config.get("drift"))
            if isinstance(config.get("version"), int):
                st.in_force = config["version"]  # the snapshot is the store's latest word on what runs
    return [out[s] for s in sorted(out)]


def format_statuses(rows: list[ConfigStatus]) -> str:
    """The ``edge-hub config status`` table, each store's errors and rollbacks under its line."""
    table = [("STORE", "DESIRED", "IN FORCE", "STATE", "OF", "DRIFT")]
    for r in rows:
        table.append((r.store, _n(r.desired), _n(r.in_force), r.state or "-", _n(r.answered),
                      "-" if r.drift is None else "yes" if r.drift else "no"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            continue
        r = rows[i - 1]
        if r.state in ("refused", "restart_required") or (r.state == "applied" and r.reason):
            lines += [f"    {e}" for e in r.errors]
            if r.reason:
                lines.append(f"    {r.state}: {r.reason}")
        for version, why in r.rolled_back:
            lines.append(f"    version {version} rolled back: {why}")
        for a in r.others:
            lines.append(f"    another agent running as {r.store} (stream {a.stream[:8] or '-'}) said {a.state} "
                         f"of version {a.version}, in force {a.in_force}: not the store's word (two PCs run as "
                         "the store: see edge-hub identity)")
    if len(rows) == 0:
        lines.append("(no store has a desired configuration yet)")
    return "\n".join(lines)


def _n(v: int | None) -> str:
    return "-" if v is None else str(v)


# Publishing --------------------------------------------------------------------------------

def publish_retained(broker: BrokerURL, topic: str, payload: bytes, timeout: float = 10.0) -> None:
    """Publish at QoS 1, retained, and return once the broker has it (PUBACK); DownlinkError if not."""
    client = make_client(broker, f"edge-hub-config-{uuid.uuid4().hex[:12]}")
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=30, clean_start=True)
    except OSError as err:
        raise DownlinkError(f"cannot reach the broker {broker}: {err}") from err
    client.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            raise DownlinkError(f"broker {broker} {'refused the connection: ' + refused[0] if refused else 'did not answer in time'}")
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise DownlinkError(f"broker {broker} did not take the message on {topic} within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


# Commands ----------------------------------------------------------------------------------

def cmd_push(args: argparse.Namespace) -> int:
    """Store a devices.yaml as the store's next version and send it."""
    text = read_yaml(args.file)
    broker = parse_broker_url(args.broker)
    topic = hub_topic(args.store, "config")  # a bad store id stops here, before anything is stored
    db = open_db(args.db)
    try:
        desired = store_version(db, args.store, text, args.by)
    finally:
        db.close()
    try:
        publish_retained(broker, topic, desired.model_dump_json().encode())
    except DownlinkError as err:
        raise DownlinkError(f"version {desired.version} of {args.store} is stored but was not sent: {err}; "
                            "push it again once the broker is back") from err
    print(f"{args.store}: version {desired.version} (sha256 {desired.sha256[:12]}) sent to {topic}; "
          f"edge-hub config status {args.store} shows what the store made of it")
    return _OK


def cmd_status(args: argparse.Namespace) -> int:
    """Desired and in-force versions, state, errors, drift, rollbacks."""
    db = open_db(args.db)
    try:
        rows = statuses(db, args.store)
    finally:
        db.close()
    if args.store and not rows:
        print(f"edge-hub: no desired configuration for store {args.store}", file=sys.stderr)
        return _FAIL
    print(format_statuses(rows))
    return _OK


def cmd_show(args: argparse.Namespace) -> int:
    """Print a version's YAML."""
    db = open_db(args.db)
    try:
        found = version_yaml(db, args.store, args.version)
    finally:
        db.close()
    if found is None:
        which = f"version {args.version}" if args.version is not None else "any version"
        print(f"edge-hub: store {args.store} has no {which} of its devices.yaml here", file=sys.stderr)
        return _FAIL
    sys.stdout.write(found[1] if found[1].endswith("\n") else found[1] + "\n")
    return _OK


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of desired configuration."""
    config = sub.add_parser("config", help="each store's devices.yaml: push a version, see what the store made of it")
    verbs = config.add_subparsers(dest="verb", required=True)
    push = verbs.add_parser("push", help="store FILE as STORE's next version and send it (retained)")
    push.add_argument("store", metavar="STORE")
    push.add_argument("file", metavar="FILE", help="a devices.yaml (- for stdin), at most 256 KiB")
    push.add_argument("--by", default=_who(), help="who pushes it (default: the user running this)")
    push.add_argument("--db", default=env_db)
    broker_opt(push)
    push.set_defaults(func=cmd_push)
    status = verbs.add_parser("status", help="desired version, version in force, state, errors, drift, rollbacks")
    status.add_argument("store", metavar="STORE", nargs="?", default=None)
    status.add_argument("--db", default=env_db)
    status.set_defaults(func=cmd_status)
    show = verbs.add_parser("show", help="print a version of STORE's devices.yaml (the newest by default)")
    show.add_argument("store", metavar="STORE")
    show.add_argument("--version", type=int, default=None, metavar="N")
    show.add_argument("--db", default=env_db)
    show.set_defaults(func=cmd_show)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "edge-hub"
