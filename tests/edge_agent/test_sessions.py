"""A kiosk session's basket through a real agent over HTTP: who may fill it, what it checks, who hears of it,
and the kiosk's sale emptying it."""

from __future__ import annotations

import pytest

from support.agent import AgentProcess, config_dict, free_port
from support.flows import GLASSES, LIPSTICK, TOTE, feed, sale

BASKET = "/v1/sessions/kiosk-1/basket"


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> AgentProcess:
    wd = tmp_path_factory.mktemp("sessions")
    agent = AgentProcess(wd, config_dict(free_port()))
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


@pytest.fixture(autouse=True)
def empty_basket(agent):
    with agent.client("admin") as c:
        assert c.delete(BASKET).status_code == 200


def lines_of(session: dict) -> list[tuple[str, int, str]]:
    return [(ln["sku"], ln["qty"], ln["source"]) for ln in session["basket"]["lines"]]


def test_an_empty_session_has_an_empty_basket(agent):
    with agent.client("kiosk") as c:
        session = c.get("/v1/sessions/kiosk-1").json()
    assert session == {"station": "kiosk-1", "member_id": None, "attached_at": None,
                       "basket": {"lines": [], "items": 0}}


def test_lines_merge_by_sku_and_source_and_show_name_and_current_price(agent):
    with agent.client("kiosk") as kiosk, agent.client("associate") as pad:
        first = kiosk.post(BASKET, json={"code": LIPSTICK, "qty": 2})
        assert first.status_code == 201, first.text
        kiosk.post(BASKET, json={"sku": "LIP-RED-01"})
        pad.post(BASKET, json={"code": TOTE, "qty": 3})
        pad.post(BASKET, json={"sku": "LIP-RED-01"})
        session = kiosk.get("/v1/sessions/kiosk-1").json()
    assert lines_of(session) == [("LIP-RED-01", 3, "kiosk-1"), ("TOTE-CANVAS", 3, "associate-1"),
                                 ("LIP-RED-01", 1, "associate-1")]
    red = session["basket"]["lines"][0]
    assert red["name"].endswith("Ruby") and red["unit_price"] == "159.00" and red["currency"] == "CNY"  # the promo
    assert session["basket"]["items"] == 7


@pytest.mark.parametrize("body, piece", [
    ({"code": "0000000000000"}, "no product with barcode or SKU '0000000000000'"),
    ({"sku": LIPSTICK}, "no product with SKU '6901234567892'"),  # a barcode is not a SKU
    ({"code": LIPSTICK, "sku": "LIP-RED-01"}, "not both"),
    ({"qty": 1}, "name the product: give code (a barcode or SKU) or sku"),
    ({"code": TOTE, "qty": 0}, "qty"),
])
def test_a_bad_line_is_422_with_what_is_wrong(agent, body, piece):
    with agent.client("kiosk") as c:
        r = c.post(BASKET, json=body)
        assert r.status_code == 422 and piece in r.json()["detail"], r.text
        assert c.get("/v1/sessions/kiosk-1").json()["basket"]["lines"] == []


def test_more_than_the_store_has_is_409(agent):
    with agent.client("kiosk") as kiosk, agent.client("associate") as pad:
        assert kiosk.post(BASKET, json={"code": GLASSES, "qty": 4}).status_code == 201
        over = pad.post(BASKET, json={"code": GLASSES, "qty": 2})  # 4 + 2 of the 5 in the store, by any source
        assert over.status_code == 409 and "only 5 of GLS-ROUND-BLK in the store" in over.json()["detail"]
        assert pad.post(BASKET, json={"code": GLASSES, "qty": 1}).status_code == 201
        assert lines_of(kiosk.get("/v1/sessions/kiosk-1").json()) == [("GLS-ROUND-BLK", 4, "kiosk-1"),
                                                                       ("GLS-ROUND-BLK", 1, "associate-1")]


