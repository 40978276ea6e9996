"""Pairing an associate's PAD or wristband: one-use codes, paired devices, their tokens, revocation.

An admin or the console asks for a code for a named device (``new_code``):
8 characters from ``ALPHABET`` (no 0/O/1/I/L to misread), shown as
``XXXX-XXXX``, good once for ``CODE_TTL_S`` seconds. The device sends it
back (``Pairing.pair``) and gets a token of its own: random, shown once.
The store keeps only SHA-256 digests of both, never a code or a token
(``pairing_codes``, ``paired_clients``). A paired device is an API client of
role associate named by its ``name``, serving its ``zones``; revoking it
refuses its token at once and cancels the codes for that name not yet used.
A name unpaired and paired again keeps its earlier row in
``unpaired_clients``: who paired and unpaired it, and when. A name that
devices.yaml gives a client is never a paired device's: a code for it is
refused when it is made and when it is spent, and a paired device whose name
devices.yaml took since is not loaded (said once in the log at start).

``Pairing`` holds the paired devices in memory, loaded from SQLite at start
and changed with each pair and revoke, so a token is checked with a dict
lookup. ``last_seen`` is written at most once per ``SEEN_EVERY_S`` per device.

Wrong codes are logged at most once a minute, with a count (``LogOnce``), and
limited (``Attempts``): ``MAX_WRONG`` per address, then that
address is refused for ``LOCK_S``; and at most ``STORE_WRONG_PER_MIN`` a
minute for the whole store, so that an attacker rotating addresses cannot try
codes quickly either. A code is counted when it is let in (``Attempts.check``,
before the store is asked: many sent at once cannot all pass), and given back
if it was right; a lock is never shortened by a wrong code answered late. The
limits live in memory: a restart forgets them.

Refusals are the domain's errors (edge_agent/errors.py); nothing here
knows HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from edge_agent.config import ClientConfig, Role
from edge_agent.errors import Conflict, Forbidden, Invalid, NotFound, StoreClosed, TooMany
from edge_agent.store import Store, Tx
from edge_core.bus import utcnow
from edge_core.logonce import LogOnce

log = logging.getLogger(__name__)

# Letters and digits that cannot be misread for another: no 0/O, no 1/I/L.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8  # 31^8, about 8.5e11 codes
CODE_TTL_S = 600
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
ZONE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,31}$"  # as a shelf label's zone (drivers/shelf_label/config.py)
MAX_ZONES = 32
SEEN_EVERY_S = 60.0
MAX_WRONG = 5
LOCK_S = 15 * 60
STORE_WRONG_PER_MIN = 60
ADDRESSES_KEPT = 10_000  # addresses with wrong codes remembered; the oldest go first
WRONG_LOGGED_EVERY_S = 60.0  # one warning line a minute for wrong codes, with how many came meanwhile

_NAME = re.compile(NAME_PATTERN)


class PairingRefused(Forbidden):
    """A code that is unknown, used or expired."""


class PairingLocked(TooMany):
    """Too many wrong codes from this address, or from everyone this minute."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class NameTaken(Conflict):
    """The name belongs to a devices.yaml client or to a paired device not revoked."""


class BadName(Invalid):
    """A device name that is not 1..32 of [a-z0-9-]."""


class NoSuchDevice(NotFound):
    """No paired device by that name."""


class ApiClient(ClientConfig):
    """A client as the API sees it: a devices.yaml client (no zones), or a paired device with its zones."""

    zones: tuple[str, ...] = ()
    paired: bool = False


