"""Who may call what: every endpoint of the OpenAPI schema, every role, no token and a bad token (CONTRACT section 3).

A role that may make a call gets neither 401 nor 403 (the dummy ids give
404, the empty bodies 422); any other role gets 403; no token or an unknown
token gets 401. ``test_the_matrix_covers_every_endpoint`` fails when an
endpoint is added without its row here.
"""

from __future__ import annotations

import pytest

from support.agent import TOKENS
from support.matrix import MATRIX, PARAMS, PUBLIC, ROLES

def url(path: str) -> str:
    return path.format(**PARAMS)


def call(agent, method: str, path: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with agent.client() as c:
        body = {"json": {}} if method in ("POST", "PUT") else {}
        return c.request(method, url(path), headers=headers, **body)


def test_the_matrix_covers_every_endpoint(running_agent):
    with running_agent.client() as c:
        spec = c.get("/openapi.json").json()
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served - set(MATRIX) - PUBLIC == set(), "endpoints without a row in MATRIX"
    assert set(MATRIX) - served == set(), "rows in MATRIX for endpoints the agent does not serve"


@pytest.mark.parametrize("endpoint", sorted(MATRIX), ids=lambda e: f"{e[0]} {e[1]}")
def test_no_token_or_an_unknown_token_is_401(running_agent, endpoint):
    assert call(running_agent, *endpoint, None).status_code == 401
    r = call(running_agent, *endpoint, "not-a-known-token")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(MATRIX), ids=lambda e: f"{e[0]} {e[1]}")
def test_each_role_gets_what_it_may(running_agent, endpoint, role):
    r = call(running_agent, *endpoint, TOKENS[role])
    if role in MATRIX[endpoint]:
        assert r.status_code not in (401, 403), r.text
        assert r.status_code < 500, r.text
    else:
        assert r.status_code == 403, r.text
        assert "may not" in r.json()["detail"] or "only" in r.json()["detail"]


def test_health_needs_no_token(running_agent):
    with running_agent.client() as c:
        assert c.get("/v1/health").status_code == 200


def test_a_kiosk_reads_only_its_own_session_and_member(running_agent):
    with running_agent.client("kiosk") as c:
        assert c.get("/v1/sessions/kiosk-1").status_code == 200
        assert c.get("/v1/sessions/kiosk-2").status_code == 403
        assert c.get("/v1/members/M-1001").status_code == 403  # no member attached to kiosk-1


@pytest.mark.parametrize("role, expected", [(None, 4401), ("mirror", 4403)])
def test_the_feed_refuses_no_token_and_roles_without_a_feed(running_agent, role, expected):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    with connect(f"ws://127.0.0.1:{running_agent.port}/v1/events", additional_headers=headers,
                 open_timeout=10) as ws:
        assert '"error"' in ws.recv(timeout=10)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == expected
