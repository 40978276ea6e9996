"""The reference hub's health console: a web page on ``edge-hub run --http`` over every store.

What the page shows and the rules judge is shared with the agent's
``/console`` and lives in sync/console/ (facts, rules, views, the command
allow-list, timeline bars, the page and its static front end). Here is what
only the hub has: ``fleet``, the in-memory picture of every store that the
hub worker keeps current; ``alerts`` and ``history``, the console's tables in
the hub's database; ``evaluator``, which raises and clears alerts from the
rules; ``commands``, which sends remote actions and times them out;
``rules``, the rules file read at start-up; ``app`` and ``api``, the FastAPI
app, ``stream`` its live updates (SSE), ``server`` running it in a thread
beside the MQTT worker; ``simulate``, a fleet of simulated stores.
"""
