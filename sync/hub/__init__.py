"""The reference hub (``edge-hub``): ingest, acknowledge, publish downlink.

``ingest`` is the pure batch arithmetic, ``db`` the SQLite/PostgreSQL store,
``service`` the MQTT worker, ``publish`` the downlink, ``cli`` the command.
"""
