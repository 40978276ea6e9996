"""The local store: SQLite in WAL mode, the outbox, and group commit."""

from edge_agent.store.db import Store, Tx
from edge_agent.store.outbox import OutboxEvent

__all__ = ["Store", "Tx", "OutboxEvent"]
