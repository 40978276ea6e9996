"""The agent's branch of the one error tree: the local store's errors.

The root of the tree, the config and device errors, is edge_core/errors.py
(drivers raise those without importing the agent); its docstring draws the
whole tree:

    EdgeError                      (edge_core.errors)
    └── StoreError                 the local SQLite store failed
        └── StoreClosed            a write was submitted after stop()

sqlite3.Error is mapped onto StoreError at the store's boundary, always with
``raise ... from err``.
"""

from __future__ import annotations

from edge_core.errors import EdgeError


class StoreError(EdgeError):
    """The local store could not complete a read or a write."""


class StoreClosed(StoreError):
    """The store is stopped and accepts no more writes."""
