"""A mirror with ``kiosk:`` through a real agent: "Add to basket" fills the kiosk's session basket, "Order online"
places a pickup order, and the try-on session records both, over real HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from support.agent import AgentProcess, config_dict, free_port  # noqa: E402
from support.flows import feed, poll, sale  # noqa: E402

from edge_agent.store import outbox  # noqa: E402

# A long session_gap: the session these tests fill is ended by "Done", never by the camera starting late.
MIRROR = {"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic", "station": "mirror-1",
          "kiosk": "kiosk-1", "width": 320, "height": 240, "session_gap": 600}
BASE = "/v1/mirror/mirror-1"
SESSION = "/v1/sessions/kiosk-1"
KIOSK_2 = "test-kiosk-2-token"  # another kiosk of the store, not the mirror's


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[AgentProcess]:
    # Baskets and orders need the mirror's driver, not its picture: no wait for the camera.
    config = config_dict(free_port(), [MIRROR])
    config["api"]["clients"].append({"name": "kiosk-2", "role": "kiosk",
                                     "token_sha256": hashlib.sha256(KIOSK_2.encode()).hexdigest()})
    agent = AgentProcess(tmp_path_factory.mktemp("mirror-kiosk"), config)
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


def kiosk_lines(agent) -> list[tuple[str, int, str]]:
    with agent.client("kiosk") as kiosk:
        return [(ln["sku"], ln["qty"], ln["source"]) for ln in kiosk.get(SESSION).json()["basket"]["lines"]]


def test_add_to_basket_goes_to_the_kiosks_session(agent):
    with feed(agent, "kiosk") as events, agent.client("mirror") as mirror:
        added = mirror.post(f"{BASE}/basket", json={"sku": "LIP-NUDE-02", "qty": 2, "channel": "store"})
        assert added.status_code == 201, added.text
        heard = events.expect("session.basket", lambda d: d["change"] == "added")
        status = mirror.get(BASE).json()
    assert heard["source"] == "mirror-1" and heard["sku"] == "LIP-NUDE-02" and heard["qty"] == 2
    assert kiosk_lines(agent) == [("LIP-NUDE-02", 2, "mirror-1")]
    view = added.json()
    assert view["lines"] == []  # nothing in the mirror's own basket: no kiosk can check it out twice
    assert view["kiosk"]["station"] == "kiosk-1"
    assert [(ln["sku"], ln["qty"]) for ln in view["kiosk"]["lines"]] == [("LIP-NUDE-02", 2)]
    assert status["kiosk"] == "kiosk-1" and status["basket"] == view
    with agent.client("kiosk") as kiosk:
        line = kiosk.get(SESSION).json()["basket"]["lines"][0]
    assert line["name"].endswith("Nude") and line["unit_price"] == "189.00"


def test_the_kiosks_basket_refuses_more_than_the_store_has(agent):
    with agent.client("mirror") as mirror:
        assert mirror.post(f"{BASE}/basket", json={"sku": "GLS-ROUND-BLK", "qty": 4}).status_code == 201
        over = mirror.post(f"{BASE}/basket", json={"sku": "GLS-ROUND-BLK", "qty": 2})
        not_tryon = mirror.post(f"{BASE}/basket", json={"sku": "TOTE-CANVAS"})
    assert over.status_code == 409 and "only 5 of GLS-ROUND-BLK in the store" in over.json()["detail"]
    assert not_tryon.status_code == 422
    assert ("GLS-ROUND-BLK", 4, "mirror-1") in kiosk_lines(agent)


def test_the_mirrors_screen_may_fill_its_own_kiosks_basket_only(agent):
    with agent.client("mirror") as mirror, agent.client("associate") as pad:
        pad.post(f"{SESSION}/basket", json={"sku": "TOTE-CANVAS"})  # someone else's line in the kiosk's basket
        direct = mirror.post(f"{SESSION}/basket", json={"sku": "BLUSH-PEACH"})
        assert direct.status_code == 201, direct.text
        # A public screen hears back only what it put there: no member, no other line.
        assert set(direct.json()) == {"station", "basket"}
        assert {ln["source"] for ln in direct.json()["basket"]["lines"]} == {"mirror-1"}
        assert pad.get(f"{SESSION}").json()["basket"]["items"] > direct.json()["basket"]["items"]
        assert mirror.post("/v1/sessions/kiosk-2/basket", json={"sku": "BLUSH-PEACH"}).status_code == 403
        assert mirror.get(SESSION).status_code == 403  # it adds; it does not read the kiosk's session
        assert ("BLUSH-PEACH", 1, "mirror-1") in kiosk_lines(agent)
        pad.delete(f"{SESSION}/basket")


def test_an_online_wish_stays_in_the_mirrors_own_basket(agent):
    with agent.client("mirror") as mirror:
        view = mirror.post(f"{BASE}/basket", json={"sku": "SHADOW-BRONZE", "channel": "online"}).json()
    assert [(ln["sku"], ln["channel"]) for ln in view["lines"]] == [("SHADOW-BRONZE", "online")]
    assert "SHADOW-BRONZE" not in {sku for sku, _, _ in kiosk_lines(agent)}


def test_order_online_places_a_pickup_order_from_the_mirror(agent):
    key = str(uuid.uuid4())
    request = {"client_order_id": key, "lines": [{"sku": "LIP-RED-01"}]}
    with agent.client("mirror") as mirror, agent.client("associate") as pad:
        placed = mirror.post(f"{BASE}/order", json=request)
        assert placed.status_code == 201, placed.text
        again = mirror.post(f"{BASE}/order", json=request)
        other = pad.post("/v1/orders", json=request)  # the same key elsewhere is another order
        tote = mirror.post(f"{BASE}/order", json={"client_order_id": str(uuid.uuid4()),
                                                  "lines": [{"sku": "TOTE-CANVAS"}]})
        listed = {o["order_id"]: o for o in pad.get("/v1/orders").json()}
    order = placed.json()
    assert order["origin"] == "mirror" and order["device"] == "mirror-1" and order["station"] == "mirror-1"
    assert order["total"] == "159.00" and len(order["pickup_code"]) == 6
    assert order["pickup_qr"] == f"RP1:{order['order_id']}:{order['pickup_code']}"
    assert again.json() == order and again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert tote.status_code == 422 and "not a try-on product of this mirror: TOTE-CANVAS" in tote.json()["detail"]
    assert listed[order["order_id"]]["origin"] == "mirror" and listed[order["order_id"]]["status"] == "new"
    agent.order = order  # type: ignore[attr-defined]


def test_a_retry_of_the_order_that_took_the_last_unit_is_the_same_order(agent):
    with agent.client("associate") as pad, agent.client("mirror") as mirror:
        pad.post("/v1/stock/adjustments", json={"code": "SHADOW-BRONZE", "counted": 0, "reason": "count"}
                 ).raise_for_status()
        online = pad.get("/v1/products/SHADOW-BRONZE").json()["stock_online"]
        request = {"client_order_id": str(uuid.uuid4()), "lines": [{"sku": "SHADOW-BRONZE", "qty": online}]}
        first = mirror.post(f"{BASE}/order", json=request)
        assert first.status_code == 201, first.text
        # None left in the store or online: the mirror no longer offers it, and the retry still gets its order.
        assert "SHADOW-BRONZE" not in {p["sku"] for p in mirror.get(f"{BASE}/products").json()}
        retry = mirror.post(f"{BASE}/order", json=request)
        more = mirror.post(f"{BASE}/order", json={**request, "client_order_id": str(uuid.uuid4())})
    assert retry.status_code == 201 and retry.json() == first.json()
    assert more.status_code == 409 and "only 0 of SHADOW-BRONZE online" in more.json()["detail"]
    agent.last_unit = first.json()  # type: ignore[attr-defined]


def test_the_try_on_session_records_the_basket_and_the_order(agent):
    with agent.client("mirror") as mirror:
        ended = mirror.post(f"{BASE}/session/end").json()["ended"]
    assert ended["basket"] == [
        {"sku": "LIP-NUDE-02", "qty": 2, "channel": "store", "kiosk": "kiosk-1"},
        {"sku": "GLS-ROUND-BLK", "qty": 4, "channel": "store", "kiosk": "kiosk-1"},
        {"sku": "SHADOW-BRONZE", "qty": 1, "channel": "online"},
    ]
    assert ended["orders"] == [
        {"order_id": agent.order["order_id"], "lines": [{"sku": "LIP-RED-01", "qty": 1}]},
        {"order_id": agent.last_unit["order_id"], "lines": [{"sku": "SHADOW-BRONZE", "qty": agent.last_unit["items"]}]},
    ]  # each once: a replay records nothing more

    def recorded() -> list:
        with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as conn:
            return [e.data for e in outbox.pending(conn) if e.type == "retail.tryon.session"]

    assert poll(recorded, bool, what="the try-on session in the outbox") == [ended]


def kiosk_session(agent) -> dict:
    with agent.client("kiosk") as kiosk:
        return kiosk.get(SESSION).json()


def test_the_kiosks_sale_ends_the_session_the_mirror_filled(agent):
    with feed(agent, "kiosk") as events, agent.client("kiosk") as kiosk, agent.client("mirror") as mirror:
        assert mirror.post(f"{BASE}/basket", json={"sku": "LIP-NUDE-02"}).status_code == 201
        assert mirror.post(f"{BASE}/basket", json={"sku": "GLS-ROUND-BLK"}).status_code == 201
        paying = kiosk_session(agent)
        assert {("LIP-NUDE-02", "mirror-1"), ("GLS-ROUND-BLK", "mirror-1")} <= {
            (ln["sku"], ln["source"]) for ln in paying["basket"]["lines"]}
        paid = kiosk.post("/v1/sales", json=sale(("LIP-NUDE-02", 1)))  # the customer leaves the glasses
        assert paid.status_code == 201, paid.text
        ended = events.expect("session.ended")
        assert ended["session_id"] == paying["session_id"] and ended["reason"] == "sale"
        assert [(ln["sku"], ln["qty"], ln["source"]) for ln in ended["left"]] == [("GLS-ROUND-BLK", 1, "mirror-1")]
        assert kiosk.get(SESSION).json()["basket"]["lines"] == []
        assert mirror.get(BASE).json()["basket"]["kiosk"]["lines"] == []
        # The mirror's next "Add to basket" is for the next customer, in a new session.
        assert mirror.post(f"{BASE}/basket", json={"sku": "GLS-ROUND-BLK"}).status_code == 201
        after = kiosk_session(agent)
        assert after["session_id"] != paying["session_id"] and after["member_id"] is None
        assert [(ln["sku"], ln["qty"]) for ln in after["basket"]["lines"]] == [("GLS-ROUND-BLK", 1)]
        kiosk.delete(SESSION)


def test_what_the_mirror_adds_while_the_kiosk_pays_is_in_one_session_never_lost_or_doubled(agent):
    """The mirror's screen adds ten lipsticks one by one while the kiosk's sale is written: each is in the
    basket of the session the sale ended (named in ``left``) or in the next one, never in both."""
    first_added = threading.Event()
    answers: list[int] = []

    def add_ten() -> None:
        with agent.client("mirror") as mirror:
            for _ in range(10):
                answers.append(mirror.post(f"{BASE}/basket", json={"sku": "LIP-RED-01"}).status_code)
                first_added.set()

    adder = threading.Thread(target=add_ten)
    with feed(agent, "kiosk") as events, agent.client("kiosk") as kiosk:
        adder.start()
        assert first_added.wait(30)
        paid = kiosk.post("/v1/sales", json=sale(("TOTE-CANVAS", 1)))
        assert paid.status_code == 201, paid.text
        ended = events.expect("session.ended")
        adder.join(60)
        assert answers == [201] * 10
        after = kiosk_session(agent)
        kiosk.delete(SESSION)
    left = sum(ln["qty"] for ln in ended["left"] if ln["sku"] == "LIP-RED-01")
    kept = sum(ln["qty"] for ln in after["basket"]["lines"] if ln["sku"] == "LIP-RED-01")
    assert left >= 1 and left + kept == 10, (left, kept)
    assert after["session_id"] != ended["session_id"]


def test_only_the_mirrors_own_kiosk_and_staff_see_its_part_of_that_kiosks_basket(agent):
    with agent.client("mirror") as mirror:
        assert mirror.post(f"{BASE}/basket", json={"sku": "GLS-ROUND-BLK"}).status_code == 201
    with agent.client("kiosk") as own, agent.client("associate") as pad, \
            httpx.Client(base_url=agent.url, headers={"Authorization": f"Bearer {KIOSK_2}"}) as other:
        assert ("GLS-ROUND-BLK", 1) in {(ln["sku"], ln["qty"]) for ln in own.get(f"{BASE}/basket").json()["kiosk"]["lines"]}
        assert "kiosk" in pad.get(f"{BASE}/basket").json()
        seen = other.get(f"{BASE}/basket")
        assert seen.status_code == 200 and "kiosk" not in seen.json()
        pad.delete(f"{SESSION}/basket")


def test_the_mirrors_screen_names_no_member_on_an_order(agent):
    with agent.client("mirror") as mirror:
        r = mirror.post(f"{BASE}/order", json={"client_order_id": str(uuid.uuid4()), "member_id": "M-1001",
                                               "lines": [{"sku": "LIP-RED-01"}]})
    assert r.status_code == 422 and "without member_id" in r.json()["detail"]