def test_who_may_change_which_basket(agent):
    with agent.client("kiosk") as kiosk, agent.client("admin") as admin, agent.client("mirror") as mirror, \
            agent.client("console") as console:
        assert kiosk.post("/v1/sessions/kiosk-2/basket", json={"code": TOTE}).status_code == 403
        assert kiosk.delete("/v1/sessions/kiosk-2/basket").status_code == 403
        assert kiosk.get("/v1/sessions/kiosk-2").status_code == 403
        # No mirror.camera in this store names kiosk-1 as its kiosk.
        refused = mirror.post(BASKET, json={"code": TOTE})
        assert refused.status_code == 403 and "kiosk is 'kiosk-1'" in refused.json()["detail"]
        assert mirror.delete(BASKET).status_code == 403
        assert console.post(BASKET, json={"code": TOTE}).status_code == 403
        missing = admin.post("/v1/sessions/associate-1/basket", json={"code": TOTE})
        assert missing.status_code == 404 and "no kiosk 'associate-1'" in missing.json()["detail"]
        assert admin.post(BASKET, json={"code": TOTE}).status_code == 201
        cleared = kiosk.delete(BASKET)
        assert cleared.status_code == 200 and cleared.json()["basket"] == {"lines": [], "items": 0}


def test_each_change_reaches_the_kiosk_and_staff_but_not_the_console(agent):
    with feed(agent, "kiosk") as kiosk, feed(agent, "associate") as pad, feed(agent, "console") as console:
        with agent.client("associate") as c:
            c.post(BASKET, json={"code": TOTE, "qty": 2})
            c.delete(BASKET)
        added = kiosk.expect("session.basket", lambda d: d["change"] == "added")
        cleared = kiosk.expect("session.basket", lambda d: d["change"] == "cleared")
        pad.expect("session.basket", lambda d: d["change"] == "cleared")
        quiet = console.quiet()
    assert added["station"] == "kiosk-1" and added["sku"] == "TOTE-CANVAS" and added["qty"] == 2
    assert added["source"] == "associate-1" and added["items"] == 2
    assert [(ln["sku"], ln["qty"], ln["source"]) for ln in added["lines"]] == [("TOTE-CANVAS", 2, "associate-1")]
    assert cleared["lines"] == [] and cleared["items"] == 0
    assert not [e for e in quiet if e["type"].startswith("session.")]


def test_a_kiosk_sale_takes_what_it_sold_out_of_its_basket_and_a_replay_takes_nothing(agent):
    with agent.client("kiosk") as kiosk, agent.client("associate") as pad:
        kiosk.post(BASKET, json={"code": LIPSTICK, "qty": 2})
        pad.post(BASKET, json={"code": TOTE})
        pad.post("/v1/sales", json=sale((TOTE, 1)))  # an associate's sale is not the kiosk's checkout
        assert len(kiosk.get("/v1/sessions/kiosk-1").json()["basket"]["lines"]) == 2
        with feed(agent, "kiosk") as events:
            assert kiosk.post("/v1/sales", json=sale((LIPSTICK, 1))).status_code == 201  # one of the two
            took = events.expect("session.basket")
        assert took["change"] == "sale"
        assert lines_of(kiosk.get("/v1/sessions/kiosk-1").json()) == [
            ("LIP-RED-01", 1, "kiosk-1"), ("TOTE-CANVAS", 1, "associate-1")]
        assert kiosk.post("/v1/sales", json=sale((GLASSES, 1))).status_code == 201  # nothing of the basket
        assert len(kiosk.get("/v1/sessions/kiosk-1").json()["basket"]["lines"]) == 2
        body = sale((LIPSTICK, 1), (TOTE, 3))  # more totes than the basket held: it takes what is there
        assert kiosk.post("/v1/sales", json=body).status_code == 201
        assert kiosk.get("/v1/sessions/kiosk-1").json()["basket"]["lines"] == []
        kiosk.post(BASKET, json={"code": TOTE})  # the next customer's
        replay = kiosk.post("/v1/sales", json=body)
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        assert lines_of(kiosk.get("/v1/sessions/kiosk-1").json()) == [("TOTE-CANVAS", 1, "kiosk-1")]
