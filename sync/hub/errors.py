"""One error tree for the reference hub.

    HubError                       anything the hub raises on purpose
    (BrokerURLError, from sync/brokerurl.py: a --broker URL that does not parse; a ValueError)
    ├── HubDBError                 the hub's database failed; the batch is not acknowledged
    │   └── DBDriverMissing        postgresql:// asked for, psycopg not installed
    ├── BatchRejected              an inbound payload the hub refuses (a topics.PayloadError too)
    └── ConsoleConfigError         bad console settings: alert rules, token file, --http address

sqlite3.Error and psycopg.Error are mapped to HubDBError in db.py, paho's
connect errors (OSError) to a message in cli.py, always ``raise ... from err``.
"""

from __future__ import annotations

from sync.brokerurl import BrokerURLError  # shared with the agent's link
from sync.topics import PayloadError

__all__ = ["HubError", "BrokerURLError", "HubDBError", "DBDriverMissing", "BatchRejected", "ConsoleConfigError"]


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class HubDBError(HubError):
    """A database read or write failed."""


class DBDriverMissing(HubDBError):
    """The database URL needs a driver that is not installed."""


class BatchRejected(HubError, PayloadError):
    """A payload the hub will not store; ``reason`` is a short category for rate-limited logging."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class ConsoleConfigError(HubError):
    """The console's settings (alert rules, token file, listen address) are wrong; the message says how."""
