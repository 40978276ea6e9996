"""Personal data through a running agent and the reference hub (edge_agent/privacy.py).

Everything is real: ``edge-agent run``, Mosquitto, ``edge-hub run`` on
SQLite. The agent keeps personal data for no time after the hub's ack
(``retention_days: 0``) and sweeps every half second, so the test waits for
conditions instead of days: a member's sale reaches the hub whole, then
leaves the store's database pseudonymised; a return of that sale still
works; reads through the API and the live feed are counted in a
``retail.privacy.access_summary`` the hub ingests, without any member id;
and while the hub is away, nothing it has not acknowledged is touched.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.store import codec, keys
from support.agent import AgentProcess
from support.flows import card, feed, hub_event, order, ret, sale
from support.hubclient import HubClient
from support.storepcs import STORE, HubChain, wait_for

SUMMARY = "retail.privacy.access_summary"


@pytest.fixture
def chain(tmp_path: Path, mosquitto, make_agent) -> Iterator[HubChain]:
    c = HubChain(tmp_path, mosquitto, f"sqlite:///{tmp_path / 'hub.db'}", make_agent)
    c.hub.start()
    yield c
    c.close()


def _db(agent: AgentProcess, sql: str, args: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, args).fetchall()


def _stored_sale(agent: AgentProcess, seq: int) -> dict:
    [(body,)] = _db(agent, "SELECT body FROM sales WHERE seq = ?", (seq,))
    return codec.unpack(body)["event"]


def _hub_events(chain: HubChain, type_: str) -> list[dict]:
    return [json.loads(e) for (e,) in chain.db.query(
        "SELECT event FROM events WHERE store = ? AND type = ? ORDER BY stream, seq", (STORE, type_))]


def _meta(agent: AgentProcess, key: str) -> int:
    return _db(agent, "SELECT value FROM meta WHERE key = ?", (key,))[0][0]


def test_a_members_sale_reaches_the_hub_whole_then_leaves_the_store_and_reads_are_summarised(chain, mosquitto):
    agent = chain.agent("pc")
    agent.config["privacy"] = {"retention_days": 0, "sweep_interval": 0.5}
    agent.start()
    hub = HubClient(mosquitto.port, STORE)
    try:
        key = (agent.data_dir / keys.KEY_FILE).read_bytes()
        alias = keys.pseudonym(key, "M-1001")
        # A member arrives: associates see the card on the feed (a read), then look it up (another).
        with feed(agent, "associate") as pad, agent.client("associate") as staff:
            hub.send("members", [hub_event("retail.member.arrived", card("M-1001"))])
            pad.expect("member.arrived", lambda d: d["member_id"] == "M-1001")
            assert staff.get("/v1/members/M-1001").json()["known"] is True
        with agent.client("kiosk") as kiosk:
            r = kiosk.post("/v1/sales", json=sale(("TOTE01", 2), member_id="M-1001"))
            assert r.status_code == 201, r.text
            sold = r.json()

        # The hub has the sale as sold, member and all.
        [at_hub] = wait_for("the sale at the hub", lambda: _hub_events(chain, "retail.sale.completed"))
        assert at_hub["data"]["member_id"] == "M-1001" and at_hub["data"]["sale_id"] == sold["id"]
        # The store, once the hub acknowledged it (and no retention), keeps only the pseudonym.
        swept = wait_for("the sale swept", lambda: (s := _stored_sale(agent, sold["seq"]))["member_id"] is None and s)
        assert swept["member_pseudonym"] == alias and swept["total"] == sold["total"]
        assert not _db(agent, "SELECT seq FROM outbox WHERE seq = ?", (sold["seq"],))

        # The reads, counted per client and role, reach the hub without any member.
        [summary] = wait_for("the access summary at the hub", lambda: _hub_events(chain, SUMMARY), timeout=60)
        assert "M-1001" not in json.dumps(summary) and alias not in json.dumps(summary)
        [pad_reads] = [c for c in summary["data"]["clients"] if c["client"] == "associate-1"]
        assert pad_reads["role"] == "associate" and pad_reads["members"] == 1
        assert pad_reads["what"] == {"GET /v1/members/{member_id}": 1, "feed:member.arrived": 1}
        assert summary["data"]["reads"] == sum(c["reads"] for c in summary["data"]["clients"])
        # The hub's side: edge-hub privacy STORE lists who read members' data, and no member.
        report = subprocess.run([sys.executable, "-m", "sync.hub", "privacy", STORE, "--db", chain.db_url],
                                capture_output=True, text=True, timeout=60)
        assert report.returncode == 0, report.stderr
        assert "associate-1" in report.stdout and "feed:member.arrived 1" in report.stdout, report.stdout
        assert "M-1001" not in report.stdout
        rows = _db(agent, "SELECT client, role, member, what FROM access_log WHERE client = 'associate-1' ORDER BY id")
        assert sorted(rows) == [("associate-1", "associate", alias, "GET /v1/members/{member_id}"),
                                ("associate-1", "associate", alias, "feed:member.arrived")]

        # A return of the swept sale: refunded from the sale as ever, the member named by pseudonym.
        with agent.client("associate") as staff:
            r = staff.post("/v1/returns", json=ret(("TOTE01", 1), sale=sold["id"]))
        assert r.status_code == 201, r.text
        back = r.json()
        assert back["total"] == "49.90" and back["member_id"] is None and back["member_pseudonym"] == alias
        assert back["points_reversed"] == sold["points_earned"] // 2
        [returned] = wait_for("the return at the hub", lambda: _hub_events(chain, "retail.return.accepted"))
        assert returned["data"]["sale_id"] == sold["id"] and returned["data"]["member_pseudonym"] == alias

        # A pickup order from the hub: its code is kept as a hash, checked at hand-over, then gone with the member.
        hub.send("orders", [hub_event("retail.order.created", order("WEB-9", code="482913"))])
        with agent.client("associate") as staff:
            wait_for("the order in the store", lambda: staff.get("/v1/orders/WEB-9").status_code == 200)
            [(code,)] = _db(agent, "SELECT pickup_code FROM orders WHERE order_id = 'WEB-9'")
            assert code == keys.code_hash(key, "WEB-9", "482913")
            for status in ("picking", "ready"):
                staff.post("/v1/orders/WEB-9/status", json={"status": status}).raise_for_status()
            wrong = staff.post("/v1/orders/WEB-9/status", json={"status": "collected", "pickup_code": "482914"})
            assert wrong.status_code == 403, wrong.text
            right = staff.post("/v1/orders/WEB-9/status", json={"status": "collected", "pickup_code": "482913"})
            assert right.status_code == 200 and right.json()["status"] == "collected", right.text
            swept_order = wait_for("the collected order swept", lambda: (
                o := staff.get("/v1/orders/WEB-9").json())["member_id"] is None and o)
        assert swept_order["member_pseudonym"] == alias
        assert _db(agent, "SELECT pickup_code, member_id FROM orders WHERE order_id = 'WEB-9'") == [("", None)]
    finally:
        hub.close()


def test_what_the_hub_has_not_acknowledged_stays_whole_past_retention(chain, mosquitto):
    agent = chain.agent("pc")
    agent.config["privacy"] = {"retention_days": 0, "sweep_interval": 0.5}
    agent.start()
    with agent.client("kiosk") as kiosk, agent.client("associate") as staff:
        chain.hub.stop()
        r = kiosk.post("/v1/sales", json=sale(("TOTE01", 1), member_id="M-2002"))
        assert r.status_code == 201, r.text
        sold = r.json()
        # A read, and a sweep that has counted it: the sweep ran after the sale was made.
        staff.get("/v1/members/M-2002").raise_for_status()
        wait_for("a sweep after the sale", lambda: _db(agent, "SELECT max(id) FROM access_log")[0][0] and
                 _meta(agent, "privacy_summary_id") >= _db(agent, "SELECT max(id) FROM access_log")[0][0])
        assert _stored_sale(agent, sold["seq"])["member_id"] == "M-2002"
        assert _meta(agent, "privacy_swept_seq") < sold["seq"]
        assert _db(agent, "SELECT count(*) FROM outbox WHERE seq = ?", (sold["seq"],)) == [(1,)]

        chain.hub.start()  # the hub takes the sale whole, acknowledges it, and only then is it swept
        [at_hub] = wait_for("the sale at the hub", lambda: _hub_events(chain, "retail.sale.completed"), timeout=60)
        assert at_hub["data"]["member_id"] == "M-2002"
        wait_for("the sale swept after the ack", lambda: _stored_sale(agent, sold["seq"])["member_id"] is None)
        summaries = wait_for("the summary at the hub", lambda: _hub_events(chain, SUMMARY), timeout=60)
        assert sum(s["data"]["reads"] for s in summaries) == 1  # exactly once, though sent while the hub was away
