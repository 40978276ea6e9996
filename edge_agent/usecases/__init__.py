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
- basket.py     ``/v1/sessions/{station}`` and its basket: a line added, cleared, "new customer"
                (and the mirror's kiosk basket); a session lives in memory (edge_agent/sessions.py)
- tryon.py      the mirror's products, look, basket and order (``/v1/mirror/{device}/...``)
- labels.py     ``POST /v1/labels/bind``, ``DELETE /v1/labels/{mac}``, ``POST /v1/labels/{mac}/push``
"""
