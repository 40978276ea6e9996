"""The tests' Mosquitto: the package's own local broker process (sync/localbroker.py)."""

from __future__ import annotations

from sync.localbroker import LocalMosquitto as Mosquitto
from sync.localbroker import mosquitto_binary

__all__ = ["Mosquitto", "mosquitto_binary"]
