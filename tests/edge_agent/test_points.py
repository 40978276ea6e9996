"""Member points at checkout through a real agent linked to a real broker: the hub's card is the balance, and
at a kiosk only the member of its current session (a scanned card) may redeem them."""

from __future__ import annotations

import threading

import pytest

from drivers.scanner.emulator import SerialScannerEmulator
from support.flows import LIPSTICK, TOTE, card, feed, hub_event, linked_agent, poll, ret, sale, sync_point, uplink

LOYALTY = {"points_per_unit": 2, "point_value": 0.05}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("points")


@pytest.fixture(scope="module")
def kiosk_scanner(workdir):
    """The serial scanner at kiosk-1 (an emulator on a pty): a member QR scanned on it attaches the member."""
    scanner = SerialScannerEmulator(workdir / "dev" / "scanner-1").plug()
    yield scanner
    scanner.close()


@pytest.fixture(scope="module")
def store(workdir, kiosk_scanner):
    devices = [{"id": "scanner-1", "kind": "scanner.serial", "port": str(kiosk_scanner.path), "baudrate": 115200,
                "station": "kiosk-1", "dedupe_window": 0}]
    with linked_agent(workdir, devices, loyalty=LOYALTY) as (agent, hub):
        with agent.client("associate") as c:
            poll(lambda: c.get("/v1/devices").json(), lambda ds: all(d["state"] == "online" for d in ds),
                 what="the scanner online")
        yield agent, hub


def send_card(hub, name: str, **kw) -> None:
    hub.send("members", [hub_event("retail.member.card", card(**kw))])
    sync_point(hub, name)


def test_points_are_earned_on_money_paid_by_the_configured_rule(store):
    agent, hub = store
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=sale((LIPSTICK, 1), (TOTE, 1), member_id="M-EARN"))
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["total"] == "208.90" and s["points_earned"] == 417  # floor(208.90 * 2)
    assert "points_value" not in s and "subtotal" not in s  # only sales that redeem carry them


def test_redeemed_points_lower_the_amount_to_pay_and_go_to_the_hub(store):
    agent, hub = store
    send_card(hub, "redeem", member_id="M-RED", points=1000)
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-RED", points_redeemed=600))
        assert r.status_code == 201, r.text
        s = r.json()
        member = c.get("/v1/members/M-RED").json()
    assert s["subtotal"] == "159.00" and s["points_value"] == "30.00" and s["total"] == "129.00"
    assert s["points_redeemed"] == 600 and s["points_earned"] == 258  # on the 129.00 paid, not on the points
    assert member["points"] == 400
    event = uplink(hub, "retail.sale.completed", lambda d: d["sale_id"] == s["id"])["data"]
    assert {k: event[k] for k in ("total", "subtotal", "points_value", "points_redeemed", "points_earned")} == \
        {"total": "129.00", "subtotal": "159.00", "points_value": "30.00", "points_redeemed": 600,
         "points_earned": 258}


def test_points_beyond_the_balance_are_refused_with_the_balance(store):
    agent, hub = store
    send_card(hub, "beyond", member_id="M-LOW", points=100)
    with agent.client("associate") as c:
        over = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-LOW", points_redeemed=101))
        nocard = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-NONE", points_redeemed=1))
        nomember = c.post("/v1/sales", json=sale((LIPSTICK, 1), points_redeemed=1))
        worth_more = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-LOW", points_redeemed=100,
                                                  payment={"method": "points"}))
    assert over.status_code == 422 and "balance of 100 points" in over.json()["detail"]
    assert nocard.status_code == 422 and "no card in this store" in nocard.json()["detail"]
    assert nomember.status_code == 422 and "needs member_id" in nomember.json()["detail"]
    # 100 points are worth 5.00: the tote (49.90) is not covered, so 'points' cannot be the payment.
    assert worth_more.status_code == 422 and "44.90 CNY is left to pay" in worth_more.json()["detail"]


def test_points_worth_more_than_the_total_are_refused(store):
    agent, hub = store
    send_card(hub, "worth", member_id="M-RICH", points=5000)
    with agent.client("associate") as c:
        r = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-RICH", points_redeemed=1000))
        full = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-RICH", points_redeemed=998,
                                              payment={"method": "points"}))
    assert r.status_code == 422 and "redeem at most 998 points" in r.json()["detail"]
    assert full.status_code == 201 and full.json()["total"] == "0.00" and full.json()["points_earned"] == 0


def test_two_kiosks_cannot_spend_the_same_points(store):
    """Sixteen concurrent redemptions of 100 points from a 1,000-point card: exactly ten pass."""
    agent, hub = store
    send_card(hub, "race", member_id="M-RACE", points=1000)
    results: list[int] = []

    def spend():
        with agent.client("associate") as c:
            results.append(c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-RACE",
                                                         points_redeemed=100)).status_code)

    threads = [threading.Thread(target=spend) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [201] * 10 + [422] * 6
    with agent.client("associate") as c:
        assert c.get("/v1/members/M-RACE").json()["points"] == 0


def test_a_new_card_from_the_hub_replaces_what_the_store_counted(store):
    agent, hub = store
    send_card(hub, "first", member_id="M-NEW", points=300)
    with agent.client("associate") as c:
        assert c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-NEW",
                                             points_redeemed=300)).status_code == 201
        assert c.get("/v1/members/M-NEW").json()["points"] == 0
        send_card(hub, "second", member_id="M-NEW", points=50)  # the hub has counted the redemption
        assert c.get("/v1/members/M-NEW").json()["points"] == 50


