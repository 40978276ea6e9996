"""Enrollment: one-time codes the hub issues for a store id, redeemed by ``edge-agent enroll`` on a fresh PC."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction, env_db: str, broker_opt: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``edge-hub`` subcommands of enrollment."""
