"""Store-edge agent: the daemon on a retail store's mini-PC."""

import os
from pathlib import Path

__version__ = "0.1.0"
DEFAULT_CONFIG = "/etc/edge-agent/devices.yaml"


def config_path(given: str | os.PathLike[str] | None = None) -> Path:
    """The devices.yaml to use: ``given``, else ``$EDGE_CONFIG``, else DEFAULT_CONFIG."""
    return Path(given or os.environ.get("EDGE_CONFIG") or DEFAULT_CONFIG)
