"""``edge-hub``: run the reference hub, publish downlink messages, send commands, list stores.

Exit codes: 0 done; 1 failed (broker or database unreachable, the store
answered a command with an error, a fatal hub error); 2 bad arguments or
input file; 3 a command got no answer in time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

from sync.hub.broker import DEFAULT_BROKER, parse_broker_url
from sync.hub.db import DEFAULT_DB, IdentityIssue, StoreRow, StreamRow, open_db
from sync.hub.errors import BrokerURLError, ConsoleConfigError, HubDBError
from sync.hub.publish import (
    MEMBER_TYPES,
    Downlink,
    DownlinkError,
    catalog_items,
    member_event,
    order_event,
    publish_catalog,
    publish_event,
    stock_event,
    verdict_event,
)
from sync.topics import PayloadError, decode_json

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(f"edge-hub: {msg}", file=sys.stderr)


def _version() -> str:
    """This installation's version, from the package metadata (the distribution in pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edge-agent")
    except PackageNotFoundError:
        return "unknown"  # run from a source tree that was never installed


def _console(args: argparse.Namespace, svc: Any, fleet: Any) -> Any:
    """The console server of ``run --http`` (prepared: database open, port bound)."""
    from sync.hub.console.auth import load_tokens
    from sync.hub.console.rules import load_rules
    from sync.hub.console.server import ConsoleServer

    tokens = load_tokens(args.console_tokens, os.environ.get("EDGE_HUB_CONSOLE_TOKEN"))
    rules = load_rules(args.alert_rules)
    console = ConsoleServer(svc, fleet, args.http, tokens, rules, args.db, version=_version(),
                            command_timeout_s=args.command_timeout, enrollment=_enrollment(args),
                            releases=Path(args.releases) if args.releases else None)
    console.prepare()
    return console


def _enrollment(args: argparse.Namespace) -> Any:
    """What ``POST /enroll`` needs with ``--enroll-ca``; None without it. ConsoleConfigError when it is wrong."""
    if not args.enroll_ca:
        if args.enroll_broker:
            raise ConsoleConfigError("--enroll-broker needs --enroll-ca DIR (the CA that signs enrolled stores)")
        return None
    from sync.hub.fleet.enroll_api import Enrollment
    from sync.hub.fleet.enroll_ca import load_ca

    if not args.enroll_broker or not args.enroll_broker.startswith("mqtts://"):
        raise ConsoleConfigError("--enroll-ca needs --enroll-broker mqtts://HOST:PORT, the broker's listener for "
                                 "enrolled stores as they reach it (certificates travel only over TLS)")
    try:
        return Enrollment(load_ca(Path(args.enroll_ca)), args.enroll_broker)
    except ValueError as err:
        raise ConsoleConfigError(str(err)) from err


