"""Who may call what (CONTRACT section 3, and what the agent adds): the role matrix of every endpoint.

tests/edge_agent/test_api_matrix.py checks it against a running agent, and
that it names every endpoint of the OpenAPI schema; the schemathesis fuzz
(tests/edge_agent/test_api_fuzz.py) calls each endpoint as a role allowed.
"""

from __future__ import annotations

ROLES = ("kiosk", "associate", "mirror", "console", "admin")
ALL = set(ROLES)
STAFF = {"associate", "console", "admin"}

# (method, path as in the schema): roles allowed. Path parameters are filled in from PARAMS.
MATRIX: dict[tuple[str, str], set[str]] = {
    ("GET", "/v1/devices"): STAFF,
    ("GET", "/v1/products/{code}"): ALL,
    ("POST", "/v1/sales"): {"kiosk", "associate"},
    ("POST", "/v1/returns"): {"kiosk", "associate"},
    ("GET", "/v1/orders"): {"associate"},
    ("POST", "/v1/orders"): {"kiosk", "associate", "admin"},
    ("GET", "/v1/orders/{order_id}"): {"associate"},
    ("POST", "/v1/orders/{order_id}/status"): {"associate"},
    ("POST", "/v1/stock/adjustments"): {"associate", "admin"},
    ("GET", "/v1/members"): {"associate", "admin"},
    ("GET", "/v1/members/{member_id}"): {"associate", "admin"},  # a kiosk: only its session's member (403 here)
    ("GET", "/v1/sessions/{station}"): {"kiosk", "associate", "admin"},  # a kiosk: only its own station
    ("DELETE", "/v1/sessions/{station}"): {"kiosk", "associate", "admin"},  # "new customer"; a kiosk: its own
    # A kiosk: its own; a mirror's screen: the kiosk its mirror.camera names (checked on the device, 403 else).
    ("POST", "/v1/sessions/{station}/basket"): {"kiosk", "associate", "admin", "mirror"},
    ("DELETE", "/v1/sessions/{station}/basket"): {"kiosk", "associate", "admin"},  # a kiosk: only its own
    ("POST", "/v1/print"): {"console", "admin"},
    ("GET", "/v1/print/jobs"): STAFF,
    ("GET", "/v1/print/jobs/{job_id}"): STAFF,
    ("POST", "/v1/print/jobs/{job_id}/retry"): STAFF,
    ("GET", "/v1/labels"): STAFF,
    ("GET", "/v1/labels/compliance"): STAFF,
    ("GET", "/v1/labels/{mac}"): STAFF,
    ("POST", "/v1/labels/bind"): {"associate", "admin"},
    ("DELETE", "/v1/labels/{mac}"): {"associate", "admin"},
    ("GET", "/v1/mirror"): {"mirror", "associate", "admin"},
    ("GET", "/v1/mirror/{device}"): {"mirror", "associate", "admin"},
    ("GET", "/v1/mirror/{device}/products"): {"mirror", "associate", "admin"},
    ("PUT", "/v1/mirror/{device}/look"): {"mirror", "associate", "admin"},
    ("GET", "/v1/mirror/{device}/stream"): ALL,  # any client; the mirror's own screen is checked on the device
    ("GET", "/v1/mirror/{device}/basket"): {"mirror", "associate", "admin", "kiosk"},
    ("POST", "/v1/mirror/{device}/basket"): {"mirror", "associate", "admin"},
    ("DELETE", "/v1/mirror/{device}/basket"): {"mirror", "associate", "admin", "kiosk"},
    ("POST", "/v1/mirror/{device}/order"): {"mirror", "associate", "admin"},
    ("POST", "/v1/mirror/{device}/session/end"): {"mirror", "associate", "admin"},
    ("POST", "/v1/tickets"): ALL,  # what each role may open is checked on the body (403: a feed, a mirror's stream)
    ("GET", "/console/api/meta"): {"console", "admin"},
    ("GET", "/console/api/fleet"): {"console", "admin"},
    ("GET", "/console/api/stores/{store}"): {"console", "admin"},
    ("POST", "/console/api/stores/{store}/commands"): {"console", "admin"},
    ("GET", "/metrics"): {"console", "admin"},
    ("GET", "/v1/sales/{sale}"): {"associate", "admin"},
    ("POST", "/v1/labels/{mac}/push"): {"associate", "admin"},
    ("POST", "/v1/pairing"): {"admin"},  # a code makes an associate: not the console's to give
    ("GET", "/v1/paired"): {"console", "admin"},
    ("DELETE", "/v1/paired/{name}"): {"console", "admin"},
    ("POST", "/v1/assist"): {"kiosk"},
    ("GET", "/v1/assist"): {"associate", "admin"},
    ("GET", "/v1/assist/{assist_id}"): {"kiosk", "associate", "admin"},  # a kiosk: only its own (404 else)
    ("POST", "/v1/assist/{assist_id}/take"): {"associate"},
    ("POST", "/v1/assist/{assist_id}/done"): {"associate", "kiosk"},  # the associate who took it, or the kiosk
    ("DELETE", "/v1/assist/{assist_id}"): {"kiosk"},  # the kiosk that asked cancels
}
PUBLIC = {("GET", "/v1/health"), ("POST", "/v1/pair")}
PARAMS = {"code": "TOTE01", "order_id": "NOPE", "member_id": "M-NOPE", "station": "kiosk-1", "job_id": "nope",
          "mac": "0000021D4E83B401", "device": "mirror-9", "store": "store-test",
          "sale": "nope", "name": "pad-nope", "assist_id": "nope"}
