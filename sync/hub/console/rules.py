"""The hub's alert rules file: the shared loader (sync/console/rules.py), its error as the hub's.

``edge-hub run --http --alert-rules FILE`` (or the shipped rules) is read
once at start-up; a file that cannot be used stops the hub with
ConsoleConfigError, like every other bad console setting (sync/hub/errors.py).
"""

from __future__ import annotations

from pathlib import Path

from sync.console import rules
from sync.hub.errors import ConsoleConfigError


def load_rules(path: str | Path | None = None) -> rules.RuleSet:
    """The rules of a YAML file (the shipped rules.yaml by default); ConsoleConfigError says what is wrong."""
    try:
        return rules.load_rules(path)
    except rules.RulesError as err:
        raise ConsoleConfigError(str(err)) from err
