"""The agent's ``/console``: the hub's page limited to this store, for console and admin tokens."""

from __future__ import annotations

import time

import httpx
import pytest

from support.agent import TOKENS
from support.flows import poll


@pytest.fixture(scope="module")
def agent(running_agent):
    """The shared demo agent (one simulated heartbeat device), once it reports the device online."""
    with running_agent.client("console") as c:
        deadline = time.monotonic() + 15
        while c.get("/v1/devices").json()[0]["state"] != "online":
            assert time.monotonic() < deadline, "heartbeat-1 never came online"
            time.sleep(0.1)  # polling interval of a condition
    return running_agent


def test_the_page_and_its_files_need_no_token_and_leak_nothing(agent):
    page = httpx.get(f"{agent.url}/console")
    assert page.status_code == 200
    assert 'data-mode="store"' in page.text and 'data-api="/console/api"' in page.text
    assert "store-test console" in page.text
    js = httpx.get(f"{agent.url}/console/static/main.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    for bad in ("../app.py", "..%2Fapp.py", "nope.js"):
        assert httpx.get(f"{agent.url}/console/static/{bad}").status_code == 404


@pytest.mark.parametrize("role, code", [(None, 401), ("kiosk", 403), ("associate", 403), ("mirror", 403),
                                        ("console", 200), ("admin", 200)])
def test_only_console_and_admin_tokens_read_it(agent, role, code):
    with agent.client(role) as c:
        assert c.get("/console/api/fleet").status_code == code


def test_it_shows_this_store_in_the_hubs_shapes(agent):
    with agent.client("console") as c:
        meta = c.get("/console/api/meta").json()
        assert (meta["mode"], meta["store"], meta["who"]) == ("store", "store-test", "console-1")
        assert {r["kind"] for r in meta["rules"]} >= {"device_state", "store_offline"}
        fleet = c.get("/console/api/fleet").json()
        [summary] = fleet["stores"]
        assert (summary["store"], summary["presence"], summary["devices"]["online"]) == ("store-test", "online", 1)
        assert summary["hub"] == "offline"  # nothing listens at the test config's hub url
        detail = c.get("/console/api/stores/store-test").json()
        assert [(d["id"], d["actions"]) for d in detail["devices"]] == [("heartbeat-1", ["reopen"])]
        # The feed's ring saw it start: starting, then online, in the timeline.
        assert [s["state"] for s in detail["timeline"]["devices"]["heartbeat-1"]][-1] == "online"
        assert c.get("/console/api/stores/store-other").status_code == 404


def test_actions_run_here_and_answer_at_once(agent):
    with agent.client("admin") as c:
        url = "/console/api/stores/store-test/commands"
        done = c.post(url, json={"device": "heartbeat-1", "action": "reopen"}).json()
        assert (done["state"], done["result"]) == ("ok", {"device": "heartbeat-1", "reopening": True})
        status = c.post(url, json={"device": "agent", "action": "status"}).json()
        assert status["state"] == "ok" and status["result"]["store"] == "store-test"
        level = c.post(url, json={"device": "agent", "action": "set_log_level", "args": {"level": "info"}}).json()
        assert level["result"] == {"level": "info"}
        refused = c.post(url, json={"device": "heartbeat-1", "action": "print_test_page"})
        assert refused.status_code == 422 and "allowed: reopen" in refused.json()["detail"]
        assert c.post(url, json={"device": "ghost", "action": "reopen"}).status_code == 404
        recent = c.get("/console/api/stores/store-test").json()["commands"]
        assert [x["action"] for x in recent][:3] == ["set_log_level", "status", "reopen"]
    with httpx.Client(base_url=agent.url, headers={"Authorization": f"Bearer {TOKENS['associate']}"}) as c:
        assert c.post(url, json={"device": "heartbeat-1", "action": "reopen"}).status_code == 403


def test_a_hub_out_of_reach_past_its_grace_makes_the_store_degraded(agent):
    # Nothing listens at the test config's hub url: the store sells, and says why it is degraded.
    with agent.client() as c:
        h = poll(lambda: c.get("/v1/health").json(), lambda h: any(r["code"] == "hub_offline" for r in h["reasons"]),
                 90, "hub_offline")
    assert (h["status"], h["hub"]) == ("degraded", "offline")
    [reason] = [r for r in h["reasons"] if r["code"] == "hub_offline"]
    assert reason["subject"] == "hub" and "cannot connect" in reason["message"]


def test_the_openapi_page_names_every_reason_code(agent):
    from edge_agent.health import REASON_CODES

    schema = httpx.get(f"{agent.url}/openapi.json").json()
    described = schema["components"]["schemas"]["Reason"]["properties"]["code"]["description"]
    assert {c for c in REASON_CODES if c not in described} == set()