def digest(secret: str) -> str:
    """The SHA-256 hex digest the store keeps of a code or a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize(code: str) -> str:
    """A typed code as stored: capitals, without spaces and dashes."""
    return "".join(code.split()).replace("-", "").upper()


def shown(code: str) -> str:
    """``K7QPM3XD`` as ``K7QP-M3XD``."""
    return f"{code[:4]}-{code[4:]}"


@dataclass(frozen=True)
class Code:
    """A pairing code just made: the only moment it exists in clear."""

    code: str  # XXXX-XXXX
    name: str
    zones: tuple[str, ...]
    expires_at: datetime
    ttl: int


@dataclass(frozen=True)
class Paired:
    """A device just paired: its token, shown once, and the client it is."""

    token: str
    client: ApiClient


def check_name(name: str, config_names: Iterable[str]) -> None:
    """BadName or NameTaken (a devices.yaml client's) unless ``name`` can be given to a device."""
    if not _NAME.fullmatch(name):
        raise BadName(f"name {name[:40]!r}: use 1 to 32 of a-z, 0-9 and '-' (not first), e.g. pad-anna")
    if name in set(config_names):
        raise NameTaken(f"{name!r} is a client of devices.yaml; choose another name for the device")


def new_code(tx: Tx, name: str, zones: Iterable[str], by: str, config_names: Iterable[str],
             now: datetime | None = None, ttl: int = CODE_TTL_S) -> Code:
    """Store a new pairing code for the device ``name`` (its SHA-256 only) and return it in clear.

    An earlier unused code for the same name is dropped: one code per device
    is out at a time. Codes used or expired a day ago are deleted.
    """
    check_name(name, config_names)
    zones = tuple(dict.fromkeys(zones))
    now = now or utcnow()
    row = tx.execute("SELECT revoked_at FROM paired_clients WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] is None:
        raise NameTaken(f"{name!r} is a paired device; unpair it first (DELETE /v1/paired/{name}) or choose "
                        "another name")
    tx.execute("DELETE FROM pairing_codes WHERE (name = ? AND used_at IS NULL) OR expires_at < ?",
               (name, (now - timedelta(days=1)).isoformat()))
    plain = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    expires = now + timedelta(seconds=ttl)
    tx.execute("INSERT INTO pairing_codes (code_sha256, name, role, zones, created_at, created_by, expires_at) "
               "VALUES (?, ?, 'associate', ?, ?, ?, ?)",
               (digest(plain), name, json.dumps(list(zones)), now.isoformat(), by, expires.isoformat()))
    return Code(shown(plain), name, zones, expires, ttl)


def free_name(conn, prefix: str, config_names: Iterable[str]) -> str:
    """``<prefix>1``, ``<prefix>2``, ...: the first that no paired device (not revoked) nor client has."""
    taken = {r[0] for r in conn.execute("SELECT name FROM paired_clients WHERE revoked_at IS NULL")}
    taken |= set(config_names)
    n = 1
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


class Attempts:
    """Wrong codes per address (``max_wrong`` then locked ``lock_s``) and for the whole store (``per_minute``)."""

    def __init__(self, max_wrong: int = MAX_WRONG, lock_s: float = LOCK_S, per_minute: int = STORE_WRONG_PER_MIN,
                 clock: Callable[[], float] = time.monotonic, kept: int = ADDRESSES_KEPT):
        self.max_wrong, self.lock_s, self.per_minute = max_wrong, lock_s, per_minute
        self._clock = clock
        self._kept = kept
        self._wrong: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (wrong codes, locked until)
        self._recent: deque[float] = deque()  # times of the store's codes (wrong, or being checked) this minute
        self._pending: dict[str, int] = {}  # address -> codes let in and not yet answered

    def check(self, address: str) -> float:
        """PairingLocked if ``address`` may not try a code now; else the code is counted (a reservation) at once.

        Returns the reservation's time, for ``right`` or ``release`` to give it back.
        """
        now = self._clock()
        count, until = self._wrong.get(address, (0, 0.0))
        if until > now:
            raise PairingLocked(f"{self.max_wrong} wrong pairing codes from this address; try again in "
                                f"{math.ceil((until - now) / 60)} min", math.ceil(until - now))
        while self._recent and self._recent[0] <= now - 60:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            wait = math.ceil(self._recent[0] + 60 - now)
            raise PairingLocked(f"too many wrong pairing codes in this store this minute; try again in {wait} s",
                                max(1, wait))
        if count + self._pending.get(address, 0) >= self.max_wrong:
            raise PairingLocked("too many pairing codes from this address at once; try again in a moment", 1)
        self._pending[address] = self._pending.get(address, 0) + 1
        self._recent.append(now)
        return now

    def _settle(self, address: str) -> bool:
        """One code of ``address`` answered; False if none was let in by ``check``."""
        left = self._pending.get(address, 0)
        if left <= 0:
            return False
        if left == 1:
            del self._pending[address]
        else:
            self._pending[address] = left - 1
        return True

    def wrong(self, address: str) -> int:
        """Count a wrong code from ``address``; how many it has sent in a row. A lock stays as long as it was."""
        now = self._clock()
        if not self._settle(address):
            self._recent.append(now)  # not let in by check(): counted for the store now
        count, until = self._wrong.pop(address, (0, 0.0))
        if until > now:
            self._wrong[address] = (count, until)  # answered after the lock began: it stays
            return self.max_wrong
        count += 1
        self._wrong[address] = (0, now + self.lock_s) if count >= self.max_wrong else (count, 0.0)
        while len(self._wrong) > self._kept:
            self._wrong.popitem(last=False)
        return count

    def release(self, address: str, at: float) -> None:
        """Give back the reservation ``check`` made at ``at``: the code was neither right nor wrong."""
        if self._settle(address):
            try:
                self._recent.remove(at)
            except ValueError:
                pass  # already out of the minute

    def right(self, address: str, at: float | None = None) -> None:
        """A good code: its reservation given back, and the address starts again from zero."""
        if at is not None:
            self.release(address, at)
        self._wrong.pop(address, None)


_COLUMNS = "name, role, zones, paired_at, paired_by, last_seen, revoked_at, revoked_by"


def _device(row: tuple) -> dict:
    return {**dict(zip(_COLUMNS.split(", "), row)), "zones": json.loads(row[2])}


class Pairing:
    """The paired devices, in memory for the token check, on disk in ``paired_clients``."""

    def __init__(self, store: Store, config_names: Iterable[str], timezone: str = "UTC",
                 clock: Callable[[], datetime] = utcnow, attempts: Attempts | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.store = store
        self.config_names = frozenset(config_names)
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self.attempts = attempts or Attempts(clock=monotonic)
        self._monotonic = monotonic
        self._by_hash: dict[str, ApiClient] = {}
        self._revoked: dict[str, str] = {}  # token digest -> name, for "this device was unpaired"
        self._seen: dict[str, float] = {}  # name -> when last_seen was last written (monotonic)
        self._wrong_log = LogOnce(log, every_s=WRONG_LOGGED_EVERY_S)

    async def load(self) -> None:
        """Read the paired devices from the store; one whose name is a devices.yaml client's now is left out."""
        rows = await self.store.read(lambda c: c.execute(
            "SELECT name, token_sha256, zones, revoked_at FROM paired_clients UNION ALL "
            "SELECT name, token_sha256, zones, revoked_at FROM unpaired_clients").fetchall())
        shadowed = []
        for name, token_hash, zones, revoked in rows:
            if revoked is None and name in self.config_names:
                shadowed.append(name)  # its token must not pass for the devices.yaml client of that name
            elif revoked is None:
                self._by_hash[token_hash] = _client(name, token_hash, json.loads(zones))
            else:
                self._revoked[token_hash] = name
        if shadowed:
            log.warning("pairing: paired device(s) %s not loaded: devices.yaml has a client of that name now; "
                        "unpair it (DELETE /v1/paired/NAME) or rename the client", ", ".join(sorted(shadowed)))

    def client(self, token_hash: str) -> ApiClient | None:
        """The paired device whose token hashes to ``token_hash``, if it is paired and not revoked."""
        found = self._by_hash.get(token_hash)
        if found is not None:
            self._saw(found.name)
        return found

    def holds(self, token_hash: str) -> bool:
        """Whether the token that hashes to ``token_hash`` is a paired device's now (no ``last_seen`` written)."""
        return token_hash in self._by_hash

    def unpaired(self, token_hash: str) -> str | None:
        """The name of the device this token was of, if that device was unpaired."""
        return self._revoked.get(token_hash)

    async def code(self, name: str, zones: Iterable[str], by: str) -> Code:
        """A new pairing code for ``name`` (see ``new_code``)."""
        made = await self.store.write(lambda tx: new_code(tx, name, zones, by, self.config_names, self.clock()))
        log.info("pairing: %s made a pairing code for %s, good until %s", by, name,
                 made.expires_at.astimezone(self.tz).strftime("%H:%M"))
        return made

    async def pair(self, code: str, address: str) -> Paired:
        """Spend ``code`` and pair its device; PairingLocked, PairingRefused or NameTaken otherwise."""
        at = self.attempts.check(address)
        try:
            return await self._pair(code, address, at)
        except PairingRefused:
            raise  # counted as a wrong code
        except BaseException:
            self.attempts.release(address, at)  # neither right nor wrong (a name taken meanwhile, the store)
            raise

    async def _pair(self, code: str, address: str, at: float) -> Paired:
        plain = normalize(code)
        if len(plain) != CODE_LENGTH or not set(plain) <= set(ALPHABET):
            self._wrong(address, "not a pairing code")
            raise PairingRefused("this is not a pairing code: 8 letters and digits, shown as XXXX-XXXX")
        token = secrets.token_urlsafe(32)
        token_hash = digest(token)
        now = self.clock()

        def write(tx: Tx) -> ApiClient | str:
            row = tx.execute("SELECT name, zones, expires_at, used_at FROM pairing_codes WHERE code_sha256 = ?",
                             (digest(plain),)).fetchone()
            if row is None:
                return "unknown pairing code; check it, or ask for a new one"
            name, zones, expires_at, used_at = row
            if name in self.config_names:  # devices.yaml gave the name to a client since the code was made
                raise NameTaken(f"{name!r} is a client of devices.yaml now; ask for a code for another name")
            if used_at is not None:
                return "this pairing code was already used; ask for a new one"
            expires = datetime.fromisoformat(expires_at)
            if expires <= now:
                return f"this pairing code expired at {expires.astimezone(self.tz):%H:%M}; ask for a new one"
            taken = tx.execute("SELECT revoked_at FROM paired_clients WHERE name = ?", (name,)).fetchone()
            if taken is not None and taken[0] is None:
                raise NameTaken(f"{name!r} was paired meanwhile; unpair it first or ask for a code for another name")
            tx.execute("UPDATE pairing_codes SET used_at = ? WHERE code_sha256 = ?", (now.isoformat(), digest(plain)))
            creator = tx.execute("SELECT created_by FROM pairing_codes WHERE code_sha256 = ?",
                                 (digest(plain),)).fetchone()[0]
            # The name's earlier device, unpaired, keeps its row in the history.
            tx.execute(f"INSERT INTO unpaired_clients ({_COLUMNS}, token_sha256) SELECT {_COLUMNS}, token_sha256 "
                       "FROM paired_clients WHERE name = ? AND revoked_at IS NOT NULL", (name,))
            tx.execute("INSERT OR REPLACE INTO paired_clients (name, role, token_sha256, zones, paired_at, paired_by, "
                       "last_seen, revoked_at, revoked_by) VALUES (?, 'associate', ?, ?, ?, ?, ?, NULL, NULL)",
                       (name, token_hash, zones, now.isoformat(), creator, now.isoformat()))
            return _client(name, token_hash, json.loads(zones))

        done = await self.store.write(write)
        if isinstance(done, str):
            self._wrong(address, done.split(";")[0])
            raise PairingRefused(done)
        self.attempts.right(address, at)
        self._by_hash[token_hash] = done
        self._seen[done.name] = self._monotonic()
        log.info("pairing: %s paired from %s (zones: %s)", done.name, address, ", ".join(done.zones) or "all")
        return Paired(token, done)

    async def revoke(self, name: str, by: str) -> dict:
        """Unpair ``name``: its token is refused from now on, and its codes not yet used are cancelled.

        The device as it is now (or, with only codes cancelled, its name) and ``codes_cancelled``.
        NoSuchDevice if there is neither; again: unchanged.
        """
        now = self.clock().isoformat()

        def write(tx: Tx) -> tuple[tuple | None, int, list[str]]:
            tx.execute("UPDATE paired_clients SET revoked_at = ?, revoked_by = ? WHERE name = ? AND revoked_at IS NULL",
                       (now, by, name))
            codes = [json.loads(z) for (z,) in tx.execute(
                "SELECT zones FROM pairing_codes WHERE name = ? AND used_at IS NULL", (name,))]
            tx.execute("DELETE FROM pairing_codes WHERE name = ? AND used_at IS NULL", (name,))
            row = tx.execute(f"SELECT {_COLUMNS}, token_sha256 FROM paired_clients WHERE name = ?", (name,)).fetchone()
            return row, len(codes), codes[0] if codes else []

        row, cancelled, code_zones = await self.store.write(write)
        if row is None and not cancelled:
            raise NoSuchDevice(f"no paired device {name[:40]!r}")
        if cancelled:
            log.info("pairing: %s cancelled %d unused pairing code(s) for %s", by, cancelled, name)
        if row is None:
            return {"name": name, "role": "associate", "zones": code_zones, "paired_at": None, "paired_by": None,
                    "last_seen": None, "revoked_at": None, "revoked_by": None, "codes_cancelled": cancelled}
        token_hash = row[-1]
        if self._by_hash.pop(token_hash, None) is not None:
            log.info("pairing: %s unpaired by %s", name, by)
        self._revoked[token_hash] = name
        self._seen.pop(name, None)
        return {**_device(row[:-1]), "codes_cancelled": cancelled}

    async def devices(self) -> list[dict]:
        """Every paired device, revoked ones too (a name paired again: its earlier devices too), by name, then
        by when they were paired."""
        rows = await self.store.read(lambda c: c.execute(
            f"SELECT {_COLUMNS}, 0 AS now FROM unpaired_clients UNION ALL SELECT {_COLUMNS}, 1 FROM paired_clients "
            "ORDER BY name, paired_at, now").fetchall())
        return [_device(r[:-1]) for r in rows]

    def _wrong(self, address: str, why: str) -> None:
        count = self.attempts.wrong(address)
        # The code itself is never logged: only that it was wrong, and why. One line a minute for the whole store
        # (an attacker's thousands of codes are not thousands of lines), then with how many came meanwhile.
        self._wrong_log.warning("wrong code", "pairing: refused a code from %s (%s; %d in a row)", address, why, count)

    def _saw(self, name: str) -> None:
        """Write ``last_seen`` if it was last written ``SEEN_EVERY_S`` ago or more; never waits, never fails."""
        now = self._monotonic()
        if now - self._seen.get(name, -math.inf) < SEEN_EVERY_S:
            return
        self._seen[name] = now
        at = self.clock().isoformat()
        try:
            fut = self.store.submit(lambda tx: tx.execute(
                "UPDATE paired_clients SET last_seen = ? WHERE name = ? AND revoked_at IS NULL", (at, name)))
        except StoreClosed:
            return
        fut.add_done_callback(functools.partial(_seen_written, name))


def _seen_written(name: str, fut: Future) -> None:
    if (err := fut.exception()) is not None:
        log.warning("pairing: last_seen of %s not written: %s", name, err)


def _client(name: str, token_hash: str, zones: list[str]) -> ApiClient:
    return ApiClient(name=name, role=Role.ASSOCIATE, token_sha256=token_hash, zones=tuple(zones), paired=True)
