"""No token in a URL: one-use tickets for the live feed, the subprotocol for other clients, ``?token=`` refused.

``Tickets`` alone with an injected clock (expiry, the per-client cap), then a
real agent at debug log level over real sockets: a ticket opens the feed once,
for its purpose only; a token in the URL never opens anything and never
reaches the log, while uvicorn logs every request's URL.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support.agent import TOKENS, AgentProcess, config_dict, free_port
from support.flows import poll

from edge_agent.api.auth import Purpose, TicketLimit, Tickets
from edge_agent.config import ClientConfig, Role

KIOSK = ClientConfig(name="kiosk-1", role=Role.KIOSK, token_sha256="0" * 64)
PAD = ClientConfig(name="pad-1", role=Role.ASSOCIATE, token_sha256="1" * 64)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_good_once_for_its_purpose_and_device():
    tickets = Tickets(clock=Clock())
    t = tickets.issue(KIOSK, Purpose.EVENTS)
    assert len(t) >= 40 and t != tickets.issue(KIOSK, Purpose.EVENTS)
    assert tickets.redeem(t, Purpose.EVENTS) == KIOSK
    assert tickets.redeem(t, Purpose.EVENTS) is None  # spent

    wrong = tickets.issue(KIOSK, Purpose.EVENTS)
    assert tickets.redeem(wrong, Purpose.STREAM, "mirror-1") is None
    assert tickets.redeem(wrong, Purpose.EVENTS) is None  # tried once for the wrong thing: spent all the same

    stream = tickets.issue(KIOSK, Purpose.STREAM, "mirror-1")
    assert tickets.redeem(stream, Purpose.STREAM, "mirror-2") is None
    assert tickets.redeem("not-a-ticket", Purpose.EVENTS) is None
    assert tickets.outstanding("kiosk-1") == 1  # the first of the two issued together, never used


def test_a_ticket_expires_after_its_ttl():
    clock = Clock()
    tickets = Tickets(ttl=30, clock=clock)
    early, late = tickets.issue(KIOSK, Purpose.EVENTS), tickets.issue(KIOSK, Purpose.EVENTS)
    clock.now += 29.9
    assert tickets.redeem(early, Purpose.EVENTS) == KIOSK
    clock.now += 0.1
    assert tickets.redeem(late, Purpose.EVENTS) is None
    assert tickets.outstanding("kiosk-1") == 0


def test_unspent_tickets_are_capped_per_client_and_freed_by_use_or_expiry():
    clock = Clock()
    tickets = Tickets(ttl=30, per_client=3, clock=clock)
    held = [tickets.issue(KIOSK, Purpose.EVENTS) for _ in range(3)]
    with pytest.raises(TicketLimit, match="holds 3 unspent tickets"):
        tickets.issue(KIOSK, Purpose.EVENTS)
    assert tickets.issue(PAD, Purpose.EVENTS)  # another client's cap is its own
    assert tickets.redeem(held[0], Purpose.EVENTS) == KIOSK
    tickets.issue(KIOSK, Purpose.EVENTS)  # a spent one makes room
    with pytest.raises(TicketLimit):
        tickets.issue(KIOSK, Purpose.EVENTS)
    clock.now += 30
    assert tickets.outstanding("kiosk-1") == 0
    tickets.issue(KIOSK, Purpose.EVENTS)  # expired ones make room


# A real agent --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory):
    """One agent logging at debug: uvicorn writes every request's URL and every accepted WebSocket."""
    wd: Path = tmp_path_factory.mktemp("tickets")
    agent = AgentProcess(wd, config_dict(free_port()), env={"EDGE_LOG_LEVEL": "debug"})
    agent.start()
    yield agent
    agent.close()


def ticket(agent: AgentProcess, role: str, body: dict | None = None) -> httpx.Response:
    with agent.client(role) as http:
        return http.post("/v1/tickets", json=body or {"for": "events"})


def ws_url(agent: AgentProcess, query: str) -> str:
    return f"ws://127.0.0.1:{agent.port}/v1/events{query}"


def refused(url: str, **kwargs) -> tuple[int, str, dict]:
    """The close code, reason and error message of a feed connection the agent refuses."""
    with connect(url, open_timeout=30, **kwargs) as ws:
        detail = json.loads(ws.recv(timeout=30))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason, detail


