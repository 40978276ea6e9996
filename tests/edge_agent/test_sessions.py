"""Kiosk sessions: one customer per session, in process with an injected clock (edge_agent/sessions.py), then
through a real agent over HTTP: who may fill a basket, what it checks, who hears of it, and how a session ends
(the kiosk's sale, its "new customer" button, and ``sessions.idle_timeout`` with a real agent)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from decimal import Decimal

import pytest
from support.agent import AgentProcess, config_dict, free_port
from support.flows import GLASSES, LIPSTICK, TOTE, card, feed, hub_event, linked_agent, poll, sale, sync_point

from drivers.scanner.emulator import SerialScannerEmulator
from edge_agent.bus import EventBus
from edge_agent.catalog import Product
from edge_agent.sessions import EndReason, Sessions
from edge_core.bus import BusEvent

BASKET = "/v1/sessions/kiosk-1/basket"
KIOSK_2 = "test-kiosk-2-token"


# In process, with a clock the test moves -----------------------------------------------------------------------

class Clock:
    """Monotonic seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def product(sku: str, stock: int = 10) -> Product:
    return Product(sku=sku, barcodes=[], name=sku.title(), price=Decimal("10.00"), currency="CNY", promo=None,
                   stock_store=stock, stock_online=0, rating=None, reviews=0, version=1)


def drain(sub) -> list[tuple[str, dict]]:
    out = []
    while not sub.queue.empty():
        event = sub.queue.get_nowait()
        out.append((event.type, event.data))
    return out


def ended(events: list[tuple[str, dict]]) -> list[dict]:
    return [data for type_, data in events if type_ == "session.ended"]


@pytest.fixture
def kiosks():
    """(sessions, clock, bus subscription) with a 180 s idle timeout and no event loop: no timers run."""
    bus, clock = EventBus(), Clock()
    return Sessions(bus, idle_timeout=180, clock=clock), clock, bus.subscribe("session.", "member.")


def test_a_session_idles_out_after_the_timeout_without_activity(kiosks):
    sessions, clock, sub = kiosks
    first = sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1").id
    clock.now += 179
    sessions.add("kiosk-1", product("TOTE"), 1, "kiosk-1")  # activity: the timeout starts over
    clock.now += 179
    assert sessions.expire_idle() == []
    clock.now += 1
    assert sessions.expire_idle() == ["kiosk-1"]
    (end,) = ended(drain(sub))
    assert end == {"station": "kiosk-1", "session_id": first, "reason": "idle",
                   "left": [{"sku": "TOTE", "name": "Tote", "qty": 1, "source": "kiosk-1"}], "items": 1}
    assert sessions.get("kiosk-1").member_id is None and sessions.get("kiosk-1").basket == ()
    assert sessions.attach_member("kiosk-1", "M-2", via="scan:scanner-1").id not in (None, first)  # a new id


def test_a_scan_at_the_station_is_activity_and_one_elsewhere_is_not(kiosks):
    sessions, clock, _ = kiosks
    sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    sessions.attach_member("kiosk-2", "M-2", via="scan:scanner-2")
    clock.now += 100
    asyncio.run(sessions.handle(BusEvent("scan", {"station": "kiosk-1", "code": TOTE})))
    clock.now += 100
    assert sessions.expire_idle() == ["kiosk-2"]
    assert sessions.get("kiosk-1").member_id == "M-1"


def test_a_sale_ends_the_session_it_completed_and_drops_what_it_left_and_what_came_meanwhile(kiosks):
    sessions, clock, sub = kiosks
    sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    sessions.add("kiosk-1", product("LIP"), 2, "kiosk-1")
    sessions.add("kiosk-1", product("BAG"), 1, "kiosk-1")
    sessions.attach_member("kiosk-2", "M-2", via="scan:scanner-2")
    paying = sessions.begin_checkout("kiosk-1")
    assert paying.member_id == "M-1"
    sessions.add("kiosk-1", product("GLS"), 1, "mirror-1")  # the counter's mirror, while the sale is written
    clock.now += 1000  # the sale is slow: a session with a checkout in flight never idles out
    assert sessions.expire_idle() == ["kiosk-2"]
    drain(sub)
    sessions.end_checkout("kiosk-1", paying.id, {"LIP": 1})
    (end,) = ended(drain(sub))
    assert end["session_id"] == paying.id and end["reason"] == "sale"
    assert [(ln["sku"], ln["qty"], ln["source"]) for ln in end["left"]] == [
        ("LIP", 1, "kiosk-1"), ("BAG", 1, "kiosk-1"), ("GLS", 1, "mirror-1")]
    assert sessions.get("kiosk-1") .member_id is None and sessions.get("kiosk-1").basket == ()
    sessions.add("kiosk-1", product("GLS"), 1, "mirror-1")  # after the sale: the next customer's session
    assert sessions.get("kiosk-1").id != paying.id and sessions.get("kiosk-1").member_id is None


