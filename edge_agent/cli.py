"""``edge-agent``: run the daemon, check a config, list devices, pair a PAD, hash a token, drain an old store
database, enroll a new store PC."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from pathlib import Path

from edge_agent import __version__
from edge_agent import DEFAULT_CONFIG, config_path
from edge_core.errors import ConfigError

DEFAULT_DATA_DIR = "/var/lib/edge-agent"


def _load(path: Path):  # -> AgentConfig | None, without importing the config module at start-up
    """The config at ``path``, or None after printing its problems (one per line) to stderr."""
    from edge_agent import config

    try:
        return config.load(path)
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a config without touching hardware: exit 0, or 2 with one line per problem."""
    from edge_agent import config

    path = config_path(args.config)
    try:
        cfg = config.load(path)
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        return 2
    problems = config.file_problems(path, cfg)
    for line in config.file_warnings(path, cfg):
        print(line, file=sys.stderr)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    print(f"{path}: ok (store {cfg.store.id}, {len(cfg.devices)} device(s), {len(cfg.api.clients)} client(s))")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM or SIGINT."""
    from edge_agent.daemon import run

    from edge_agent import __version__, release

    data_dir = Path(args.data_dir or os.environ.get("EDGE_DATA_DIR") or DEFAULT_DATA_DIR)
    # Before the config: a release on trial that refuses it, or dies before the agent is up, is counted too.
    if release.count_start(data_dir, __version__) is not None:
        return release.EXIT_RESTART
    path = config_path(args.config)
    cfg = _load(path)
    if cfg is None:
        return 2
    return run(cfg, data_dir, log_level=args.log_level, config_path=path)


def _tls_context(command: str, args: argparse.Namespace) -> Any:
    """For an https:// ``--url``: a context trusting ``--cafile`` (the agent's CA: make run's .run/tls/ca.crt, a
    store's chain CA) or the system's; None for http://; False, said on stderr, when ``--cafile`` is unreadable."""
    if not args.url.startswith("https://"):
        return None
    import ssl

    try:
        return ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as err:
        print(f"edge-agent {command}: cannot read --cafile {args.cafile}: {getattr(err, 'strerror', None) or err}",
              file=sys.stderr)
        return False


