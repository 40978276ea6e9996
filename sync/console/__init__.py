"""The health console's wire-side knowledge, shared by the reference hub's console and the agent's ``/console``.

``facts`` reads a store's status and health snapshot defensively into what
the page shows (``summarize``) and what the rules judge; ``rules`` holds the
alert rules as data (``rules.yaml``) and evaluates them; ``views`` shapes the
JSON the page reads; ``commands`` is the allow-list and the argument checks
of remote actions (the agent's downlink runs the same checks); ``timeline``
turns device states into the timeline's bars; ``page`` is the HTML shell and
``static/`` the one front end, served by the hub at ``/`` and by the agent at
``/console``.

Nothing here does I/O beyond reading its own files, and nothing imports the
reference hub (sync/hub/) or the agent (edge_agent/): a store PC runs the
console without the hub's package (pyproject.toml, the import contracts).
"""