def test_an_anonymous_sale_with_an_empty_basket_ends_nothing_anyone_hears_of(kiosks):
    sessions, clock, sub = kiosks
    paying = sessions.begin_checkout("kiosk-1")
    assert paying.id is not None and paying.member_id is None
    sessions.end_checkout("kiosk-1", paying.id, {"TOTE": 1})
    assert sessions.get("kiosk-1").id is None and drain(sub) == []


def test_a_sale_racing_an_idle_expiry_ends_the_session_once(kiosks):
    sessions, clock, sub = kiosks
    # The sale starts first: it holds the member, the expiry waits for it, and the sale ends the session.
    sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    clock.now += 179.9
    paying = sessions.begin_checkout("kiosk-1")
    clock.now += 0.2
    assert sessions.expire_idle() == []
    sessions.end_checkout("kiosk-1", paying.id, {"LIP": 1})
    assert [e["reason"] for e in ended(drain(sub))] == ["sale"]
    # The expiry comes first: the sale that follows finds nobody attached (the route answers 422 to points).
    sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    clock.now += 180
    assert sessions.expire_idle() == ["kiosk-1"]
    late = sessions.begin_checkout("kiosk-1")
    assert late.member_id is None
    sessions.end_checkout("kiosk-1", late.id, None)  # refused: nothing of a customer to end
    assert [e["reason"] for e in ended(drain(sub))] == ["idle"]
    assert sessions.get("kiosk-1").id is None


def test_a_sale_never_ends_the_next_customers_session(kiosks):
    sessions, clock, sub = kiosks
    sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    paying = sessions.begin_checkout("kiosk-1")
    assert sessions.end("kiosk-1", EndReason.NEW_CUSTOMER).reason == EndReason.NEW_CUSTOMER  # pressed while paying
    sessions.attach_member("kiosk-1", "M-2", via="scan:scanner-1")
    sessions.end_checkout("kiosk-1", paying.id, {"LIP": 1})  # the first customer's sale lands
    assert sessions.get("kiosk-1").member_id == "M-2"
    assert [e["reason"] for e in ended(drain(sub))] == ["new_customer"]
    assert sessions.end("kiosk-1", EndReason.NEW_CUSTOMER).session_id != paying.id
    assert sessions.end("kiosk-1", EndReason.NEW_CUSTOMER) is None  # idempotent: nothing left to end


def test_a_refused_sale_lets_the_session_go_on_and_counts_as_activity(kiosks):
    sessions, clock, sub = kiosks
    sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    clock.now += 170
    paying = sessions.begin_checkout("kiosk-1")
    sessions.end_checkout("kiosk-1", paying.id, None)
    clock.now += 170
    assert sessions.expire_idle() == []
    assert sessions.get("kiosk-1").member_id == "M-1" and not ended(drain(sub))


def test_another_members_card_is_another_customer(kiosks):
    sessions, clock, sub = kiosks
    first = sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
    sessions.add("kiosk-1", product("LIP"), 1, "kiosk-1")
    assert sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1").id == first.id  # the same card again
    second = sessions.attach_member("kiosk-1", "M-2", via="scan:scanner-1")
    assert second.id != first.id and second.basket == ()
    (end,) = ended(drain(sub))
    assert end["session_id"] == first.id and end["reason"] == "new_customer" and end["items"] == 1


def test_the_idle_timer_fires_on_the_event_loop():
    async def main() -> dict:
        bus = EventBus()
        sub = bus.subscribe("session.ended")
        sessions = Sessions(bus, idle_timeout=0.05)
        await sessions.start()
        try:
            sessions.attach_member("kiosk-1", "M-1", via="scan:scanner-1")
            async with asyncio.timeout(30):
                return (await sub.get()).data
        finally:
            await sessions.stop()

    assert asyncio.run(main())["reason"] == "idle"


