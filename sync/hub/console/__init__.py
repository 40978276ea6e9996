"""The remote health console: a web page on ``edge-hub run --http`` and, for one store, on the agent.

``facts`` reads a store's status and health snapshot defensively into what
the page shows (``summarize``) and what the rules judge; ``rules`` holds the
alert rules as data and evaluates them; ``fleet`` is the in-memory picture of
every store that the hub worker keeps current; ``alerts`` and ``history`` are
the console's tables; ``commands`` sends remote actions and times them out;
``app`` and ``api`` are the FastAPI app, ``stream`` its live updates (SSE),
``server`` runs it in a thread beside the MQTT worker. ``static/`` is the one
front end, served by the hub at ``/`` and by the agent at ``/console``.
"""
