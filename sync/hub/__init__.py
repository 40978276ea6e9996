"""The reference hub (``edge-hub``): ingest, acknowledge, publish downlink, health console.

``ingest`` is the pure batch arithmetic, ``db`` (with ``schema``) the
SQLite/PostgreSQL store, ``service`` the MQTT worker, ``observe`` what the
worker records for the console (device timelines, device alerts, live
changes), ``publish`` the downlink, ``console/`` the web console
(``edge-hub run --http``), ``cli`` the command.
"""
