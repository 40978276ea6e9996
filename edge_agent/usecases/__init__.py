"""The store's flows, one function each: its transaction and its after-commit effects.

A router parses the request, calls one of these and returns what it gives;
a flow raises the domain's errors (edge_agent/errors.py), which the API maps
to HTTP in one place (edge_agent/api/errors.py). What happens once a flow's
write is on disk (bus events, the printer woken, stock counts to the shelf
labels and low-stock alerts, a kiosk session ended) happens here, next to
the write, and nowhere else.

- checkout.py   ``POST /v1/sales``
- returns.py    ``POST /v1/returns``
- orders.py     ``POST /v1/orders`` (and the mirror's order), ``POST /v1/orders/{id}/status``
- stock.py      ``POST /v1/stock/adjustments`` (a count or a change)

Two flows are one function where their state lives: the basket,
edge_agent/sessions.py ``add_item`` (no write: a session is in memory and
publishes ``basket.changed`` itself), and the label bind,
edge_agent/labels/bindings.py ``bind`` and ``unbind`` (the write, then the
label pushed at once by its LabelService).
"""