def cmd_devices(args: argparse.Namespace) -> int:
    """Print the device table of a running agent."""
    token = args.token or os.environ.get("EDGE_TOKEN")
    if not token:
        print("edge-agent devices: give --token or set EDGE_TOKEN (an associate, console or admin token)", file=sys.stderr)
        return 2
    req = urllib.request.Request(
        args.url.rstrip("/") + "/v1/devices", headers={"Authorization": f"Bearer {token}"}
    )
    context = _tls_context("devices", args)
    if context is False:
        return 2
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            devices = json.load(resp)
    except urllib.error.HTTPError as err:
        print(f"edge-agent devices: {args.url} answered {err.code}: {err.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as err:
        print(f"edge-agent devices: cannot reach {args.url}: {getattr(err, 'reason', err)}", file=sys.stderr)
        return 1
    rows = [("ID", "KIND", "STATE", "SINCE", "LAST ERROR")]
    for d in devices:
        rows.append((d["id"], d["kind"], d["state"], d["since"][:19], d.get("last_error") or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    return 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the admin token is sent to the address given, never to one an answer names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 - urllib's signature
        return None


def _pair_url_refusal(url: str) -> str | None:
    """Why ``edge-agent pair`` will not send its token to ``url``: not http(s), or http:// off this PC."""
    from urllib.parse import urlsplit

    from edge_agent.hosts import is_loopback

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url {url!r}: give the agent's address as https://HOST[:PORT] (or http://127.0.0.1:PORT)"
    if parts.scheme == "https" or is_loopback(parts.hostname):
        return None
    return (f"--url {url!r} is http://: the admin token and the pairing code would cross the network in clear; "
            "use https:// (http:// only to the agent on this PC)")


def cmd_pair(args: argparse.Namespace) -> int:
    """Ask a running agent for a pairing code for a PAD or wristband; print it, its URL and its QR."""
    token = os.environ.get("EDGE_TOKEN")
    if not token:
        print("edge-agent pair: set EDGE_TOKEN to an admin token (not on the command line, where "
              "other users' ps shows it)", file=sys.stderr)
        return 2
    if (why := _pair_url_refusal(args.url)) is not None:
        print(f"edge-agent pair: {why}", file=sys.stderr)
        return 2
    zones = [z.strip() for z in (args.zones or "").split(",") if z.strip()]
    body = json.dumps({"name": args.name, "zones": zones}).encode()
    req = urllib.request.Request(args.url.rstrip("/") + "/v1/pairing", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    context = _tls_context("pair", args)
    if context is False:
        return 2
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect(), urllib.request.ProxyHandler({})]  # straight to it
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=10) as resp:
            made = json.load(resp)
    except urllib.error.HTTPError as err:
        if 300 <= err.code < 400:
            print(f"edge-agent pair: {args.url} answered {err.code}, a redirect (to "
                  f"{err.headers.get('Location', '?')[:200]}): not followed, the token goes only to --url; "
                  "give the agent's own address", file=sys.stderr)
            return 1
        print(f"edge-agent pair: {args.url} answered {err.code}: {err.read().decode(errors='replace')}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as err:
        print(f"edge-agent pair: cannot reach {args.url}: {getattr(err, 'reason', err)}", file=sys.stderr)
        return 1
    zones_text = ", ".join(made["zones"]) or "every zone"
    print(f"Device  {made['name']} (associate; zones: {zones_text})")
    print(f"Code    {made['code']} (one use, for {made['expires_in'] // 60} min, until {made['expires_at'][:19]} UTC)")
    print(f"URL     {made['pair_url']}")
    from edge_agent.qrcodes import terminal_qr  # black on white with its quiet zone: any terminal's colours

    print(terminal_qr(made["pair_url"]), end="")
    print("Scan the QR with the device's camera, or open /pad on it and type the code.")
    return 0


def cmd_hash_token(args: argparse.Namespace) -> int:
    """Print the SHA-256 of a client token, for api.clients[].token_sha256."""
    token = args.token if args.token is not None else getpass.getpass("token: ")
    if not token:
        print("edge-agent hash-token: empty token", file=sys.stderr)
        return 2
    print(hashlib.sha256(token.encode()).hexdigest())
    return 0


def cmd_catalog_import(args: argparse.Namespace) -> int:
    """Load products from a JSON file (a list of catalog items) into the store."""
    import asyncio

    from pydantic import TypeAdapter, ValidationError

    from edge_agent import catalog
    from edge_agent.store import Store

    path = Path(args.file)
    try:
        items = TypeAdapter(list[catalog.CatalogItem]).validate_json(path.read_bytes())
    except OSError as err:
        print(f"{path}: cannot read: {err}", file=sys.stderr)
        return 2
    except ValidationError as err:
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            print(f"{path}: item {loc}: {e['msg']}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir or os.environ.get("EDGE_DATA_DIR") or DEFAULT_DATA_DIR)

    async def _import() -> tuple[int, int]:
        store = Store(data_dir / "store.db")
        await store.start()
        try:
            return await store.write(lambda tx: catalog.upsert(tx.conn, items))
        finally:
            await store.stop()

    applied, stale = asyncio.run(_import())
    print(f"{path}: {applied} item(s) stored, {stale} older than what the store has and ignored")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    """Send the events a store database holds that the hub has not acknowledged, then exit.

    For the disk of a replaced or broken store PC, or the database a restore
    replaced: its events go to the hub in their own streams, so the hub takes
    each exactly once beside what the store's live agent sends. Exit 0 once
    the outbox is empty, 1 if it is not within ``--timeout``, 2 on a bad
    config or data directory.
    """
    import asyncio
    import logging
    import time

    from edge_agent.bus import EventBus
    from edge_agent.errors import StoreError
    from edge_agent.store import Store, outbox
    from edge_agent.store.db import lock_data_dir
    from edge_agent.store.link_outbox import StoreOutbox, hub_settings
    from sync.link import HubLink

    cfg = _load(config_path(args.config))
    if cfg is None:
        return 2
    data_dir = Path(args.data_dir)
    db = data_dir / "store.db"
    if not db.is_file():
        print(f"edge-agent drain: no store database at {db}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    try:
        lock_data_dir(data_dir)  # refused while an agent runs on it: drain only an old disk's directory
    except StoreError as err:
        print(f"edge-agent drain: {err}; the agent running there sends its events itself", file=sys.stderr)
        return 2

    async def _drain() -> int:
        store = Store(db)
        try:
            await store.start()
        except StoreError as err:
            print(f"edge-agent drain: {err}", file=sys.stderr)
            return 2
        link = None
        try:
            left = await store.read(outbox.depth)
            if left == 0:
                print(f"{db}: nothing to send, the hub has every event of this database")
                return 0
            print(f"{db}: {left} event(s) to send to {cfg.hub.url} as store {cfg.store.id}")
            link = HubLink(hub_settings(cfg), StoreOutbox(store), EventBus(), __version__, data_dir, drain_only=True)
            await link.start()
            deadline = time.monotonic() + args.timeout
            while (left := await store.read(outbox.depth)) > 0:
                if time.monotonic() > deadline:
                    why = f" (last error: {link.last_error})" if link.last_error else ""
                    print(f"edge-agent drain: {left} event(s) still wait for the hub after {args.timeout:g} s{why}; "
                          "run it again once the hub is reachable: nothing is lost", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.5)  # a progress poll, not a synchronization
            print(f"{db}: every event is at the hub")
            return 0
        finally:
            if link is not None:
                await link.stop()
            await store.stop()

    return asyncio.run(_drain())


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enroll this PC with a one-time code from the hub: keys, certificates, devices.yaml (edge_agent/enroll.py)."""
    from edge_agent.enroll import EnrollFailed, enroll

    code = args.code or os.environ.get("EDGE_ENROLL_CODE")
    if not code:
        print("edge-agent enroll: give --code CODE (or $EDGE_ENROLL_CODE), as `edge-hub enroll-code` printed it",
              file=sys.stderr)
        return 2
    target = config_path(args.config)
    data_dir = Path(args.data_dir or os.environ.get("EDGE_DATA_DIR") or DEFAULT_DATA_DIR)
    try:
        done = enroll(args.hub, code, target, data_dir, cafile=args.cafile, store=args.store, force=args.force,
                      hostname=args.hostname, addresses=args.address)
    except EnrollFailed as err:
        print(f"edge-agent enroll: {err}", file=sys.stderr)
        if err.code_used:
            print("edge-agent enroll: the hub used the code up; ask for a new one once this is fixed", file=sys.stderr)
        return 1
    print(f"Enrolled as store {done.store}: MQTT by certificate at {done.broker}")
    print(f"  Config      {done.config}")
    for name, path in done.files.items():
        print(f"  {name:<11} {path}{' (0600, made on this PC; it never left it)' if name.endswith('_key') else ''}")
    print(f"  Data        {data_dir}")
    print("Next: systemctl enable --now edge-agent")
    print(f"  (or by hand: edge-agent run --config {done.config} --data-dir {data_dir})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``edge-agent``."""
    parser = argparse.ArgumentParser(prog="edge-agent", description="Store-edge agent")
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", help=f"devices.yaml (default: $EDGE_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--data-dir", help=f"where the store lives (default: $EDGE_DATA_DIR or {DEFAULT_DATA_DIR})")
    p.add_argument("--log-level", default=os.environ.get("EDGE_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a config without touching hardware")
    p.add_argument("--config", help=f"devices.yaml (default: $EDGE_CONFIG or {DEFAULT_CONFIG})")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("devices", help="table of devices from a running agent")
    p.add_argument("--url", default=os.environ.get("EDGE_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", help="bearer token (default: $EDGE_TOKEN)")
    p.add_argument("--cafile", default=os.environ.get("EDGE_CAFILE") or None,
                   help="PEM CA that issued the agent's certificate, for an https:// URL "
                        "(default: $EDGE_CAFILE, else the system's CAs)")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("pair", help="a pairing code for an associate's PAD or wristband, from a running agent")
    p.add_argument("--url", default=os.environ.get("EDGE_URL", "http://127.0.0.1:8080"))
    p.add_argument("--name", required=True, help="the device's name: 1..32 of a-z, 0-9, '-' (e.g. pad-anna)")
    p.add_argument("--zones", help="the zones it serves, comma-separated (default: every zone)")
    p.add_argument("--cafile", default=os.environ.get("EDGE_CAFILE") or None,
                   help="PEM CA that issued the agent's certificate, for an https:// URL "
                        "(default: $EDGE_CAFILE, else the system's CAs)")
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("hash-token", help="print a token's SHA-256 for devices.yaml")
    p.add_argument("token", nargs="?", help="the token (prompted for when omitted)")
    p.set_defaults(func=cmd_hash_token)
    p = sub.add_parser("catalog-import", help="load products from a JSON file into the store")
    p.add_argument("file", help="a JSON list of catalog items (sku, barcodes, name, price, currency, ...)")
    p.add_argument("--data-dir", help=f"where the store lives (default: $EDGE_DATA_DIR or {DEFAULT_DATA_DIR})")
    p.set_defaults(func=cmd_catalog_import)

    p = sub.add_parser("drain", help="send what a store database (an old disk's) holds for the hub, then exit")
    p.add_argument("--config", help=f"the store's devices.yaml (default: $EDGE_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--data-dir", required=True, help="the data directory holding the store.db to drain")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("enroll", help="set up this store PC from a one-time code the hub issued")
    p.add_argument("--hub", required=True, help="the hub's address, https://HOST[:PORT] (http:// only on this PC)")
    p.add_argument("--code", help="the one-time code from `edge-hub enroll-code` (default: $EDGE_ENROLL_CODE)")
    p.add_argument("--store", help="the store id the code is for: refused if the code is for another store")
    p.add_argument("--config", help=f"where devices.yaml goes (default: $EDGE_CONFIG or {DEFAULT_CONFIG}); "
                                    "credentials go in tls/ beside it")
    p.add_argument("--data-dir", help=f"where the store will live (default: $EDGE_DATA_DIR or {DEFAULT_DATA_DIR})")
    p.add_argument("--cafile", default=os.environ.get("EDGE_HUB_CAFILE") or None,
                   help="PEM CA of the hub's HTTPS certificate (default: $EDGE_HUB_CAFILE, else the system's CAs)")
    p.add_argument("--hostname", help="the name kiosks dial this PC by (default: its host name)")
    p.add_argument("--address", action="append", default=[], metavar="IP",
                   help="an address of this PC for the API certificate (repeatable; 127.0.0.1 and the one facing "
                        "the hub are always named)")
    p.add_argument("--force", action="store_true", help="replace a config and credentials that exist")
    p.set_defaults(func=cmd_enroll)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
