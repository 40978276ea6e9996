"""The store's own secret: keyed hashes of member ids and pickup codes.

``privacy.key`` in the data directory holds 32 random bytes, made once
(mode 0600) when the store first opens. It is kept beside the database, not
in it: a copy of ``store.db`` alone (a support bundle, a stolen backup)
cannot turn a pseudonym back into a member id, nor a stored pickup code
hash into the code, by trying every id or every 6-digit code.

- ``pseudonym(key, member_id)``: what stands for a member once the store no
  longer needs the id (edge_agent/privacy.py): the same member always gives
  the same pseudonym here, so the store's own statistics still link two
  rows of one member, and without the key nothing leads back to the id.
- ``code_hash(key, order_id, code)``: a pickup code as ``orders`` stores it;
  checking a code at hand-over hashes what the customer shows.

The database records the key's fingerprint (``meta.privacy_key``): opening
the store with another key, or none while the database says it had one, is
refused, because pickup codes stored under the old key could not be checked
and pseudonyms would stop linking. The README's "Personal data" section
says what to do after losing the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from pathlib import Path

from edge_agent.errors import StoreError

KEY_FILE = "privacy.key"
KEY_BYTES = 32
# "p1-": version 1 of the pseudonym (HMAC-SHA256 of the id, first 128 bits, hex).
PSEUDONYM_PREFIX = "p1-"
CODE_PREFIX = "h1-"


def load_or_create(path: Path) -> bytes:
    """The key in ``path``, made (32 random bytes, mode 0600, durably) if the file does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made one first: that one is kept
        except FileExistsError:
            pass
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        raise StoreError(f"cannot create the store's key {path}: {err.strerror}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise StoreError(f"cannot read the store's key {path}: {err.strerror}; it must be readable by the agent's "
                         "user (edge-agent)") from err
    if len(key) != KEY_BYTES:
        raise StoreError(f"{path} holds {len(key)} bytes, not the {KEY_BYTES} of a store key; restore it from the "
                         "backup taken with store.db")
    return key


def fingerprint(key: bytes) -> int:
    """A short public id of the key (56 bits of its SHA-256), kept in the database to notice a swapped key."""
    return int.from_bytes(hashlib.sha256(b"edge-agent key id\0" + key).digest()[:7], "big")


def check(conn: sqlite3.Connection, key: bytes, path: Path) -> None:
    """Refuse a key that is not the one the database was used with; remember it on first use."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'privacy_key'").fetchone()
    mine = fingerprint(key)
    if row is None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('privacy_key', ?)", (mine,))
        return
    if row[0] != mine:
        raise StoreError(
            f"{path} is not the key this store database was used with (its fingerprint is {row[0]:x}, the file's "
            f"{mine:x}): stored pickup codes could not be checked and member pseudonyms would stop linking. Put back "
            "the privacy.key taken with this store.db; if that key is lost for good, see the README, "
            "'Personal data', on starting a new one")


def database_key(conn: sqlite3.Connection) -> bytes:
    """The key beside the database file of ``conn`` (for a migration run outside ``Store``)."""
    row = conn.execute("SELECT file FROM pragma_database_list WHERE name = 'main'").fetchone()
    if not row or not row[0]:
        raise StoreError("an in-memory database has no data directory to keep privacy.key in")
    return load_or_create(Path(row[0]).parent / KEY_FILE)


def pseudonym(key: bytes, member_id: str) -> str:
    """The member's pseudonym in this store: linkable here, not readable back without the key."""
    digest = hmac.new(key, b"member\0" + member_id.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def code_hash(key: bytes, order_id: str, code: str) -> str:
    """A pickup code as stored: keyed to the store and to the order (one code's hash says nothing of another's)."""
    digest = hmac.new(key, b"pickup\0" + order_id.encode() + b"\0" + code.encode(), hashlib.sha256).hexdigest()
    return CODE_PREFIX + digest


def code_matches(key: bytes, order_id: str, code: str, stored: str) -> bool:
    """True if ``code`` is the order's pickup code (a constant-time comparison of the hashes)."""
    return hmac.compare_digest(code_hash(key, order_id, code).encode(), stored.encode())