# Through a real agent --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> AgentProcess:
    wd = tmp_path_factory.mktemp("sessions")
    config = config_dict(free_port())
    config["api"]["clients"].append({"name": "kiosk-2", "role": "kiosk",
                                     "token_sha256": hashlib.sha256(KIOSK_2.encode()).hexdigest()})
    agent = AgentProcess(wd, config)
    agent.import_catalog()
    agent.start()
    yield agent
    agent.close()


@pytest.fixture(autouse=True)
def new_customer(agent):
    with agent.client("admin") as c:
        for station in ("kiosk-1", "kiosk-2"):
            assert c.delete(f"/v1/sessions/{station}").status_code == 200


def lines_of(session: dict) -> list[tuple[str, int, str]]:
    return [(ln["sku"], ln["qty"], ln["source"]) for ln in session["basket"]["lines"]]


def left_of(ended: dict) -> list[tuple[str, int, str]]:
    return [(ln["sku"], ln["qty"], ln["source"]) for ln in ended["left"]]


def test_an_empty_session_has_an_empty_basket(agent):
    with agent.client("kiosk") as c:
        session = c.get("/v1/sessions/kiosk-1").json()
    assert session == {"station": "kiosk-1", "session_id": None, "member_id": None, "attached_at": None,
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


def test_new_customer_ends_the_session_for_the_kiosk_and_staff_and_is_idempotent(agent):
    with agent.client("kiosk") as kiosk, agent.client("associate") as pad:
        kiosk.post(BASKET, json={"code": TOTE, "qty": 2})
        session_id = kiosk.get("/v1/sessions/kiosk-1").json()["session_id"]
        assert session_id
        with feed(agent, "kiosk") as own, feed(agent, "associate") as staff, feed(agent, "console") as console:
            pressed = kiosk.delete("/v1/sessions/kiosk-1")
            heard = own.expect("session.ended")
            staff.expect("session.ended", lambda d: d["station"] == "kiosk-1")
            assert not [e for e in console.quiet() if e["type"].startswith("session.")]
        assert pressed.status_code == 200, pressed.text
        ended = pressed.json()["ended"]
        assert ended == heard
        assert ended["session_id"] == session_id and ended["reason"] == "new_customer" and ended["items"] == 2
        assert left_of(ended) == [("TOTE-CANVAS", 2, "kiosk-1")]
        assert pressed.json()["session"]["basket"] == {"lines": [], "items": 0}
        again = kiosk.delete("/v1/sessions/kiosk-1")
        assert again.status_code == 200 and again.json()["ended"] is None
        assert kiosk.delete("/v1/sessions/kiosk-2").status_code == 403  # another kiosk's customer
        assert pad.delete("/v1/sessions/associate-1").status_code == 404  # no kiosk
        kiosk.post(BASKET, json={"code": TOTE})
        assert kiosk.get("/v1/sessions/kiosk-1").json()["session_id"] not in (None, session_id)


def test_a_kiosk_sale_ends_its_session_and_no_other(agent):
    other = {"Authorization": f"Bearer {KIOSK_2}"}
    with agent.client("kiosk") as kiosk, agent.client("associate") as pad:
        kiosk.post(BASKET, json={"code": LIPSTICK, "qty": 2})
        pad.post(BASKET, json={"code": TOTE})
        kiosk.post("/v1/sessions/kiosk-2/basket", json={"code": GLASSES}, headers=other)
        pad.post("/v1/sales", json=sale((TOTE, 1)))  # an associate's sale is not the kiosk's checkout
        first = kiosk.get("/v1/sessions/kiosk-1").json()
        assert len(first["basket"]["lines"]) == 2
        with feed(agent, "kiosk") as events:
            body = sale((LIPSTICK, 1))  # one of the two
            paid = kiosk.post("/v1/sales", json=body)
            assert paid.status_code == 201, paid.text
            ended = events.expect("session.ended")
        assert ended["session_id"] == first["session_id"] and ended["reason"] == "sale"
        # What the sale left out goes with the session, named for whoever puts it back.
        assert left_of(ended) == [("LIP-RED-01", 1, "kiosk-1"), ("TOTE-CANVAS", 1, "associate-1")]
        assert kiosk.get("/v1/sessions/kiosk-1").json()["basket"]["lines"] == []
        assert lines_of(kiosk.get("/v1/sessions/kiosk-2", headers=other).json()) == [
            ("GLS-ROUND-BLK", 1, "kiosk-2")]
        kiosk.post(BASKET, json={"code": TOTE})  # the next customer's
        replay = kiosk.post("/v1/sales", json=body)
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        assert lines_of(kiosk.get("/v1/sessions/kiosk-1").json()) == [("TOTE-CANVAS", 1, "kiosk-1")]
        # Every kiosk sale closes the customer's session, even one that sold nothing of the basket.
        assert kiosk.post("/v1/sales", json=sale((GLASSES, 1))).status_code == 201
        assert kiosk.get("/v1/sessions/kiosk-1").json()["basket"]["lines"] == []


# A real agent with a short sessions.idle_timeout and a scanner at the kiosk ---------------------------------------

IDLE = 10.0  # the customer-keeps-scanning loop needs each scan heard within this, on 2 shared cores

@pytest.fixture(scope="module")
def idle_store(tmp_path_factory):
    """(agent, hub, scanner): an agent linked to a hub (for member cards), ``sessions.idle_timeout`` IDLE s,
    a serial scanner at kiosk-1 and one at an associate's counter (associate-1)."""
    work = tmp_path_factory.mktemp("idle")
    scanner = SerialScannerEmulator(work / "dev" / "scanner-1").plug()
    counter = SerialScannerEmulator(work / "dev" / "scanner-2").plug()
    devices = [{"id": "scanner-1", "kind": "scanner.serial", "port": str(scanner.path), "baudrate": 115200,
                "station": "kiosk-1", "dedupe_window": 0},
               {"id": "scanner-2", "kind": "scanner.serial", "port": str(counter.path), "baudrate": 115200,
                "station": "associate-1", "dedupe_window": 0}]
    with linked_agent(work, devices, sessions={"idle_timeout": IDLE}) as (agent, hub):
        with agent.client("associate") as c:
            poll(lambda: c.get("/v1/devices").json(), lambda ds: all(d["state"] == "online" for d in ds),
                 what="the scanner online")
        agent.counter = counter
        yield agent, hub, scanner
    scanner.close()
    counter.close()


def test_a_member_card_at_an_associates_counter_arrives_but_starts_no_session(idle_store):
    """A counter is no kiosk: the member arrives for staff, and no session (which only the idle timer would end)
    is made for the counter's station."""
    agent, _, _ = idle_store
    with feed(agent, "associate") as staff, agent.client("associate") as pad:
        agent.counter.scan("RM1:M-COUNTER")
        arrived = staff.expect("member.arrived", lambda d: d["member_id"] == "M-COUNTER")
        assert arrived["station"] == "associate-1"
        staff.quiet()
        assert not [e for e in staff.seen if e["type"] == "member.attached"], staff.seen
        assert pad.get("/v1/sessions/associate-1").status_code == 404


def test_an_idle_session_ends_and_its_member_is_gone_from_the_kiosk(idle_store):
    agent, _, scanner = idle_store
    with feed(agent, "kiosk") as kiosk, agent.client("kiosk") as c:
        scanner.scan("RM1:M-IDLE")
        kiosk.expect("member.attached", lambda d: d["member_id"] == "M-IDLE")
        assert c.get("/v1/members/M-IDLE").status_code == 200
        c.post(BASKET, json={"code": TOTE})
        basket_at = time.monotonic()
        # A customer scanning products at the kiosk keeps the session: scans paced past the timeout of the basket
        # change alone, each heard back before the next (the pacing is the customer's, not a synchronization).
        while True:
            last_activity = time.monotonic()  # before the scan is sent: the agent sees it later
            scanner.scan(LIPSTICK)
            kiosk.expect("scan", lambda d: d.get("code") == LIPSTICK)
            if last_activity - basket_at > IDLE + 0.5:
                break
            time.sleep(0.25)
        assert not [e for e in kiosk.seen if e["type"] == "session.ended"], "it ended while the customer scanned"
        ended = kiosk.expect("session.ended", timeout=30 + IDLE)
        waited = time.monotonic() - last_activity
        assert ended["reason"] == "idle" and left_of(ended) == [("TOTE-CANVAS", 1, "kiosk-1")]
        assert waited >= IDLE, f"ended {waited:.2f} s after the last activity"
        assert c.get("/v1/sessions/kiosk-1").json()["member_id"] is None
        assert c.get("/v1/members/M-IDLE").status_code == 403
        late = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-IDLE", points_redeemed=10))
        assert late.status_code == 422 and "not attached to this kiosk's session" in late.json()["detail"]


def test_a_redeeming_sale_racing_the_idle_expiry_is_either_the_sale_or_the_expiry_never_both(idle_store):
    """The customer stands still until about the expiry, then pays with points: whichever comes first wins,
    her session ends once, and afterwards her points are nobody's at the kiosk."""
    agent, hub, scanner = idle_store
    hub.send("members", [hub_event("retail.member.card", card("M-RACE", points=10_000))])
    sync_point(hub, "race-card")
    outcomes: list[int] = []
    sessions_ended: list[str] = []
    with feed(agent, "kiosk") as kiosk, agent.client("kiosk") as c:
        for offset in (-0.3, -0.1, 0.0, 0.1, 0.3):
            started = time.monotonic()
            scanner.scan("RM1:M-RACE")
            kiosk.expect("member.attached", lambda d: d["member_id"] == "M-RACE")
            session_id = c.get("/v1/sessions/kiosk-1").json()["session_id"]  # reading is no activity
            time.sleep(max(0.0, started + IDLE + offset - time.monotonic()))  # the customer's pause, not a sync
            paid = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-RACE", points_redeemed=100))
            end = kiosk.expect("session.ended", lambda d, sid=session_id: d["session_id"] == sid)
            if paid.status_code == 201:
                assert end["reason"] == "sale", end
            else:
                assert paid.status_code == 422 and "not attached to this kiosk's session" in paid.json()["detail"]
                assert end["reason"] == "idle", end
            outcomes.append(paid.status_code)
            sessions_ended.append(session_id)
            again = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-RACE", points_redeemed=100))
            assert again.status_code == 422 and "not attached" in again.json()["detail"]
            assert c.get("/v1/members/M-RACE").status_code == 403
        kiosk.quiet()
    ends = [e["data"]["session_id"] for e in kiosk.seen if e["type"] == "session.ended"]
    assert sorted(ends) == sorted(sessions_ended), "each session ends exactly once, by the sale or by the expiry"
    with agent.client("associate") as pad:
        assert pad.get("/v1/members/M-RACE").json()["points"] == 10_000 - 100 * outcomes.count(201)


def test_staff_reading_a_customers_session_is_an_access_and_the_kiosks_own_screen_is_not(idle_store):
    """GET /v1/sessions/{station} by an associate lands in the access log (client, role, the member's
    pseudonym); the kiosk showing the customer her own session does not (edge_agent/privacy.py)."""
    import contextlib
    import sqlite3

    from edge_agent.store import keys

    agent, _, scanner = idle_store
    alias = keys.pseudonym((agent.data_dir / keys.KEY_FILE).read_bytes(), "M-SEEN")

    def reads() -> list[tuple]:
        with contextlib.closing(sqlite3.connect(f"file:{agent.data_dir / 'store.db'}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT client, role, what FROM access_log WHERE member = ? ORDER BY id",
                                (alias,)).fetchall()

    with feed(agent, "kiosk") as kiosk, agent.client("kiosk") as own, agent.client("associate") as staff:
        scanner.scan("RM1:M-SEEN")
        kiosk.expect("member.attached", lambda d: d["member_id"] == "M-SEEN")
        assert own.get("/v1/sessions/kiosk-1").json()["member_id"] == "M-SEEN"
        assert staff.get("/v1/sessions/kiosk-1").json()["member_id"] == "M-SEEN"
        got = poll(reads, lambda rows: ("associate-1", "associate", "GET /v1/sessions/{station}") in rows,
                   what="the associate's read in the access log")
        own.delete("/v1/sessions/kiosk-1")
    assert not [r for r in got if r[1] == "kiosk" and r[2].startswith("GET /v1/sessions")], got
