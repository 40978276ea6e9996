"""``GET /v1/sales/{sale}``: a sale looked up for a return, by its id or its receipt's barcode as scanned.

A real agent with the demo catalog: a sale, a partial return, then the
lookup shows per line what came back and what is left, as ``POST
/v1/returns`` counts it; a second return takes only what is left. A lookup
of a member's sale is a read in the access log (by pseudonym).
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid

import pytest

from edge_agent.store import keys
from support.agent import AgentProcess, config_dict, free_port
from support.flows import LIPSTICK, NUDE, TOTE, poll, ret, sale


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    wd = tmp_path_factory.mktemp("sale-lookup")
    agent = AgentProcess(wd, config_dict(free_port()))
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


def _sale(agent: AgentProcess, *lines: tuple[str, int], **extra) -> dict:
    with agent.client("associate") as http:
        answer = http.post("/v1/sales", json=sale(*lines, **extra))
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_sale_by_id_and_by_receipt_barcode_with_what_is_left_after_a_partial_return(agent):
    sold = _sale(agent, (LIPSTICK, 2), (TOTE, 1), (NUDE, 3), member_id="M-1001")
    sale_id = sold["sale_id"]
    with agent.client("associate") as http:
        got = http.get(f"/v1/sales/{sale_id}")
        assert got.status_code == 200, got.text
        view = got.json()
        assert view["sale_id"] == sale_id and view["total"] == sold["total"] and view["currency"] == "CNY"
        assert view["payment"] == {"method": "card"}  # no terminal reference
        assert view["member_id"] == "M-1001" and view["time"] == sold["created_at"]
        assert [(ln["sku"], ln["qty"], ln["returned"], ln["returnable"]) for ln in view["lines"]] == [
            ("LIP-RED-01", 2, 0, 2), ("TOTE-CANVAS", 1, 0, 1), ("LIP-NUDE-02", 3, 0, 3)]
        assert view["lines"][0]["unit_price"] == "159.00" and view["lines"][0]["amount"] == "318.00"
        assert view["lines"][0]["name"]

        # The receipt's barcode as a scanner reads it: 40 digits, or the chain's RS1: form.
        digits = f"{uuid.UUID(sale_id).int:040d}"
        assert http.get(f"/v1/sales/{digits}").json() == view
        assert http.get(f"/v1/sales/RS1:{sale_id}").json() == view

        taken = http.post("/v1/returns", json=ret((LIPSTICK, 1), (NUDE, 3), sale=sale_id))
        assert taken.status_code == 201, taken.text
        after = http.get(f"/v1/sales/RS1:{digits}").json()
        assert [(ln["sku"], ln["returned"], ln["returnable"]) for ln in after["lines"]] == [
            ("LIP-RED-01", 1, 1), ("TOTE-CANVAS", 0, 1), ("LIP-NUDE-02", 3, 0)]
        # What the lookup says is left is what a return may take.
        assert http.post("/v1/returns", json=ret((NUDE, 1), sale=sale_id)).status_code == 422
        assert http.post("/v1/returns", json=ret((LIPSTICK, 1), sale=digits)).status_code == 201
        last = http.get(f"/v1/sales/{sale_id}").json()
        assert [ln["returnable"] for ln in last["lines"]] == [0, 1, 0]


def _reads(agent: AgentProcess, what: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT client, role, member FROM access_log WHERE what = ? ORDER BY id", (what,)).fetchall()


def test_a_members_sale_looked_up_is_a_read_in_the_access_log(agent):
    """As the README's access log says: the member id of a sale read by staff is recorded, by pseudonym; a
    sale without a member is no read."""
    what = "GET /v1/sales/{sale}"
    plain = _sale(agent, (TOTE, 1))
    member = _sale(agent, (TOTE, 1), member_id="M-2002")
    with agent.client("associate") as pad, agent.client("admin") as admin:
        assert pad.get(f"/v1/sales/{plain['sale_id']}").json()["member_id"] is None
        assert pad.get(f"/v1/sales/{member['sale_id']}").json()["member_id"] == "M-2002"
        assert admin.get(f"/v1/sales/RS1:{member['sale_id']}").json()["member_id"] == "M-2002"
    alias = keys.pseudonym((agent.data_dir / keys.KEY_FILE).read_bytes(), "M-2002")
    rows = poll(lambda: [r for r in _reads(agent, what) if r[2] == alias], lambda r: len(r) >= 2,
                what="the two reads in the access log")
    assert rows == [("associate-1", "associate", alias), ("admin-1", "admin", alias)]
    assert "M-2002" not in str(_reads(agent, what))


def test_a_sku_on_two_lines_fills_the_first_line_first(agent):
    sold = _sale(agent, (LIPSTICK, 1), (TOTE, 1), (LIPSTICK, 2))
    with agent.client("associate") as http:
        assert http.post("/v1/returns", json=ret((LIPSTICK, 2), sale=sold["sale_id"])).status_code == 201
        lines = http.get(f"/v1/sales/{sold['sale_id']}").json()["lines"]
    assert [(ln["qty"], ln["returned"], ln["returnable"]) for ln in lines] == [(1, 1, 0), (1, 0, 1), (2, 1, 1)]


def test_not_a_sale_of_this_store_and_who_may_look(agent):
    sold = _sale(agent, (TOTE, 1))
    with agent.client("associate") as http:
        missing = http.get(f"/v1/sales/{uuid.uuid4()}")
        assert missing.status_code == 404 and "no sale" in missing.json()["detail"]
        garbage = http.get("/v1/sales/not-a-receipt")
        assert garbage.status_code == 404 and "neither a sale id nor a receipt barcode" in garbage.json()["detail"]
        assert http.get("/v1/sales/" + "9" * 81).status_code == 422
    with agent.client("admin") as http:
        assert http.get(f"/v1/sales/{sold['sale_id']}").status_code == 200
    for role in ("kiosk", "console", "mirror"):
        with agent.client(role) as http:
            assert http.get(f"/v1/sales/{sold['sale_id']}").status_code == 403, role
    with agent.client() as http:
        assert http.get(f"/v1/sales/{sold['sale_id']}").status_code == 401
