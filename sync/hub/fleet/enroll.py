"""Enrollment: one-time codes the hub issues for a store id, redeemed by ``edge-agent enroll`` on a fresh PC.

A code is issued for one store with the devices.yaml that store starts with
(``edge-hub enroll-code``, or the console's ``POST /api/enrollments``). It
is shown once; the hub keeps only its SHA-256 (enroll_schema.py). Redeeming
it (``POST /enroll``, enroll_api.py) signs the PC's two certificate requests
with the enrollment CA (enroll_ca.py) and marks the code used, in one
transaction: a code enrolls one PC, once, before it expires. A used code is
refused with when and from where it was used, an expired one with when it
expired, an unknown one without a word about any store.

Errors here are the domain's (``EnrollError`` and its kinds); enroll_api.py
maps them to HTTP, the CLI to its exit codes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from sync.hub.errors import HubError
from sync.hub.fleet.enroll_ca import CSRRefused, EnrollmentCA, check_names, parse_csr, sign_pair

DEFAULT_TTL_S = 3600
MAX_TTL_S = 7 * 86_400
MAX_DEVICES_YAML = 256 * 1024
STORE_ID = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"  # as the agent's store.id (edge_agent/config_yaml.py)
_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class EnrollError(HubError):
    """An enrollment the hub refuses; the message is for the person at the store PC."""


class CodeUnknown(EnrollError):
    """No such code (mistyped, or never issued)."""


class CodeUsed(EnrollError):
    """The code enrolled a PC already."""


class CodeExpired(EnrollError):
    """The code's time ran out before it was used."""


class EnrollInvalid(EnrollError):
    """The request (a CSR, a name, a store id, a devices.yaml) is not acceptable."""


class EnrollTooMany(EnrollError):
    """Too many wrong codes from one address; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def new_code() -> str:
    """A fresh code: 80 random bits as 16 base32 characters (A-Z, 2-7) in groups of four."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def code_hash(code: str) -> str:
    """The SHA-256 the hub keeps of a code, after the same normalising a person's typing gets."""
    # Base32 has no 0, 1 or 8: read them as the letters they look like.
    norm = "".join(c for c in code.upper().translate(str.maketrans("018", "OIB")) if c in _CODE_ALPHABET)
    return hashlib.sha256(norm.encode()).hexdigest()


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def _shown(iso: str) -> str:
    return iso[:19].replace("T", " ") + " UTC"


