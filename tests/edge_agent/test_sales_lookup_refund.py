"""What a returned unit gives back, as ``GET /v1/sales/{sale}`` says it and as ``POST /v1/returns`` does it, and
the member's balance as the card, the feed and the receipt say it.

A real agent linked to a real broker (the hub's member cards), a receipt
printer emulator at kiosk-1 and a member QR scanned on an emulated scanner:
a sale partly paid with points, looked up before each return, refunds what
the lookup said, to the cent and to the point; the card after a sale that
earned points shows the receipt's balance, with the earned part pending.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from support.flows import LIPSTICK, NUDE, card, feed, hub_event, linked_agent, poll, ret, sale, sync_point
from support.printer import printer_device

from drivers.scanner.emulator import SerialScannerEmulator


@pytest.fixture(scope="module")
def store(tmp_path_factory, printer):
    work = tmp_path_factory.mktemp("lookup-refund")
    door = SerialScannerEmulator(work / "dev" / "door-scanner").plug()
    devices = [printer_device(printer.port, id="printer-1", station="kiosk-1"),
               {"id": "scanner-door", "kind": "scanner.serial", "port": str(door.path), "baudrate": 115200}]
    with linked_agent(work, devices) as (agent, hub):
        with agent.client("associate") as c:
            poll(lambda: c.get("/v1/devices").json(), lambda ds: all(d["state"] == "online" for d in ds),
                 what="devices online")
        yield agent, hub, door
    door.close()


def _give_card(hub, member_id: str, points: int) -> None:
    hub.send("members", [hub_event("retail.member.card", card(member_id, points=points))])
    sync_point(hub, f"card-{member_id}")


def test_the_lookup_says_what_one_unit_refunds_as_the_return_then_refunds_it(store):
    """Her card pays 500 points (5.00) of a lipstick and three nudes: each unit, looked up first, then returned,
    refunds the lookup's money, restores its redeemed points and takes back its earned ones; at the end nothing
    is left to refund and the refunds add up to what she paid in money."""
    agent, hub, _ = store
    _give_card(hub, "M-REFUND", 1000)
    with agent.client("associate") as c:
        sold = c.post("/v1/sales", json=sale((LIPSTICK, 1), (NUDE, 3), member_id="M-REFUND", points_redeemed=500))
        assert sold.status_code == 201, sold.text
        s = sold.json()
        assert s["points_value"] == "5.00" and s["total"] == str(Decimal(s["subtotal"]) - Decimal("5.00"))
        refunded, restored, reversed_ = Decimal(0), 0, 0
        for code, sku in ((LIPSTICK, "LIP-RED-01"), (NUDE, "LIP-NUDE-02"), (NUDE, "LIP-NUDE-02"),
                          (NUDE, "LIP-NUDE-02")):
            view = c.get(f"/v1/sales/{s['id']}").json()
            line = next(ln for ln in view["lines"] if ln["sku"] == sku)
            assert line["returnable"] > 0
            assert Decimal(line["refund_unit"]) < Decimal(line["unit_price"])  # points paid part of it
            done = c.post("/v1/returns", json=ret((code, 1), sale=s["id"]))
            assert done.status_code == 201, done.text
            got = done.json()
            assert got["total"] == line["refund_unit"], (line, got)
            assert got["points_restored"] == line["points_restored_unit"]
            assert got["points_reversed"] == line["points_reversed_unit"]
            refunded += Decimal(got["total"])
            restored += got["points_restored"]
            reversed_ += got["points_reversed"]
        after = c.get(f"/v1/sales/{s['id']}").json()
    assert all(ln["returnable"] == 0 and ln["refund_unit"] is None and ln["points_restored_unit"] is None
               for ln in after["lines"])
    assert refunded == Decimal(s["total"]) and restored == 500 and reversed_ == s["points_earned"]


def test_the_first_lookup_of_the_newcomers_sale_says_the_refund_the_return_gives(store):
    """A lipstick (159.00) partly paid with 500 points: the refund is 154.00, not the shelf price."""
    agent, hub, _ = store
    _give_card(hub, "M-LIP", 800)
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-LIP", points_redeemed=500)).json()
        view = c.get(f"/v1/sales/{s['id']}").json()
        (line,) = view["lines"]
        assert (line["refund_unit"], line["points_restored_unit"]) == ("154.00", 500)
        assert view["refund_basis"] == {"paid": "154.00", "lines_value": "159.00", "returned_value": "0.00",
                                        "points_redeemed": 500, "points_earned": s["points_earned"]}
        got = c.post("/v1/returns", json=ret((LIPSTICK, 1), sale=s["id"])).json()
    assert (got["total"], got["points_restored"], got["points_reversed"]) == \
        ("154.00", 500, line["points_reversed_unit"])


def test_the_card_shows_the_receipts_balance_with_what_the_hub_has_not_confirmed_marked(store, printer):
    """Her card says 1000; a sale at kiosk-1 earns points: the receipt prints the balance with them, and
    GET /v1/members and the feed's member.arrived say that balance, the earned part pending, and the points she
    may redeem here (the card's, until the hub's next card holds the rest)."""
    agent, hub, door = store
    _give_card(hub, "M-CARD", 1000)
    with agent.client("kiosk") as c:
        s = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-CARD")).json()
    earned = s["points_earned"]
    assert earned > 0
    printer.wait_for(lambda emu: any(s["id"] in d.text for d in emu.receipts()))
    receipt = next(d for d in printer.receipts() if s["id"] in d.text)
    (balance_line,) = [ln for ln in receipt.lines if ln.startswith("Points balance")]
    printed = int(balance_line.split()[-1])
    assert printed == 1000 + earned
    with agent.client("associate") as c:
        got = c.get("/v1/members/M-CARD").json()
        (listed,) = [m for m in c.get("/v1/members").json() if m["member_id"] == "M-CARD"]
    assert (got["points_balance"], got["points_pending"], got["points"]) == (printed, earned, 1000)
    assert listed == got
    with feed(agent, "associate") as pad:
        door.scan("RM1:M-CARD")
        arrived = pad.expect("member.arrived", lambda d: d["member_id"] == "M-CARD")
    assert (arrived["points_balance"], arrived["points_pending"], arrived["points"]) == (printed, earned, 1000)


def test_a_return_slips_barcode_looked_up_as_a_sale_says_it_is_a_return_slip(store):
    """The slip's CODE128 carries the return's id as 40 digits, as a receipt's carries the sale's."""
    import uuid

    agent, _, _ = store
    with agent.client("associate") as c:
        s = c.post("/v1/sales", json=sale((NUDE, 2))).json()
        done = c.post("/v1/returns", json=ret((NUDE, 1), sale=s["id"])).json()
        slip = f"{uuid.UUID(done['id']).int:040d}"
        got = c.get(f"/v1/sales/{slip}")
        nothing = c.get(f"/v1/sales/{uuid.uuid4().int:040d}")
    assert got.status_code == 404
    assert got.json()["detail"] == (f"this is a return slip (a return of sale {s['id']}), not a sale: scan the "
                                    "barcode on the sale's receipt")
    assert nothing.status_code == 404 and nothing.json()["detail"].startswith("no sale ")
