"""Zones and re-push through the local API of a real agent process, with an emulated access point over
HTTP: ``"zone"`` in ``POST /v1/labels/bind`` and in ``GET /v1/labels``, and ``POST /v1/labels/{mac}/push``
sending the label's picture to the access point again."""

from __future__ import annotations


import pytest

from drivers.shelf_label.ap_emulator import ApEmulator
from support.agent import config_dict, free_port
from support.flows import poll

A, B = "0000021D4E83B401", "0000021D4E83B402"
TAGS = (A, B)  # the tags on the access point (conftest.ap), due to check in at once
NEXT_CHECKIN_S = None  # the emulator's default next check-in (0)


@pytest.fixture
def agent(make_agent, ap):
    """An agent with the demo catalog and one access point; no hub, no label bound yet."""
    device = {"id": "labels-1", "kind": "shelf_label.oepl", "url": ap.url, "poll_interval": 0.2, "timeout": 1,
              "upload_timeout": 1, "retries": 1, "compliance_grace": 2}
    agent = make_agent(config=config_dict(free_port(), devices=[device]))
    agent.import_catalog()
    agent.start()
    return agent


def uploads(ap: ApEmulator, mac: str) -> list:
    with ap.lock:
        return [u for u in ap.uploads if u.mac == mac and not u.error]


def test_a_zone_is_set_kept_cleared_and_shown(agent, ap):
    with agent.client("associate") as pad, agent.client("console") as console:
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "6901234567892", "zone": "cosmetics"})
        assert r.status_code == 201, r.text
        assert (r.json()["mac"], r.json()["zone"]) == (A, "cosmetics")
        assert pad.post("/v1/labels/bind", json={"label": B, "code": "TOTE01"}).json()["zone"] is None
        assert console.get(f"/v1/labels/{A}").json()["zone"] == "cosmetics"
        assert {lb["mac"]: lb["zone"] for lb in console.get("/v1/labels").json()} == {A: "cosmetics", B: None}
        # Bound again without "zone": the zone stays; with "zone": null it goes.
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01"})
        assert (r.status_code, r.json()["sku"], r.json()["zone"]) == (200, "TOTE-CANVAS", "cosmetics")
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "zone": None})
        assert (r.status_code, r.json()["zone"]) == (200, None)
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "zone": "Aisle 3_b-2"})
        assert r.json()["zone"] == "Aisle 3_b-2"
        # Refused, and nothing changed.
        for bad in ("eye/wear", "", "   ", "-bags", "x" * 33, "化妆品", 7, ["a"]):
            r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "zone": bad})
            assert r.status_code == 422, (bad, r.text)
        r = pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "zone": "a/b"})
        assert "zone" in r.json()["detail"] and "1-32" in r.json()["detail"]
        assert console.get(f"/v1/labels/{A}").json()["zone"] == "Aisle 3_b-2"


def test_a_label_is_pushed_again_on_request(agent, ap):
    with agent.client("associate") as pad, agent.client("console") as console:
        assert pad.post("/v1/labels/bind", json={"label": A, "code": "TOTE01", "zone": "bags"}).status_code == 201
        before = poll(lambda: console.get(f"/v1/labels/{A}").json(), lambda v: v["compliant"])
        [first] = uploads(ap, A)
        # The agent believes the label shows the right picture; an associate at the shelf sees it blank.
        r = pad.post(f"/v1/labels/{A.lower()}/push")
        assert r.status_code == 202, r.text
        assert (r.json()["mac"], r.json()["sku"], r.json()["zone"]) == (A, "TOTE-CANVAS", "bags")
        assert (r.json()["repush"], r.json()["retry_after"]) == ("queued", None)
        poll(lambda: len(uploads(ap, A)) == 2, lambda n: n)
        assert uploads(ap, A)[1].data == first.data  # the same picture, sent again
        # Asked again at once: not pushed a third time, and the answer says when to ask again.
        again = pad.post(f"/v1/labels/{A}/push").json()
        assert again["repush"] in ("cooldown", "already_pushing") and again["retry_after"] > 0, again
        poll(lambda: console.get(f"/v1/labels/{A}").json(),
              lambda v: v["compliant"] and v["pushed_at"] > before["pushed_at"])
        assert uploads(ap, B) == []

        assert pad.post("/v1/labels/0000000000000099/push").status_code == 404
        assert pad.post("/v1/labels/nonsense/push").status_code == 404
        assert pad.post("/v1/labels/" + "x" * 65 + "/push").status_code == 422
    for role, allowed in (("kiosk", False), ("mirror", False), ("console", False), ("admin", True)):
        with agent.client(role) as c:
            status = c.post(f"/v1/labels/{A}/push").status_code
            assert (status == 202) is allowed, (role, status)
    with agent.client() as anonymous:
        assert anonymous.post(f"/v1/labels/{A}/push").status_code == 401
