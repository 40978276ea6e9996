"""The hub's enrollment tables (sync/hub/fleet/enroll.py), in SQL both SQLite and PostgreSQL run.

``enroll_codes``: one row per one-time code. The code itself is never
stored, only its SHA-256 (``code_sha256``), beside the store it enrolls, the
devices.yaml it hands over, who issued it and until when it holds. Once used:
when, from which address, the host name the PC gave and the serials of the two
certificates signed for it (no key: the PC keeps its keys).
"""

from __future__ import annotations

TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS enroll_codes (
        code_sha256 TEXT PRIMARY KEY, store TEXT NOT NULL, devices_yaml TEXT NOT NULL,
        issued_by TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        used_at TEXT, used_from TEXT, hostname TEXT, mqtt_serial TEXT, api_serial TEXT)""",
    """CREATE INDEX IF NOT EXISTS enroll_codes_store ON enroll_codes (store, issued_at)""",
)
