"""Moved to edge_core/logonce.py; this name stays only for the importers listed below."""

# moved to edge_core.logonce; re-exported for edge_agent/health.py, edge_agent/privacy.py, edge_agent/labels/
# (health.py, planner.py, service.py), sync/link.py, sync/downlink.py
from edge_core.logonce import LogOnce as LogOnce
