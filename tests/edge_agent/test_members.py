"""Member arrival and cards through a real agent: the hub's cards, member QRs on real (emulated) scanners,
the live feed by role, and cards expiring from the store."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from support.flows import LIPSTICK, card, feed, hub_event, linked_agent, poll, sale, sync_point, uplink

from drivers.scanner.emulator import SerialScannerEmulator
from edge_agent import members
from edge_agent.store import Store
from edge_core.bus import utcnow
from sync.topics import MemberCard


def scanner(id_: str, path, station: str | None) -> dict:
    device = {"id": id_, "kind": "scanner.serial", "port": str(path), "baudrate": 115200}
    return {**device, "station": station} if station else device


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    work = tmp_path_factory.mktemp("members")
    kiosk_scanner = SerialScannerEmulator(work / "dev" / "kiosk-scanner").plug()
    door_scanner = SerialScannerEmulator(work / "dev" / "door-scanner").plug()
    devices = [scanner("scanner-kiosk", kiosk_scanner.path, "kiosk-1"),
               scanner("scanner-door", door_scanner.path, None)]
    with linked_agent(work, devices) as (agent, hub):
        with agent.client("associate") as c:
            poll(lambda: c.get("/v1/devices").json(), lambda ds: all(d["state"] == "online" for d in ds),
                 what="scanners online")
        yield agent, hub, kiosk_scanner, door_scanner
    kiosk_scanner.close()
    door_scanner.close()


def test_the_hubs_arrival_reaches_associates_with_interests_and_store_stock(store):
    agent, hub, _, _ = store
    with feed(agent, "associate") as pad, feed(agent, "console") as console, feed(agent, "kiosk") as kiosk:
        hub.send("members", [hub_event("retail.member.arrived", card("M-2001", points=800))])
        got = pad.expect("member.arrived", lambda d: d["member_id"] == "M-2001")
        sync_point(hub, "arrived")
        others = console.quiet() + kiosk.quiet()
    assert got["known"] is True and got["via"] == "hub" and got["tier"] == "gold"
    assert got["tags"] == ["lipstick-fan"] and got["points"] == 800
    assert [(i["sku"], i["stock_store"]) for i in got["interests"]] == [("LIP-NUDE-02", 12), ("GLS-ROUND-BLK", 5)]
    assert got["interests"][0]["name"].startswith("丝绒哑光口红") and got["interests"][0]["price"] == "189.00"
    assert not {"phone", "name", "full_name"} & set(got)
    assert [e for e in others if e["type"].startswith("member.")] == []  # no member card for consoles and kiosks


def test_a_card_with_personal_data_is_refused_whole(store):
    agent, hub, _, _ = store
    hub.send("members", [hub_event("retail.member.card", card("M-2002", phone="+86 138 0000 0000"))])
    alert = uplink(hub, "retail.device.alert", lambda d: d.get("topic_kind") == "members")
    assert "phone" in alert["data"]["message"]
    with agent.client("associate") as c:
        assert c.get("/v1/members/M-2002").json()["known"] is False


def test_a_member_qr_at_a_kiosk_attaches_the_member_and_lets_the_kiosk_redeem(store):
    agent, hub, kiosk_scanner, _ = store
    hub.send("members", [hub_event("retail.member.card", card("M-2003", points=500))])
    sync_point(hub, "card")
    with feed(agent, "associate") as pad, feed(agent, "kiosk") as kiosk:
        kiosk_scanner.scan("RM1:M-2003")
        attached = kiosk.expect("member.attached")
        arrived = pad.expect("member.arrived", lambda d: d["member_id"] == "M-2003")
        assert not [e for e in kiosk.quiet() if e["type"] == "member.arrived"]
    assert attached["member_id"] == "M-2003"
    assert arrived["via"] == "scan" and arrived["station"] == "kiosk-1" and arrived["device"] == "scanner-kiosk"
    assert arrived["points"] == 500
    with agent.client("kiosk") as c:
        mine = c.get("/v1/members/M-2003").json()
        r = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-2003", points_redeemed=500))
    assert mine == {"member_id": "M-2003", "known": True, "tier": "gold", "points": 500,
                    "expires_at": mine["expires_at"]}  # no tags, no interests on a kiosk's screen
    assert r.status_code == 201 and r.json()["total"] == "154.00"


def test_a_member_qr_at_the_entrance_tells_associates_even_without_a_card(store):
    agent, hub, _, door_scanner = store
    with feed(agent, "associate") as pad, feed(agent, "console") as console:
        door_scanner.scan("RM1:M-9999")
        got = pad.expect("member.arrived", lambda d: d["member_id"] == "M-9999")
        scan = console.expect("scan", lambda d: d["device"] == "scanner-door")
    assert got == {"member_id": "M-9999", "known": False, "tier": None, "tags": [], "points": None,
                   "interests": [], "expires_at": None, "via": "scan", "device": "scanner-door"}
    assert scan["fields"] == {"member_id": "****"} and scan["code"] == "****" and scan["raw"] is None  # M-9999: short


def test_cards_expire_from_the_store_and_the_feed_forgets_them(store):
    agent, hub, _, _ = store
    soon = (datetime.now(timezone.utc) + timedelta(seconds=1.5)).isoformat()
    with feed(agent, "associate") as pad:
        hub.send("members", [hub_event("retail.member.arrived", card("M-2004", points=50, expires_at=soon))])
        pad.expect("member.arrived", lambda d: d["member_id"] == "M-2004")
        assert pad.expect("member.expired", timeout=10) == {"member_id": "M-2004"}
    with agent.client("associate") as c:
        assert "M-2004" not in [m["member_id"] for m in c.get("/v1/members").json()]
        r = c.post("/v1/sales", json=sale((LIPSTICK, 1), member_id="M-2004", points_redeemed=10))
    assert r.status_code == 422 and "no card" in r.json()["detail"]
    with feed(agent, "associate", f"?since=0&epoch={pad.hello['epoch']}") as again:
        replayed = again.quiet(0.5)
    assert not [e for e in replayed if e["type"] == "member.arrived" and e["data"]["member_id"] == "M-2004"]
    assert [e for e in replayed if e["type"] == "member.arrived" and e["data"]["member_id"] == "M-2001"]


def test_a_card_lives_card_ttl_or_until_its_own_expiry_whichever_is_sooner(tmp_path):
    async def main():
        store = Store(tmp_path / "store.db")
        await store.start()
        now = utcnow()
        cards = [MemberCard(member_id="M-A", tier="t", points=1),
                 MemberCard(member_id="M-B", tier="t", points=1, expires_at=now + timedelta(hours=9)),
                 MemberCard(member_id="M-C", tier="t", points=1,
                            expires_at=now.replace(tzinfo=None) + timedelta(minutes=30))]  # no zone: UTC
        await store.write(lambda tx: members.store_cards(tx, cards, 3600, now))
        rows = dict(await store.read(lambda c: c.execute("SELECT member_id, expires_at FROM members").fetchall()))
        gone = await store.write(lambda tx: members._purge(tx, now + timedelta(minutes=61), 3600))
        await store.stop()
        return now, rows, gone

    now, rows, gone = asyncio.run(main())
    assert datetime.fromisoformat(rows["M-A"]) == now + timedelta(hours=1)
    assert datetime.fromisoformat(rows["M-B"]) == now + timedelta(hours=1)
    assert rows["M-C"] < rows["M-A"] and rows["M-C"].endswith("+00:00")
    assert sorted(gone) == ["M-A", "M-B", "M-C"]