def test_returning_a_sale_made_after_the_card_gives_every_redeemed_point_back_and_takes_none_from_the_card(store):
    """Her card holds 2,000 points; she redeems 1,000 on a sale, which also earns points the card does not hold yet,
    then returns all of it in two steps: the 1,000 come back, and the points that sale earned leave only the
    count of what she earned here, never her card: 2,000 redeemable again, as if she had bought nothing."""
    agent, hub = store
    send_card(hub, "after", member_id="M-BACK", points=2000)
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((LIPSTICK, 2), member_id="M-BACK", points_redeemed=1000)).json()
        assert s["points_earned"] > 0 and c.get("/v1/members/M-BACK").json()["points"] == 1000
        first = c.post("/v1/returns", json=ret((LIPSTICK, 1), sale=s["id"]))
        second = c.post("/v1/returns", json=ret((LIPSTICK, 1), sale=s["id"]))
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        assert first.json()["points_reversed"] + second.json()["points_reversed"] == s["points_earned"]
        assert first.json()["points_restored"] + second.json()["points_restored"] == 1000
        assert c.get("/v1/members/M-BACK").json()["points"] == 2000
        again = c.post("/v1/sales", json=sale((LIPSTICK, 2), member_id="M-BACK", points_redeemed=2000))
        assert again.status_code == 201, again.text
        assert c.get("/v1/members/M-BACK").json()["points"] == 0


def test_returning_a_sale_the_card_already_credits_takes_its_points_from_the_card(store):
    """A sale made before the card arrived: the hub's card holds what it earned, so its return takes them from it."""
    agent, hub = store
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((TOTE, 1), member_id="M-CRED")).json()
        earned = s["points_earned"]
        send_card(hub, "credited", member_id="M-CRED", points=500 + earned)  # the hub took the sale in
        r = c.post("/v1/returns", json=ret((TOTE, 1), sale=s["id"]))
        assert r.status_code == 201 and r.json()["points_reversed"] == earned, r.text
        assert c.get("/v1/members/M-CRED").json()["points"] == 500


def test_a_kiosk_redeems_only_for_the_member_scanned_at_it(store):
    agent, hub = store
    send_card(hub, "kiosk", member_id="M-KIOSK", points=500)
    with agent.client("kiosk") as c:
        r = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-KIOSK", points_redeemed=10))
        earn = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-KIOSK"))
        peek = c.get("/v1/members/M-KIOSK")
    assert r.status_code == 422 and "not attached to this kiosk's session" in r.json()["detail"]
    assert earn.status_code == 201  # earning needs no scan: the receipt names the member
    assert peek.status_code == 403


def test_after_her_checkout_nobody_at_the_kiosk_can_use_her_member_or_points(store, kiosk_scanner):
    agent, hub = store
    send_card(hub, "leak", member_id="M-LEAK", points=5000)
    with feed(agent, "kiosk") as kiosk, agent.client("kiosk") as c:
        kiosk_scanner.scan("RM1:M-LEAK")
        kiosk.expect("member.attached", lambda d: d["member_id"] == "M-LEAK")
        assert c.get("/v1/members/M-LEAK").json()["points"] == 5000
        session_id = c.get("/v1/sessions/kiosk-1").json()["session_id"]
        hers = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-LEAK", points_redeemed=1000))
        assert hers.status_code == 201, hers.text
        ended = kiosk.expect("session.ended")
        # The next customer at the same kiosk, naming her: no points, no card, no order for her.
        next_one = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-LEAK", points_redeemed=1000))
        peek = c.get("/v1/members/M-LEAK")
        session = c.get("/v1/sessions/kiosk-1").json()
    assert ended["session_id"] == session_id and ended["reason"] == "sale"
    assert next_one.status_code == 422 and "not attached to this kiosk's session" in next_one.json()["detail"]
    assert peek.status_code == 403
    assert session["member_id"] is None and session["session_id"] != session_id
    with agent.client("associate") as pad:
        assert pad.get("/v1/members/M-LEAK").json()["points"] == 4000  # one redemption, hers


def test_after_new_customer_the_member_before_is_nobodys_at_the_kiosk(store, kiosk_scanner):
    agent, hub = store
    send_card(hub, "walked-away", member_id="M-AWAY", points=800)
    with feed(agent, "kiosk") as kiosk, agent.client("kiosk") as c:
        kiosk_scanner.scan("RM1:M-AWAY")
        kiosk.expect("member.attached", lambda d: d["member_id"] == "M-AWAY")
        assert c.delete("/v1/sessions/kiosk-1").json()["ended"]["reason"] == "new_customer"
        r = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-AWAY", points_redeemed=100))
        assert r.status_code == 422 and "not attached" in r.json()["detail"]
        assert c.get("/v1/members/M-AWAY").status_code == 403
