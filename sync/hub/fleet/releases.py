"""Release bundles: the agent and its dependencies as wheels, with their hashes and an ed25519 signature; served by the hub."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of release bundles."""
