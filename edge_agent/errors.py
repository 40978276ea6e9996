"""The agent's branch of the one error tree: the local store's errors and the domain's refusals.

The root of the tree, the config and device errors, is edge_core/errors.py
(drivers raise those without importing the agent); its docstring draws the
whole tree. The agent adds:

    EdgeError                      (edge_core.errors)
    ├── StoreError                 the local SQLite store failed
    │   └── StoreClosed            a write was submitted after stop()
    └── DomainError                a flow refuses a request; the message says why and how to fix it
        ├── NotFound               what the request names is not in this store
        ├── Conflict               it contradicts what the store holds (a reused idempotency key, a state)
        ├── Invalid                the request itself cannot be carried out as asked
        ├── Forbidden              this client may not do it
        ├── Unavailable            not now: the store lacks what it needs
        └── TooMany                too many attempts; ``retry_after`` seconds, when known

A flow's own errors (sales.SaleRejected, orders.CodeLocked, ...) derive from
one kind, named first among their bases. The kinds carry no HTTP status: the
local API maps them in one place (edge_agent/api/errors.py).

sqlite3.Error is mapped onto StoreError at the store's boundary, always with
``raise ... from err``.
"""

from __future__ import annotations

from edge_core.errors import EdgeError


class StoreError(EdgeError):
    """The local store could not complete a read or a write."""


class StoreClosed(StoreError):
    """The store is stopped and accepts no more writes."""


class DomainError(EdgeError):
    """A request a flow refuses; ``str(err)`` says why, in words for the client."""


class NotFound(DomainError):
    """What the request names (a sale, an order, a product, a label) is not in this store."""


class Conflict(DomainError):
    """The request contradicts what the store holds: an idempotency key reused, a state that forbids it."""


class Invalid(DomainError):
    """The request is well-formed but cannot be carried out as asked."""


class Forbidden(DomainError):
    """This client may not do that."""


class Unavailable(DomainError):
    """Not now: something the flow needs is missing or down."""


class TooMany(DomainError):
    """Too many attempts; ``retry_after`` is the seconds to wait, when known."""

    retry_after: int | None = None