def cmd_run(args: argparse.Namespace) -> int:
    """Run one hub worker (and with ``--http`` the console) until SIGTERM or SIGINT."""
    from sync.hub.observe import Observer
    from sync.hub.service import HubService

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fleet = console = None
    if (args.enroll_ca or args.enroll_broker) and not args.http:
        _err("--enroll-ca serves POST /enroll on the hub's HTTP server: add --http HOST:PORT")
        return EXIT_USAGE
    if args.releases and not args.http:
        _err("--releases serves the bundles on the hub's HTTP server: add --http HOST:PORT")
        return EXIT_USAGE
    if args.http:
        from sync.hub.console.fleet import Fleet

        fleet = Fleet()
    svc = HubService(parse_broker_url(args.broker), args.db, group=args.group, client_id=args.client_id,
                     session_expiry=args.session_expiry, observer=Observer(fleet.apply if fleet is not None else None),
                     duplicate_clear_s=args.duplicate_clear)
    retention = _retention(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if fleet is not None:
            console = _console(args, svc, fleet)
        svc.start()
        if retention is not None:
            retention.start()
        if console is not None:
            console.start()
            print(f"edge-hub: console on {console.url}", flush=True)
    except ConsoleConfigError as err:
        _err(str(err))
        return EXIT_USAGE
    except (HubDBError, RuntimeError) as err:
        _err(str(err))
        if console is not None:
            console.stop()
        if retention is not None:
            retention.stop()
        svc.stop()
        return EXIT_FAIL
    announced = False
    # Signals land in this thread; a short wait keeps it responsive to them.
    while not stop.wait(0.2):
        if svc.wait(0):
            break
        if not announced and svc.wait_ready(0):
            print(f"edge-hub: connected to {svc.broker} as {svc.client_id} (group {svc.group}), "
                  f"db {svc.db.url if svc.db else args.db}", flush=True)
            announced = True
    if console is not None:
        console.stop()
    if retention is not None:
        retention.stop()
    svc.stop()
    s = svc.stats
    print(f"edge-hub: stopped; {s.batches} batches, {s.events} events stored, {s.duplicates} duplicates, "
          f"{s.rejected} refused, {s.acks} acks", flush=True)
    if svc.fatal:
        _err(svc.fatal)
        return EXIT_FAIL
    return EXIT_OK


def _retention(args: argparse.Namespace) -> Any:
    """The purge timer of ``run``: with ``--retention-days``, and on PostgreSQL always (it makes the coming
    days' partitions); None on SQLite without a policy."""
    from sync.hub.retention import RetentionTimer

    postgres = args.db.startswith(("postgresql://", "postgres://"))
    if args.retention_days is None and not postgres:
        return None
    return RetentionTimer(args.db, args.retention_days, args.retention_every)


def cmd_retention(args: argparse.Namespace) -> int:
    """With ``--days``, purge once; then print what the hub holds."""
    from sync.hub.retention import cutoff, purge, status

    missing = _missing_sqlite(args.db)
    if missing is not None:
        print(f"nothing to purge: no hub database at {missing} (pass --db as `edge-hub run` has it)")
        return EXIT_OK
    now = datetime.now(timezone.utc)
    if args.days is not None:
        cutoff(now, args.days)  # ValueError (exit 2) before the database is opened
    db = open_db(args.db)
    try:
        if args.days is not None:
            r = purge(db, args.days, now)
            print(f"purged {_plural(r.removed, 'event')} received before {r.cutoff} ({r.kept} kept for reports"
                  + (f"; dropped {' '.join(r.partitions)}" if r.partitions else "") + ")")
        print(format_retention(status(db)))
    finally:
        db.close()
    return EXIT_OK


def format_retention(st: dict[str, Any]) -> str:
    """The ``edge-hub retention`` report."""
    out = [f"events held: {st['events']}" + (f", oldest received {st['oldest'][:19]}" if st["oldest"] else ""),
           f"events kept for reports after their purge: {st['kept']}"]
    if st["resent_purged"]:
        out.append("resends of purged events (counted as duplicates): "
                   + ", ".join(f"{s} {n}" for s, n in st["resent_purged"].items()))
    for p in st.get("partitions", []):
        span = "default" if p["default"] else f"{p['from'] or '...'} to {p['to']}"
        out.append(f"  partition {p['name']}: {span}, {_plural(p['events'], 'event')}")
    for p in st["purges"]:
        out.append(f"purge at {p['at'][:19]}: {p['removed']} before {p['cutoff']}, {p['kept']} kept"
                   + (f", dropped {p['partitions']}" if p["partitions"] else ""))
    return "\n".join(out)


def _read_json(path: str) -> Any:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return decode_json(data)


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish a catalog, a stock count, an order, a member card or a return verdict."""
    broker = parse_broker_url(args.broker)
    if args.what == "catalog":
        items, dropped = catalog_items(_read_json(args.file))
        if dropped:
            _err(f"left out {'a key' if len(dropped) == 1 else 'keys'} not in a catalog item: "
                 f"{', '.join(sorted(dropped))}")
        topic = publish_catalog(broker, args.store, items)
        print(f"published {len(items)} catalog {'item' if len(items) == 1 else 'items'} to {topic}")
        return EXIT_OK
    if args.what == "stock":
        payload, kind = stock_event(args.sku, args.qty), "stock"
    elif args.what == "order":
        payload, kind = order_event(_read_json(args.file)), "orders"
    elif args.what == "verdict":
        payload, kind = verdict_event(args.return_id, args.verdict, args.reason), "returns"
    else:
        payload, kind = member_event(_read_json(args.file), args.kind), "members"
    print(f"published to {publish_event(broker, args.store, kind, payload)}")
    return EXIT_OK


def cmd_cmd(args: argparse.Namespace) -> int:
    """Send a command to a store's device and print the answer."""
    broker = parse_broker_url(args.broker)
    try:
        cmd_args = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as err:
        _err(f"--args is not JSON: {err}")
        return EXIT_USAGE
    if not isinstance(cmd_args, dict):
        _err("--args must be a JSON object, e.g. '{\"copies\": 1}'")
        return EXIT_USAGE
    missing = _missing_sqlite(args.db) if args.db else None
    if missing is not None:
        # Opening it would make a new, empty database that no console reads: the command would
        # show in the hub's console as an answer with no action, device or time.
        _err(f"not recording the command: no hub database at {missing}; pass --db (or EDGE_HUB_DB) as "
             "`edge-hub run` has it for the console to show the command")
    db = open_db(args.db) if args.db and missing is None else None
    try:
        with Downlink(broker) as d:
            res = d.command(args.store, args.device, args.action, cmd_args, timeout=args.timeout, db=db)
    finally:
        if db is not None:
            db.close()
    if res is None:
        _err(f"no answer from store {args.store} within {args.timeout:g} s")
        return EXIT_TIMEOUT
    print(res.wire().decode())
    return EXIT_OK if res.ok else EXIT_FAIL


def _missing_sqlite(url: str) -> str | None:
    """The path of a SQLite database URL (or bare path) whose file does not exist; None otherwise."""
    if url.startswith(("postgresql://", "postgres://")) or ("://" in url and not url.startswith("sqlite://")):
        return None
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    return None if not path or Path(path).exists() else path


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _age(at: str | None, now: datetime) -> str:
    if not at:
        return "-"
    secs = int((now - datetime.fromisoformat(at)).total_seconds())
    return f"{secs}s" if secs < 120 else f"{secs // 60}m" if secs < 7200 else f"{secs // 3600}h"


def format_stores(rows: list[StoreRow], now: datetime | None = None) -> str:
    """The ``edge-hub stores`` table."""
    now = now or datetime.now(timezone.utc)
    table = [("STORE", "STATUS", "SINCE", "STREAMS", "ACKED", "EVENTS", "OPEN GAPS", "CONFLICTS", "IDENTITY",
              "HEALTH AGE", "REFUSED")]
    for r in rows:
        # ACKED: the acknowledged seq of the stream that last brought events (edge-hub identity lists them all).
        table.append((r.store, r.status or "-", (r.since or "-")[:19], str(r.streams), str(r.contiguous),
                      str(r.events), str(r.open_gaps), str(r.conflicts),
                      f"{r.identity} open" if r.identity else "ok", _age(r.health_at, now), str(r.rejected)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    states = [r.status or "unknown" for r in rows]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("online", "offline", "unknown") if states.count(s))
    return "\n".join([*lines, f"{_plural(len(rows), 'store')}: {counts}"])


def cmd_stores(args: argparse.Namespace) -> int:
    """Print every store the hub has heard from."""
    missing = _missing_sqlite(args.db)
    if missing is not None:  # not created here: an empty file would only hide the mistake next time
        print(f"no store has reported yet: no hub database at {missing} (pass --db as `edge-hub run` has it)")
        return EXIT_OK
    db = open_db(args.db)
    try:
        rows = db.stores()
    finally:
        db.close()
    print(format_stores(rows) if rows else "no store has reported yet")
    return EXIT_OK


def format_identity(store: str, streams: list[StreamRow], issues: list[IdentityIssue],
                    conflicts: list[dict[str, Any]]) -> str:
    """The ``edge-hub identity STORE`` report: streams, what the hub noticed, events kept aside."""
    out = [f"store {store}", "", "streams (oldest first):"]
    table = [("STREAM", "ACKED", "HIGH", "EVENTS", "FIRST SEEN", "AFTER", "ANNOUNCED", "SUPERSEDED")]
    for s in streams:
        after = "-" if s.prev_stream is None else f"{s.prev_stream[:8]}@{s.prev_seq}"
        table.append((s.stream or "(legacy)", str(s.contiguous), str(s.high), str(s.events), s.first_at[:19], after,
                      (s.announced_at or "-")[:19], (s.superseded_at or "-")[:19]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    out += ["", "identity:" if issues else "identity: nothing noticed"]
    for i in issues:
        state = f"cleared {i.cleared_at[:19]}" if i.cleared_at else "OPEN"
        out.append(f"  [{state}] {i.code} {i.subject}: seen {i.count}x, first {i.first_at[:19]}, last {i.last_at[:19]}")
        out.append(f"    {i.detail}")
    out += ["", f"conflicts: {len(conflicts)} {'event' if len(conflicts) == 1 else 'events'} kept aside"]
    for c in conflicts:
        out.append(f"  stream {c['stream'] or '(legacy)'} seq {c['seq']}: {c['id']} ({c['type']}), the position "
                   f"holds {c['kept_id']}; received {c['received_at'][:19]}")
        out.append(f"    {c['event'][:2000]}")
    return "\n".join(out)


def _store_report(args: argparse.Namespace, report: Callable[[Any], str]) -> int:
    """Print ``report(db)`` for ``args.store``; a missing SQLite file or a store never heard from says so."""
    missing = _missing_sqlite(args.db)
    if missing is not None:
        print(f"no store has reported yet: no hub database at {missing} (pass --db as `edge-hub run` has it)")
        return EXIT_OK
    db = open_db(args.db)
    try:
        if db.store(args.store) is None:
            _err(f"the hub has heard nothing from store {args.store!r}")
            return EXIT_FAIL
        text = report(db)
    finally:
        db.close()
    print(text)
    return EXIT_OK


def cmd_identity(args: argparse.Namespace) -> int:
    """Print one store's streams, identity issues and the events kept aside as conflicts."""
    def report(db: Any) -> str:
        if args.close:
            with db.transaction() as tx:
                closed = tx.close_identity(args.store, args.close, args.subject)
            if not closed:
                raise _Refused(f"store {args.store} has no open {args.close} issue"
                               + (f" about {args.subject}" if args.subject else ""))
            print(f"closed {closed} {args.close} {'issue' if closed == 1 else 'issues'} of store {args.store}")
        return format_identity(args.store, db.streams(args.store), db.identity_issues(args.store),
                               db.conflicts(args.store))

    try:
        return _store_report(args, report)
    except _Refused as err:
        _err(str(err))
        return EXIT_FAIL


class _Refused(Exception):
    """What a command cannot do, said on stderr with exit 1."""


def format_privacy(store: str, summaries: list[dict[str, Any]]) -> str:
    """The ``edge-hub privacy STORE`` report: who in the store read members' data, how often, per summary."""
    if not summaries:
        return f"store {store}: no access summary yet (nobody read members' data, or the store is older)"
    table = [("FIRST", "LAST", "CLIENT", "ROLE", "READS", "MEMBERS", "WHAT")]
    for s in summaries:
        for c in s.get("clients", []):
            what = ", ".join(f"{k} {v}" for k, v in sorted(c.get("what", {}).items()))
            table.append(((s.get("first") or "-")[:19], (s.get("last") or "-")[:19], str(c.get("client")),
                          str(c.get("role")), str(c.get("reads")), str(c.get("members")), what))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    total = sum(int(s.get("reads") or 0) for s in summaries)
    return "\n".join([f"store {store}: reads of members' data, as the store summarised them (no member ids)", *lines,
                      f"{_plural(total, 'read')} in {len(summaries)} {'summary' if len(summaries) == 1 else 'summaries'}"])


def cmd_privacy(args: argparse.Namespace) -> int:
    """Print a store's access summaries."""
    return _store_report(args, lambda db: format_privacy(args.store, db.access_summaries(args.store)))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``edge-hub``."""
    env_broker = os.environ.get("EDGE_HUB_URL") or DEFAULT_BROKER
    env_db = os.environ.get("EDGE_HUB_DB") or DEFAULT_DB
    p = argparse.ArgumentParser(prog="edge-hub", description="The chain's reference hub for edge agents.")
    sub = p.add_subparsers(dest="command", required=True)

    def broker_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--broker", default=env_broker, help=f"mqtt://HOST:PORT (default {env_broker}; $EDGE_HUB_URL)")

    run = sub.add_parser("run", help="ingest every store's events and acknowledge them")
    broker_opt(run)
    run.add_argument("--db", default=env_db, help=f"sqlite:///FILE or postgresql://... (default {env_db}; $EDGE_HUB_DB)")
    run.add_argument("--group", default="hub", help="shared-subscription group: workers of one group split the stores")
    run.add_argument("--client-id", default=None,
                     help="MQTT client id, stable across restarts and distinct per worker (default edge-hub-GROUP-HOST)")
    run.add_argument("--duplicate-clear", type=float, default=180.0, metavar="S",
                     help="a store's two-agents alert clears once no second agent was seen for S seconds (default 180)")
    run.add_argument("--session-expiry", type=int, default=24 * 3600, metavar="S",
                     help="how long the broker keeps messages for this worker while it is down (default 86400)")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    env_http = os.environ.get("EDGE_HUB_HTTP") or None
    run.add_argument("--http", default=env_http, metavar="HOST:PORT",
                     help="serve the health console and /metrics there, e.g. 127.0.0.1:8090 ($EDGE_HUB_HTTP)")
    run.add_argument("--console-tokens", default=os.environ.get("EDGE_HUB_CONSOLE_TOKENS") or None, metavar="FILE",
                     help="NAME:SHA256 lines, the console's tokens ($EDGE_HUB_CONSOLE_TOKENS; or one plain token "
                          "in $EDGE_HUB_CONSOLE_TOKEN)")
    run.add_argument("--alert-rules", default=os.environ.get("EDGE_HUB_ALERT_RULES") or None, metavar="FILE",
                     help="alert rules YAML (default: the shipped sync/console/rules.yaml; $EDGE_HUB_ALERT_RULES)")
    run.add_argument("--command-timeout", type=float, default=30.0, metavar="S",
                     help="seconds a console command waits for the store's answer (default 30)")
    run.add_argument("--enroll-ca", default=os.environ.get("EDGE_HUB_ENROLL_CA") or None, metavar="DIR",
                     help="with --http: serve POST /enroll, signing store PCs' certificates with the CA in DIR "
                          "(edge-hub ca init; $EDGE_HUB_ENROLL_CA)")
    run.add_argument("--enroll-broker", default=os.environ.get("EDGE_HUB_ENROLL_BROKER") or None,
                     metavar="mqtts://HOST:PORT",
                     help="the broker's listener for enrolled stores, as given to them ($EDGE_HUB_ENROLL_BROKER)")
    run.add_argument("--releases", default=os.environ.get("EDGE_HUB_RELEASES") or None, metavar="DIR",
                     help="with --http: serve the release bundles in DIR (edge-hub release build) at /releases/ "
                          "($EDGE_HUB_RELEASES)")
    env_days = os.environ.get("EDGE_HUB_RETENTION_DAYS")
    # A string default goes through type=int: a bad $EDGE_HUB_RETENTION_DAYS is a usage error, not a crash.
    run.add_argument("--retention-days", type=int, default=env_days or None, metavar="N",
                     help="keep raw events N whole days after the day they came, then purge them; stores, streams, "
                          "gaps, conflicts and access summaries stay (default: keep all; $EDGE_HUB_RETENTION_DAYS)")
    run.add_argument("--retention-every", type=float, default=3600.0, metavar="S",
                     help="seconds between purges, and on PostgreSQL between checks of the coming days' "
                          "partitions (default 3600)")
    run.set_defaults(func=cmd_run)

    pub = sub.add_parser("publish", help="publish catalog, stock, an order or a member card")
    what = pub.add_subparsers(dest="what", required=True)
    cat = what.add_parser("catalog", help="a JSON list of catalog items, one retail.catalog.updated each")
    cat.add_argument("file")
    cat.add_argument("--store", required=True, help="a store id, or all")
    stock = what.add_parser("stock", help="retail.stock.set: the store's absolute count of a SKU")
    stock.add_argument("--store", required=True)
    stock.add_argument("--sku", required=True)
    stock.add_argument("--qty", required=True, type=int)
    order = what.add_parser("order", help="retail.order.created from a JSON file (- for stdin)")
    order.add_argument("file")
    order.add_argument("--store", required=True)
    member = what.add_parser("member", help="retail.member.arrived from a JSON file (- for stdin)")
    member.add_argument("file")
    member.add_argument("--store", required=True)
    member.add_argument("--kind", choices=tuple(MEMBER_TYPES), default="arrived")
    verdict = what.add_parser("verdict", help="retail.return.verdict: approve or reject a pending online return")
    verdict.add_argument("--store", required=True)
    verdict.add_argument("--return-id", required=True)
    verdict.add_argument("--verdict", required=True, choices=("approved", "rejected"))
    verdict.add_argument("--reason", default=None)
    for sp in (cat, stock, order, member, verdict):
        broker_opt(sp)
    pub.set_defaults(func=cmd_publish)

    cmd = sub.add_parser("cmd", help="send a command to a device of a store and wait for the answer")
    broker_opt(cmd)
    cmd.add_argument("--store", required=True)
    cmd.add_argument("--device", required=True)
    cmd.add_argument("--action", required=True)
    cmd.add_argument("--args", default=None, help="JSON object of arguments")
    cmd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    cmd.add_argument("--db", default=env_db, help="where to record the command; '' for nowhere")
    cmd.set_defaults(func=cmd_cmd)

    stores = sub.add_parser("stores", help="table of stores: status, acknowledged seq, gaps, health age")
    stores.add_argument("--db", default=env_db)
    stores.set_defaults(func=cmd_stores)

    ident = sub.add_parser("identity", help="one store's streams, identity problems and conflicting events kept aside")
    ident.add_argument("store", metavar="STORE")
    ident.add_argument("--db", default=env_db)
    ident.add_argument("--close", choices=("stream_conflict", "database_restored"), default=None,
                       help="close the store's open issues of this code once looked at (they open again if seen again)")
    ident.add_argument("--subject", default=None, help="with --close: only the issue about this stream")
    ident.set_defaults(func=cmd_identity)

    privacy = sub.add_parser("privacy", help="who in a store read members' data, how often (its access summaries)")
    privacy.add_argument("store", metavar="STORE")
    privacy.add_argument("--db", default=env_db)
    privacy.set_defaults(func=cmd_privacy)

    ret = sub.add_parser("retention", help="purge raw events past the retention policy once; show what is held")
    ret.add_argument("--db", default=env_db)
    ret.add_argument("--days", type=int, default=env_days or None, metavar="N",
                     help="purge events received before midnight UTC N days ago ($EDGE_HUB_RETENTION_DAYS); "
                          "without it, only show")
    ret.set_defaults(func=cmd_retention)

    from sync.hub.fleet import desired, enroll, releases, rollout  # fleet operations (sync/hub/fleet/)
    enroll.add_commands(sub, env_db, broker_opt)
    desired.add_commands(sub, env_db, broker_opt)
    releases.add_commands(sub, env_db, broker_opt)
    rollout.add_commands(sub, env_db, broker_opt)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edge-hub`` console script."""
    args = build_parser().parse_args(argv)
    store = getattr(args, "store", None)
    if store is not None and store == "all" and getattr(args, "what", None) != "catalog":
        _err("only a catalog goes to all stores; give one store id")
        return EXIT_USAGE
    try:
        return args.func(args)
    except (BrokerURLError, PayloadError, ValueError) as err:
        _err(str(err))
        return EXIT_USAGE
    except OSError as err:
        _err(f"cannot read {getattr(err, 'filename', None) or 'input'}: {err.strerror or err}")
        return EXIT_USAGE
    except (DownlinkError, HubDBError) as err:
        _err(str(err))
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
