"""Staged rollouts of a release: a canary store, then a share, then all; halted and rolled back when updated stores get worse."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of rollouts."""