def check_devices_yaml(store: str, text: str) -> None:
    """What the hub can check of a store's devices.yaml without the agent: size, YAML, and store.id.

    The agent checks the whole file with ``edge-agent check``'s engine when it enrolls.
    """
    import re

    if not re.match(STORE_ID, store):
        raise EnrollInvalid(f"store id {store!r}: lowercase letters, digits and '-', e.g. store-042")
    if store in ("hub", "all"):
        raise EnrollInvalid(f"store id {store!r} is reserved (the hub's own login and the chain-wide downlink)")
    if len(text.encode()) > MAX_DEVICES_YAML:
        raise EnrollInvalid(f"the devices.yaml has more than {MAX_DEVICES_YAML // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise EnrollInvalid(f"the devices.yaml is not valid YAML: {err}") from err
    found = data.get("store", {}).get("id") if isinstance(data, dict) and isinstance(data.get("store"), dict) else None
    if found != store:
        raise EnrollInvalid(f"the devices.yaml's store.id is {found!r}, not {store!r}; a code enrolls the store "
                            "its devices.yaml names")


@dataclass(frozen=True)
class Issued:
    """A code just issued: shown once, never stored."""

    code: str
    store: str
    expires_at: str
    issued_by: str


def issue(tx: Any, store: str, devices_yaml: str, *, ttl_s: int, by: str, now: datetime) -> Issued:
    """Issue a one-time code for ``store`` (in transaction ``tx``); EnrollInvalid for a bad store or file."""
    check_devices_yaml(store, devices_yaml)
    if not 60 <= ttl_s <= MAX_TTL_S:
        raise EnrollInvalid(f"ttl {ttl_s} s: from 60 s to {MAX_TTL_S // 86_400} days")
    code = new_code()
    expires = _iso(now + timedelta(seconds=ttl_s))
    tx.execute("INSERT INTO enroll_codes (code_sha256, store, devices_yaml, issued_by, issued_at, expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", (code_hash(code), store, devices_yaml, by[:64], _iso(now), expires))
    return Issued(code, store, expires, by[:64])


_LIST_COLS = "store, issued_by, issued_at, expires_at, used_at, used_from, hostname, mqtt_serial, api_serial"


def listing(db: Any, store: str | None = None, *, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Codes issued (newest first), with their state: ``unused``, ``used`` or ``expired``; never the code."""
    where, params = ("WHERE store = ? ", (store,)) if store else ("", ())
    rows = db.query(f"SELECT {_LIST_COLS} FROM enroll_codes {where}ORDER BY issued_at DESC LIMIT {int(limit)}",
                    params)
    out = []
    for r in rows:
        d = dict(zip(_LIST_COLS.split(", "), r))
        d["state"] = "used" if d["used_at"] else "expired" if d["expires_at"] <= _iso(now) else "unused"
        out.append(d)
    return out


@dataclass(frozen=True)
class EnrollRequest:
    """What a store PC sends: the code, its two CSRs (PEM), its host name and addresses."""

    code: str
    mqtt_csr: str
    api_csr: str
    hostname: str
    addresses: list[str]


def redeem(tx: Any, ca: EnrollmentCA, broker: str, req: EnrollRequest, *, source: str,
           now: datetime) -> dict[str, Any]:
    """Check the code and the requests, sign, mark the code used: the answer for the PC (no key in it)."""
    row = tx.execute("SELECT store, devices_yaml, expires_at, used_at, used_from FROM enroll_codes "
                     "WHERE code_sha256 = ?", (code_hash(req.code),)).fetchone()
    if row is None:
        raise CodeUnknown("this enrollment code is not known here; check it, or ask for a new one")
    store, devices_yaml, expires_at, used_at, used_from = row
    if used_at:
        raise CodeUsed(f"this code was used at {_shown(used_at)} from {used_from}; ask for a new one")
    if expires_at <= _iso(now):
        raise CodeExpired(f"this code expired at {_shown(expires_at)}; ask for a new one")
    try:
        names = check_names(req.hostname, req.addresses)
        signed = sign_pair(ca, store, parse_csr(req.mqtt_csr, "mqtt_csr"), parse_csr(req.api_csr, "api_csr"),
                           names, now)
    except CSRRefused as err:
        raise EnrollInvalid(str(err)) from err
    cur = tx.execute("UPDATE enroll_codes SET used_at = ?, used_from = ?, hostname = ?, mqtt_serial = ?, "
                     "api_serial = ? WHERE code_sha256 = ? AND used_at IS NULL",
                     (_iso(now), source[:64], req.hostname[:253], signed.mqtt_serial, signed.api_serial,
                      code_hash(req.code)))
    if cur.rowcount != 1:  # another request took it between the read and now
        raise CodeUsed("this code was used a moment ago; ask for a new one")
    return {"store": store, "broker": broker, "ca_pem": ca.broker_ca_pem, "mqtt_cert_pem": signed.mqtt_pem,
            "api_cert_pem": signed.api_pem, "api_ca_pem": ca.cert_pem, "devices_yaml": devices_yaml}


# edge-hub subcommands -------------------------------------------------------------

def _err(msg: str) -> None:
    print(f"edge-hub: {msg}", file=sys.stderr)


def cmd_ca_init(args: argparse.Namespace) -> int:
    """Make the enrollment CA."""
    from sync.hub.fleet.enroll_ca import init_ca

    try:
        cert = init_ca(Path(args.dir))
    except FileExistsError as err:
        _err(str(err))
        return 1
    print(f"enrollment CA made: {cert} (key {Path(args.dir) / 'ca.key'}, mode 0600)")
    print(f"  Mosquitto: copy {cert} as the enrolled stores' listener's cafile (systemd/mosquitto/edge-hub.conf.example)")
    print(f"  Hub:       edge-hub run ... --http HOST:PORT --enroll-ca {args.dir} --enroll-broker mqtts://HOST:PORT")
    print(f"  If the broker's server certificate comes from another CA, copy that CA to {Path(args.dir) / 'broker-ca.crt'}")
    return 0


def cmd_enroll_code(args: argparse.Namespace) -> int:
    """Issue a one-time code for a store and print it with the command to run on the PC."""
    from sync.hub.db import open_db

    path = Path(args.devices)
    if path.stat().st_size > MAX_DEVICES_YAML:
        _err(f"{path}: more than {MAX_DEVICES_YAML // 1024} KiB; is it a devices.yaml?")
        return 2
    text = path.read_text(encoding="utf-8")
    db = open_db(args.db)
    try:
        with db.transaction() as tx:
            issued = issue(tx, args.store, text, ttl_s=args.ttl, by=args.by, now=datetime.now(timezone.utc))
    except EnrollInvalid as err:
        _err(f"{path}: {err}" if "devices.yaml" in str(err) else str(err))
        return 2
    finally:
        db.close()
    hub = args.hub or "https://HUB"
    print(f"Store   {issued.store}")
    print(f"Code    {issued.code} (one use, until {_shown(issued.expires_at)}; shown only now)")
    print("On the store PC:")
    print(f"  sudo edge-agent enroll --hub {hub} --code {issued.code} --store {issued.store} "
          "--config /etc/edge-agent/devices.yaml --data-dir /var/lib/edge-agent")
    if not args.hub:
        print("  (HUB: where `edge-hub run --http` is reachable; pass --hub URL to print it here)")
    return 0


def format_enrollments(rows: list[dict[str, Any]]) -> str:
    """The ``edge-hub enrollments`` table."""
    table = [("STORE", "ISSUED", "BY", "STATE", "EXPIRES", "USED", "FROM", "HOST")]
    for r in rows:
        table.append((r["store"], r["issued_at"][:19], r["issued_by"], r["state"], r["expires_at"][:19],
                      (r["used_at"] or "-")[:19], r["used_from"] or "-", r["hostname"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def cmd_enrollments(args: argparse.Namespace) -> int:
    """List the codes issued (never the codes themselves)."""
    from sync.hub.db import open_db

    db = open_db(args.db)
    try:
        rows = listing(db, args.store, now=datetime.now(timezone.utc))
    finally:
        db.close()
    print(format_enrollments(rows) if rows else "no enrollment code issued" + (f" for {args.store}" if args.store else ""))
    return 0


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of enrollment."""
    import os

    ca = sub.add_parser("ca", help="the enrollment CA that signs enrolled store PCs' certificates")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    init = ca_sub.add_parser("init", help="make the enrollment CA (ca.crt, ca.key 0600) in a new directory")
    init.add_argument("--dir", required=True, help="where the CA lives, e.g. /etc/edge-hub/enroll-ca")
    init.set_defaults(func=cmd_ca_init)

    code = sub.add_parser("enroll-code", help="issue a one-time code that enrolls a new store PC")
    code.add_argument("store", metavar="STORE")
    code.add_argument("--devices", required=True, metavar="FILE", help="the store's first devices.yaml")
    code.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, metavar="S",
                      help=f"seconds the code holds (default {DEFAULT_TTL_S}, at most {MAX_TTL_S})")
    code.add_argument("--by", default=os.environ.get("USER") or "cli", help="who issued it (default $USER)")
    code.add_argument("--hub", default=os.environ.get("EDGE_HUB_ENROLL_URL") or None, metavar="URL",
                      help="the hub's HTTP address as the store PC reaches it, for the printed command "
                           "($EDGE_HUB_ENROLL_URL)")
    code.add_argument("--db", default=env_db)
    code.set_defaults(func=cmd_enroll_code)

    lst = sub.add_parser("enrollments", help="codes issued: used when and from where, or expired (not the codes)")
    lst.add_argument("store", metavar="STORE", nargs="?")
    lst.add_argument("--db", default=env_db)
    lst.set_defaults(func=cmd_enrollments)
