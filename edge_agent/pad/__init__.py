"""The associate's PAD web app: static files only (static/), served by edge_agent/api/routers/pad.py at /pad."""
