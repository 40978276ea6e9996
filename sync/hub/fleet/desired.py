"""Desired configuration: every store's devices.yaml, versioned at the hub, sent to the store and reported back."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of desired configuration."""