def test_a_ticket_opens_the_feed_once(agent):
    answer = ticket(agent, "associate")
    assert answer.status_code == 201, answer.text
    got = answer.json()
    assert got["for"] == "events" and got["expires_in"] == 30 and "device" not in got
    with connect(ws_url(agent, f"?ticket={got['ticket']}&since=0"), open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    code, reason, detail = refused(ws_url(agent, f"?ticket={got['ticket']}"))
    assert code == 4401 and "spent or expired ticket" in detail["detail"]


def test_who_may_ask_for_which_ticket(agent):
    with httpx.Client(base_url=agent.url, timeout=30) as anon:
        assert anon.post("/v1/tickets", json={"for": "events"}).status_code == 401
    assert ticket(agent, "mirror").status_code == 403  # no feed for the mirror's screen
    stream = ticket(agent, "associate", {"for": "stream", "device": "mirror-1"})
    assert stream.status_code == 403 and "mirror's own screen" in stream.json()["detail"]
    assert ticket(agent, "mirror", {"for": "stream"}).status_code == 422
    assert ticket(agent, "mirror", {"for": "stream", "device": "mirror-1"}).status_code == 404  # none here
    assert ticket(agent, "console", {"for": "events", "device": "x"}).status_code == 422
    assert ticket(agent, "console", {"for": "nothing"}).status_code == 422


def test_a_client_holds_a_few_unspent_tickets_at_most(agent):
    answers = [ticket(agent, "admin").status_code for _ in range(9)]
    assert answers == [201] * 8 + [429]
    last = ticket(agent, "admin")
    assert last.status_code == 429 and last.headers["Retry-After"] == "30"
    assert "8 unspent tickets" in last.json()["detail"]


def test_a_token_in_the_url_never_works_and_never_reaches_the_log(agent):
    token = TOKENS["associate"]
    code, reason, detail = refused(ws_url(agent, f"?token={token}&since=0"))
    assert code == 4401 and "a token in a URL is refused" in detail["detail"] and "POST /v1/tickets" in reason
    # Not even beside a good ticket: a client that puts its token in the URL is told so.
    code, _, _ = refused(ws_url(agent, f"?ticket={ticket(agent, 'associate').json()['ticket']}&token={token}"))
    assert code == 4401
    with httpx.Client(base_url=agent.url, timeout=30) as http:
        answer = http.get(f"/v1/mirror/mirror-1/stream?token={TOKENS['mirror']}")
    assert answer.status_code == 401 and "a token in a URL is refused" in answer.json()["detail"]
    # uvicorn logs the request line of each: the marker after the token shows the line was written.
    poll(agent.log, lambda log: "stream?token=" in log, what="the stream request logged at debug")
    log = agent.log()
    assert "/v1/events?token=" in log
    assert token not in log and TOKENS["mirror"] not in log


def test_the_bearer_header_and_subprotocol_open_the_feed_and_stay_out_of_the_log(agent):
    token = TOKENS["console"]
    with connect(ws_url(agent, ""), additional_headers={"Authorization": f"Bearer {token}"},
                 open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    with connect(ws_url(agent, "?since=0"), subprotocols=["bearer", token], open_timeout=30) as ws:
        assert ws.subprotocol == "bearer"
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    code, _, detail = refused(ws_url(agent, ""), subprotocols=["bearer", "not-a-token"])
    assert code == 4401 and "unknown token" in detail["detail"]


def test_a_header_token_stays_out_of_the_debug_log(agent):
    """At debug the websockets library logs each handshake's headers through uvicorn.error:
    edge_agent/daemon.py's RedactTokens blanks the Authorization header and the bearer subprotocol."""
    token = TOKENS["kiosk"]
    with connect(ws_url(agent, ""), additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    with connect(ws_url(agent, ""), subprotocols=["bearer", token], open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
    poll(agent.log, lambda log: log.count("WebSocket /v1/events\"") >= 2, what="both handshakes logged")
    log = agent.log()
    assert token not in log
    # The headers were logged, blanked: the test sees what it claims to.
    assert "Bearer ***" in log and "bearer, ***" in log


def test_no_credential_at_all_is_refused_with_directions(agent):
    code, _, detail = refused(ws_url(agent, ""))
    assert code == 4401 and "POST /v1/tickets" in detail["detail"]
