"""Moved to edge_core/config_types.py; this name stays only for the importers listed below."""

# moved to edge_core.config_types; re-exported for edge_agent/demo.py, edge_agent/demo_tls.py, edge_agent/tls.py,
# bench/common.py, tests/edge_agent/test_tls.py
from edge_core.config_types import HostPort as HostPort
