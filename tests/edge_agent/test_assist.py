"""A kiosk calls for help; the associates' wristbands and feeds hear it; one takes it (edge_agent/assist.py,
edge_agent/wristband.py, /v1/assist, WS /v1/wristband).

First the desk and the bands alone on a real bus with an injected clock
(reminders, the unanswered alert, forgetting, zones), then a real agent
process with real WebSocket clients: a kiosk's call reaches the bands in
under a second, a band's ack takes it and the kiosk's feed names who comes,
the other bands are cleared, a second taker gets 409, the short timers of
the agent's config remind and alert, a kiosk sees only its own calls, and
every limit holds. Each wait is on the event awaited, with a generous bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from support.agent import AgentProcess, config_dict, free_port

from edge_agent.assist import FORGET_AFTER_S, Desk, HelpReason, State
from edge_agent.bus import EventBus
from edge_agent.config import Role
from edge_agent.errors import Conflict, Forbidden, NotFound
from edge_agent.wristband import LINE_MAX, TITLE_MAX, Bands

# What a call must take from the kiosk's POST to a band (the feature's promise), and a generous bound for
# anything else awaited on a shared machine.
DELIVERY_S = 1.0
WAIT_S = 20.0
TOKENS = {"kiosk-1": "t-kiosk-1", "kiosk-2": "t-kiosk-2", "pad-anna": "t-anna", "pad-ben": "t-ben",
          "console-1": "t-console", "admin-1": "t-admin"}
ROLES = {"kiosk-1": "kiosk", "kiosk-2": "kiosk", "pad-anna": "associate", "pad-ben": "associate",
         "console-1": "console", "admin-1": "admin"}
REMIND_S = 0.3
ALERT_AFTER_S = 0.9


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _drain(sub) -> list[tuple[str, dict]]:
    out = []
    while not sub.queue.empty():
        e = sub.queue.get_nowait()
        out.append((e.type, e.data))
    return out


# The desk alone -------------------------------------------------------------------------------

def test_one_live_call_per_kiosk_taken_once_closed_by_the_taker_or_the_kiosk():
    bus, clock = EventBus(), Clock()
    seen = bus.subscribe("assist.", "alert.")
    desk = Desk(bus, remind_s=30, alert_after_s=120, clock=clock)
    call, new = desk.ask("kiosk-1", HelpReason.AGE_CHECK, "wine")
    again, second = desk.ask("kiosk-1", HelpReason.OTHER, None)
    assert new and not second and again == call and call.state == State.OPEN
    assert desk.view(call)["on_duty"] == 0  # nobody connected: the kiosk sends the customer to the counter
    desk.join("pad-anna")
    desk.join("pad-anna")  # a PAD and a band of one associate
    desk.join("pad-ben")
    assert desk.on_duty == 2

    taken = desk.take(call.id, "pad-anna")
    assert taken.state == State.TAKEN and taken.taken_by == "pad-anna"
    assert desk.take(call.id, "pad-anna") == taken  # the same associate again: nothing changes
    with pytest.raises(Conflict, match="taken already by pad-anna"):
        desk.take(call.id, "pad-ben")
    with pytest.raises(Forbidden, match="only pad-anna"):
        desk.done(call.id, "pad-ben", Role.ASSOCIATE)
    with pytest.raises(NotFound):
        desk.get(call.id, "kiosk-2", Role.KIOSK)  # another kiosk's call does not exist for it
    assert desk.ask("kiosk-1", HelpReason.OTHER, None)[1] is False  # taken is still live
    done = desk.done(call.id, "pad-anna", Role.ASSOCIATE)
    assert done.state == State.DONE and done.closed_by == "pad-anna"
    assert desk.done(call.id, "kiosk-1", Role.KIOSK).state == State.DONE  # done again: nothing changes
    with pytest.raises(Conflict):
        desk.cancel(call.id, "kiosk-1")

    second_call, new = desk.ask("kiosk-1", HelpReason.ITEM_WONT_SCAN, None)
    assert new and second_call.id != call.id
    with pytest.raises(Conflict, match="take it first"):
        desk.done(second_call.id, "pad-ben", Role.ASSOCIATE)
    with pytest.raises(Conflict, match="nobody has taken this help request yet: cancel it instead"):
        desk.done(second_call.id, "kiosk-1", Role.KIOSK)  # an open call is not done: the kiosk cancels it
    assert desk.cancel(second_call.id, "kiosk-1").state == State.CANCELLED
    with pytest.raises(Conflict):
        desk.take(second_call.id, "pad-ben")
    desk.leave("pad-anna")
    assert desk.on_duty == 2
    desk.leave("pad-anna")
    desk.leave("pad-ben")
    assert desk.on_duty == 0
    types = [t for t, _ in _drain(seen)]
    assert types == ["assist.requested", "assist.taken", "assist.closed", "assist.requested", "assist.closed"]


def test_reminders_until_taken_then_the_alert_which_the_take_clears():
    bus, clock = EventBus(), Clock()
    seen = bus.subscribe("assist.", "alert.")
    desk = Desk(bus, remind_s=30, alert_after_s=120, clock=clock)
    call, _ = desk.ask("kiosk-1", HelpReason.PAYMENT_PROBLEM, None)
    _drain(seen)
    clock.now += 29.9
    desk.tick()
    assert _drain(seen) == []
    clock.now += 0.1
    desk.tick()
    [(kind, data)] = _drain(seen)
    assert kind == "assist.reminder" and data["reminders"] == 1 and data["assist_id"] == call.id
    clock.now += 90  # 120 s asked: the third reminder and the alert
    desk.tick()
    events = _drain(seen)
    assert [t for t, _ in events] == ["assist.reminder", "alert.raised"]
    alert = events[1][1]
    assert alert["code"] == "assist_unanswered" and alert["subject"] == "kiosk-1" and alert["state"] == "raised"
    assert [r.id for r in desk.unanswered()] == [call.id]
    desk.tick()
    assert _drain(seen) == []  # raised once
    desk.take(call.id, "pad-ben")
    assert [t for t, _ in _drain(seen)] == ["alert.cleared", "assist.taken"]
    assert desk.unanswered() == []
    clock.now += 3600
    desk.tick()
    assert _drain(seen) == []  # no reminder of a taken call


def test_calls_taken_or_closed_an_hour_ago_are_forgotten():
    bus, clock = EventBus(), Clock()
    desk = Desk(bus, clock=clock)
    taken, _ = desk.ask("kiosk-1", HelpReason.OTHER, None)
    desk.take(taken.id, "pad-anna")
    closed, _ = desk.ask("kiosk-2", HelpReason.OTHER, None)
    desk.cancel(closed.id, "kiosk-2")
    clock.now += FORGET_AFTER_S - 1
    desk.tick()
    assert desk.get(taken.id, "pad-anna", Role.ASSOCIATE) and desk.get(closed.id, "kiosk-2", Role.KIOSK)
    clock.now += 1
    desk.tick()
    for call in (taken, closed):
        with pytest.raises(NotFound):
            desk.get(call.id, "admin", Role.ADMIN)
    assert desk.ask("kiosk-1", HelpReason.OTHER, None)[1]  # the kiosk may ask again


def test_bands_hear_each_kind_with_its_own_vibration_labels_by_zone_members_masked():
    async def main():
        bus, clock = EventBus(), Clock()
        desk = Desk(bus, clock=clock)
        bands = Bands(bus, desk)
        await bands.start()
        cosmetics, hello = bands.connect("pad-anna", ["cosmetics"])
        everywhere, _ = bands.connect("pad-ben", [])
        assert hello == {"type": "hello", "name": "pad-anna", "zones": ["cosmetics"]}
        bus.publish("member.arrived", {"member_id": "M-0042", "tier": "gold", "tags": ["vip", "skincare"]})
        bus.publish("member.arrived", {"member_id": "M-0043", "tier": "silver", "tags": []})  # no tags: no notice
        bus.publish("order.created", {"order_id": "WEB-1", "lines": [{"sku": "A", "qty": 2}], "member_id": "M-1"})
        wrong = {"device": "labels-ap", "code": "label_price_mismatch", "subject": "MAC-1", "sku": "LIP-RED-01",
                 "shown_price": "189.00", "checkout_price": "159.00", "state": "raised"}
        bus.publish("alert.raised", {**wrong, "zone": "shoes"})
        bus.publish("alert.raised", {**wrong, "subject": "MAC-2", "zone": "cosmetics"})
        bus.publish("alert.raised", {**wrong, "subject": "MAC-3"})  # no zone: every band
        bus.publish("alert.raised", {"device": "printer-1", "code": "paper_out", "state": "raised"})  # not for bands
        call, _ = desk.ask("kiosk-1", HelpReason.AGE_CHECK, "x" * 80)
        bus.publish("alert.cleared", {**wrong, "subject": "MAC-2", "zone": "cosmetics", "state": "cleared"})
        async with asyncio.timeout(5):
            while everywhere.queue.qsize() < 7:
                await asyncio.sleep(0)  # the bands' task copies the events
        await bands.stop()
        return [_q(cosmetics), _q(everywhere), call]

    def _q(band):
        out = []
        while not band.queue.empty():
            out.append(band.queue.get_nowait())
        return out

    anna, ben, call = asyncio.run(main())
    kinds = [(m["type"], m.get("kind"), m.get("ref", {}).get("mac")) for m in ben]
    assert kinds == [("notify", "member", None), ("notify", "order", None), ("notify", "label", "MAC-1"),
                     ("notify", "label", "MAC-2"), ("notify", "label", "MAC-3"), ("notify", "assist", None),
                     ("clear", None, None)]
    assert [(m["type"], m.get("ref", {}).get("mac")) for m in anna if m.get("kind") == "label" or
            m["type"] == "clear"] == [("notify", "MAC-2"), ("notify", "MAC-3"), ("clear", None)]
    member = ben[0]
    assert member["ref"]["member"] == "****"  # M-0042 is short: no part of it is shown
    assert not any(part in json.dumps(ben) for part in ("M-0042", "0042", "042", "-00"))
    assert "M-1" not in json.dumps(ben[1])  # an order's member stays off the wrist
    vibes = {m["kind"]: m["vibrate"] for m in ben if m["type"] == "notify"}
    assert len({tuple(v) for v in vibes.values()}) == 4
    assert sum(vibes["assist"]) == max(sum(v) for v in vibes.values())  # help is the strongest
    for m in ben:
        if m["type"] == "notify":
            assert len(m["title"]) <= TITLE_MAX and len(m["line"]) <= LINE_MAX and m["ack"] is True
    assert ben[5]["ref"] == {"assist_id": call.id, "station": "kiosk-1"}


# A real agent ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent with two kiosks, two associates, a console and an admin, and short assist timers."""
    config = config_dict(free_port())
    config["api"]["clients"] = [{"name": n, "role": ROLES[n], "token_sha256": hashlib.sha256(t.encode()).hexdigest()}
                                for n, t in TOKENS.items()]
    config["assist"] = {"remind_s": REMIND_S, "alert_after_s": ALERT_AFTER_S}
    proc = AgentProcess(tmp_path_factory.mktemp("assist"), config)
    proc.start()
    yield proc
    proc.close()


def _http(agent: AgentProcess, name: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKENS[name]}"} if name else {}
    return httpx.Client(base_url=agent.url, headers=headers, timeout=WAIT_S)


def _ws(agent: AgentProcess, path: str, name: str | None = None, **kwargs: Any) -> ClientConnection:
    headers = {"Authorization": f"Bearer {TOKENS[name]}"} if name else None
    return connect(f"{agent.ws_url}{path}", additional_headers=headers, open_timeout=WAIT_S, **kwargs)


def _until(ws: ClientConnection, wanted: Callable[[dict], bool], within: float = WAIT_S) -> dict:
    """The first message ``wanted`` accepts, reading (and skipping) the others; fails after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no such message within {within} s")
        try:
            msg = json.loads(ws.recv(timeout=left))
        except TimeoutError as err:
            raise AssertionError(f"no such message within {within} s") from err
        if wanted(msg):
            return msg


def _notice(assist_id: str) -> Callable[[dict], bool]:
    return lambda m: m.get("type") == "notify" and m.get("ref", {}).get("assist_id") == assist_id


def _event(kind: str, assist_id: str) -> Callable[[dict], bool]:
    return lambda m: m.get("type") == kind and m.get("data", {}).get("assist_id") == assist_id


def _closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes; its close code and reason."""
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=WAIT_S)
    except ConnectionClosed as err:
        return (err.rcvd.code, err.rcvd.reason) if err.rcvd else (None, None)
    raise AssertionError("the server did not close the connection")


def test_on_duty_is_0_when_nobody_is_connected(agent):
    with _http(agent, "kiosk-2") as kiosk:
        r = kiosk.post("/v1/assist", json={"reason": "other"})
        assert r.status_code == 201, r.text
        call = r.json()
        assert call["on_duty"] == 0 and call["state"] == "open" and call["station"] == "kiosk-2"
        assert kiosk.delete(f"/v1/assist/{call['assist_id']}").json()["state"] == "cancelled"
        assert kiosk.delete(f"/v1/assist/{call['assist_id']}").status_code == 200  # twice: harmless


def test_a_call_reaches_the_bands_within_a_second_and_the_first_ack_takes_it(agent):
    with (_ws(agent, "/v1/wristband", "pad-anna") as anna, _ws(agent, "/v1/wristband", "pad-ben") as ben,
          _ws(agent, "/v1/events", "kiosk-1") as kiosk_feed, _http(agent, "kiosk-1") as kiosk,
          _http(agent, "pad-ben") as ben_http, _http(agent, "pad-anna") as anna_http):
        assert _until(anna, lambda m: m["type"] == "hello") == {"type": "hello", "name": "pad-anna", "zones": []}
        _until(ben, lambda m: m["type"] == "hello")
        _until(kiosk_feed, lambda m: m["type"] == "hello")
        asked = time.monotonic()
        r = kiosk.post("/v1/assist", json={"reason": "age_check", "note": "wine, 2 bottles"})
        assert r.status_code == 201, r.text
        call = r.json()
        notice = _until(anna, _notice(call["assist_id"]))
        took = time.monotonic() - asked
        assert took < DELIVERY_S, f"the call took {took:.3f} s to reach the band"
        assert call["on_duty"] == 2  # two bands; the kiosk's own feed is no associate
        assert notice["kind"] == "assist" and notice["title"] == "Help at kiosk-1"
        assert notice["line"] == "Age check: wine, 2 bottles" and notice["ack"] is True
        ben_notice = _until(ben, _notice(call["assist_id"]))
        assert ben_notice["id"] == notice["id"]
        assert _until(kiosk_feed, _event("assist.requested", call["assist_id"]))["data"]["state"] == "open"

        anna.send(json.dumps({"ack": notice["id"]}))
        taken = _until(kiosk_feed, _event("assist.taken", call["assist_id"]))["data"]
        assert taken["taken_by"] == "pad-anna" and taken["state"] == "taken"
        clear = _until(ben, lambda m: m["type"] == "clear" and m["id"] == notice["id"])
        assert clear["line"] == "Taken by pad-anna"

        late = ben_http.post(f"/v1/assist/{call['assist_id']}/take")
        assert late.status_code == 409 and "pad-anna" in late.json()["detail"]
        again = anna_http.post(f"/v1/assist/{call['assist_id']}/take")
        assert again.status_code == 200 and again.json()["taken_by"] == "pad-anna"
        listed = [c["assist_id"] for c in anna_http.get("/v1/assist").json()]
        assert call["assist_id"] in listed
        assert ben_http.post(f"/v1/assist/{call['assist_id']}/done").status_code == 403
        done = anna_http.post(f"/v1/assist/{call['assist_id']}/done")
        assert done.status_code == 200 and done.json()["state"] == "done"
        closed = _until(kiosk_feed, _event("assist.closed", call["assist_id"]))["data"]
        assert closed["state"] == "done" and closed["closed_by"] == "pad-anna"
        assert kiosk.get(f"/v1/assist/{call['assist_id']}").json()["state"] == "done"
        assert call["assist_id"] not in [c["assist_id"] for c in anna_http.get("/v1/assist").json()]


def test_reminders_then_the_unanswered_alert_until_taken(agent):
    with (_ws(agent, "/v1/wristband", "pad-ben") as ben, _ws(agent, "/v1/events", "admin-1") as admin_feed,
          _http(agent, "kiosk-1") as kiosk, _http(agent, "pad-ben") as ben_http, _http(agent, None) as anon):
        _until(ben, lambda m: m["type"] == "hello")
        _until(admin_feed, lambda m: m["type"] == "hello")
        r = kiosk.post("/v1/assist", json={"reason": "item_wont_scan"})
        assert r.status_code == 201, r.text
        call = r.json()
        first = _until(ben, _notice(call["assist_id"]))
        assert not first["line"].startswith("Still waiting")
        reminder = _until(ben, _notice(call["assist_id"]))
        assert reminder["id"] == first["id"] and reminder["line"].startswith("Still waiting")
        raised = _until(admin_feed, lambda m: m["type"] == "alert.raised"
                        and m["data"].get("assist_id") == call["assist_id"])["data"]
        assert raised["code"] == "assist_unanswered" and raised["subject"] == "kiosk-1"
        health = anon.get("/v1/health").json()
        assert any(x["code"] == "assist_unanswered" and x["subject"] == "kiosk-1" for x in health["reasons"])
        assert health["status"] == "ok"  # the shop floor's, not the system's: no release or rollout goes back for it
        assert ben_http.post(f"/v1/assist/{call['assist_id']}/take").status_code == 200
        _until(admin_feed, lambda m: m["type"] == "alert.cleared" and m["data"].get("assist_id") == call["assist_id"])
        health = anon.get("/v1/health").json()
        assert not any(x["code"] == "assist_unanswered" for x in health["reasons"])
        assert kiosk.post(f"/v1/assist/{call['assist_id']}/done").json()["state"] == "done"


def test_a_kiosk_sees_only_its_own_calls(agent):
    with (_ws(agent, "/v1/events", "kiosk-2") as other_feed, _http(agent, "kiosk-1") as kiosk,
          _http(agent, "kiosk-2") as other):
        _until(other_feed, lambda m: m["type"] == "hello")
        mine = kiosk.post("/v1/assist", json={"reason": "payment_problem"}).json()
        assert other.get(f"/v1/assist/{mine['assist_id']}").status_code == 404
        assert other.delete(f"/v1/assist/{mine['assist_id']}").status_code == 404
        assert other.post(f"/v1/assist/{mine['assist_id']}/done").status_code == 404
        assert other.get("/v1/assist").status_code == 403  # the list is staff's
        own = other.post("/v1/assist", json={"reason": "other"}).json()
        # The feed is in order: kiosk-1's call, made first, would have come before kiosk-2's own.
        first = _until(other_feed, lambda m: m["type"].startswith("assist."))
        assert first["data"]["assist_id"] == own["assist_id"]
        for who, call in ((kiosk, mine), (other, own)):
            assert who.delete(f"/v1/assist/{call['assist_id']}").status_code == 200


def test_limits_and_roles(agent):
    with (_http(agent, "kiosk-1") as kiosk, _http(agent, "pad-anna") as pad, _http(agent, "console-1") as console):
        assert kiosk.post("/v1/assist", json={"reason": "other", "note": "x" * 81}).status_code == 422
        assert kiosk.post("/v1/assist", json={"reason": "other", "note": "a\x1b[2Jb"}).status_code == 422
        # Format characters and separators too: a bidi override, zero-width ones, a line or paragraph separator.
        for sly in ("pay\u202edne", "age\u200bcheck", "\ufeffwine", "two\u2028lines", "two\u2029paras", "a\x85b"):
            refused = kiosk.post("/v1/assist", json={"reason": "other", "note": sly})
            assert refused.status_code == 422, (sly, refused.text)
            assert "no control, format or line-separator characters (Cc, Cf, Zl, Zp)" in refused.text
        assert "U+202E (Cf) at 3" in kiosk.post("/v1/assist", json={"reason": "other", "note": "pay\u202e"}).text
        fine = kiosk.post("/v1/assist", json={"reason": "other", "note": "Älterer Herr · 红酒 2 瓶 🍷"})
        assert fine.status_code == 201 and fine.json()["note"] == "Älterer Herr · 红酒 2 瓶 🍷"
        assert kiosk.delete(f"/v1/assist/{fine.json()['assist_id']}").status_code == 200
        assert kiosk.post("/v1/assist", json={"reason": "lost"}).status_code == 422
        assert kiosk.post("/v1/assist", json={"reason": "other", "station": "kiosk-2"}).status_code == 422
        assert pad.post("/v1/assist", json={"reason": "other"}).status_code == 403
        assert console.get("/v1/assist").status_code == 403
        assert kiosk.post("/v1/assist/nope/take").status_code == 403
        assert pad.post("/v1/assist/nope/take").status_code == 404
        first = kiosk.post("/v1/assist", json={"reason": "other", "note": "x" * 80})
        second = kiosk.post("/v1/assist", json={"reason": "age_check"})
        assert first.status_code == 201 and second.status_code == 200
        assert second.json()["assist_id"] == first.json()["assist_id"] and second.json()["reason"] == "other"
        assert kiosk.delete(f"/v1/assist/{first.json()['assist_id']}").status_code == 200

    # The stream: its roles, no token in a URL, one-use tickets for it alone, message size and ack rate.
    with _ws(agent, "/v1/wristband", "console-1") as ws:
        assert _closed(ws)[0] == 4403
    with _ws(agent, f"/v1/wristband?token={TOKENS['pad-anna']}") as ws:
        assert _closed(ws)[0] == 4401
    with _http(agent, "pad-anna") as pad:
        events_ticket = pad.post("/v1/tickets", json={"for": "events"}).json()["ticket"]
        band_ticket = pad.post("/v1/tickets", json={"for": "wristband"}).json()["ticket"]
    with _ws(agent, f"/v1/wristband?ticket={events_ticket}") as ws:
        assert _closed(ws)[0] == 4401
    with _ws(agent, f"/v1/wristband?ticket={band_ticket}") as ws:
        assert _until(ws, lambda m: m["type"] == "hello")["name"] == "pad-anna"
    with _ws(agent, "/v1/wristband", subprotocols=["bearer", TOKENS["pad-ben"]]) as ws:
        assert _until(ws, lambda m: m["type"] == "hello")["name"] == "pad-ben"
        ws.send(json.dumps({"ack": "n-1", "pad": "x" * 300}))
        assert _closed(ws)[0] == 1009
    with _ws(agent, "/v1/wristband", "pad-ben") as ws:
        _until(ws, lambda m: m["type"] == "hello")
        try:
            for _ in range(40):
                ws.send(json.dumps({"ack": "n-1"}))
        except ConnectionClosed:
            pass  # closed while the flood was still being sent
        assert _closed(ws)[0] == 4429


def test_an_admins_band_is_told_but_is_not_on_duty_and_its_ack_takes_nothing(agent):
    with (_ws(agent, "/v1/wristband", "admin-1") as boss, _http(agent, "kiosk-1") as kiosk,
          _http(agent, "pad-anna") as anna_http):
        assert _until(boss, lambda m: m["type"] == "hello")["name"] == "admin-1"
        r = kiosk.post("/v1/assist", json={"reason": "other"})
        assert r.status_code == 201, r.text
        call = r.json()
        assert call["on_duty"] == 0  # an admin's band is nobody on duty: the kiosk sends the customer over
        notice = _until(boss, _notice(call["assist_id"]))
        boss.send(json.dumps({"ack": notice["id"]}))
        refused = _until(boss, lambda m: m["type"] == "error")
        assert refused["id"] == notice["id"] and "only an associate" in refused["detail"]
        assert kiosk.get(f"/v1/assist/{call['assist_id']}").json()["state"] == "open"
        # The kiosk may not mark a call nobody took as done: it cancels it.
        early = kiosk.post(f"/v1/assist/{call['assist_id']}/done")
        assert early.status_code == 409 and "cancel it instead" in early.json()["detail"]
        assert anna_http.post(f"/v1/assist/{call['assist_id']}/take").status_code == 200
        assert kiosk.post(f"/v1/assist/{call['assist_id']}/done").json()["state"] == "done"


def test_unpairing_a_band_closes_it_with_4401(agent):
    with _http(agent, "admin-1") as admin:
        made = admin.post("/v1/pairing", json={"name": "band-zed", "zones": ["cosmetics"]})
        assert made.status_code == 201, made.text
        paired = httpx.post(f"{agent.url}/v1/pair", json={"code": made.json()["code"]}, timeout=WAIT_S)
        assert paired.status_code == 201, paired.text
        token = paired.json()["token"]
        with (connect(f"{agent.ws_url}/v1/wristband", additional_headers={"Authorization": f"Bearer {token}"},
                      open_timeout=WAIT_S) as band,
              connect(f"{agent.ws_url}/v1/events", additional_headers={"Authorization": f"Bearer {token}"},
                      open_timeout=WAIT_S) as feed):
            assert _until(band, lambda m: m["type"] == "hello") == {"type": "hello", "name": "band-zed",
                                                                     "zones": ["cosmetics"]}
            _until(feed, lambda m: m["type"] == "hello")
            gone = admin.delete("/v1/paired/band-zed")
            assert gone.status_code == 200 and gone.json()["revoked_by"] == "admin-1"
            assert _closed(band)[0] == 4401
            assert _closed(feed)[0] == 4401


def test_a_slow_band_is_closed_without_slowing_the_store(tmp_path: Path):
    async def main():
        bus = EventBus()
        desk = Desk(bus)
        bands = Bands(bus, desk, queue=3)
        await bands.start()
        slow, _ = bands.connect("pad-anna", [])
        fast, _ = bands.connect("pad-ben", [])
        got = 0
        for i in range(10):
            bus.publish("order.created", {"order_id": f"WEB-{i}", "lines": []})
            async with asyncio.timeout(5):
                while fast.queue.empty():
                    await asyncio.sleep(0)
            fast.queue.get_nowait()
            got += 1
        await bands.stop()
        return slow, got

    slow, got = asyncio.run(main())
    assert slow.lagging.is_set() and slow.queue.qsize() == 3 and got == 10


def test_a_label_wrong_past_its_grace_buzzes_the_bands_of_its_zone_and_clears_when_fixed(tmp_path: Path):
    """The real label service, store and driver against an emulated access point: its price alerts (with
    the label's zone) reach the bands of that zone, and the bands without zones; the fix clears them."""
    from drivers.shelf_label.ap_emulator import ApEmulator, Fault
    from support.labelrig import LabelRig, item, oepl_device

    dairy_mac, tea_mac = "0000021D4E83B401", "0000021D4E83B402"
    ap = ApEmulator(auto_checkin=True)
    now = int(time.time())
    for mac in (dairy_mac, tea_mac):
        ap.add_tag(mac, 0x01, last_seen=now, next_checkin=now + 600)
    ap.start()

    def labels_of(band) -> list[tuple[str, str | None]]:
        out = []
        while not band.queue.empty():
            m = band.queue.get_nowait()
            out.append((m["type"], m.get("ref", {}).get("mac") if m["type"] == "notify" else m["line"]))
        return out

    async def scenario():
        labels = [{"mac": dairy_mac, "sku": "MILK", "zone": "dairy"}, {"mac": tea_mac, "sku": "TEA"}]
        async with LabelRig(tmp_path, [oepl_device(ap.url, labels)], [item("MILK", "12.80"), item("TEA", "5.00")]) as rig:
            bands = Bands(rig.bus, Desk(rig.bus))
            await bands.start()
            dairy, _ = bands.connect("pad-anna", ["dairy"])
            frozen, _ = bands.connect("pad-ben", ["frozen"])
            everywhere, _ = bands.connect("pad-cleo", [])
            await rig.until(lambda: all(rig.label(m).confirmed_at for m in (dairy_mac, tea_mac)), what="confirmed")
            ap.fault = Fault.ERROR_500  # the labels cannot take the new prices: wrong past the grace
            await rig.set_items(item("MILK", "9.90", version=2), item("TEA", "4.00", version=2))
            await rig.until(lambda: everywhere.queue.qsize() >= 2, what="two label notices")
            wrong = (labels_of(dairy), labels_of(frozen), labels_of(everywhere))
            ap.fault = Fault.NONE
            await rig.until(lambda: everywhere.queue.qsize() >= 2, what="two clears", timeout=40)
            fixed = (labels_of(dairy), labels_of(frozen), labels_of(everywhere))
            await bands.stop()
            return wrong, fixed

    try:
        (dairy, frozen, everywhere), (dairy_fixed, frozen_fixed, everywhere_fixed) = asyncio.run(
            asyncio.wait_for(scenario(), 90))
    finally:
        ap.stop()
    assert sorted(everywhere) == [("notify", dairy_mac), ("notify", tea_mac)]
    assert sorted(dairy) == sorted(everywhere)  # its zone, and the label without one
    assert frozen == [("notify", tea_mac)]  # not dairy's
    assert everywhere_fixed == [("clear", "Label fixed")] * 2 and dairy_fixed == everywhere_fixed
    assert frozen_fixed == [("clear", "Label fixed")]


def test_the_assist_timers_are_bounded_in_devices_yaml():
    from edge_agent.config import parse
    from edge_core.errors import ConfigError

    head = "store:\n  id: store-001\n  name: Demo Store\n"
    config = parse(head + "assist:\n  remind_s: 0.2\n  alert_after_s: 600\n", "devices.yaml", environ={})
    assert (config.assist.remind_s, config.assist.alert_after_s) == (0.2, 600)
    assert parse(head + "assist:\n", "devices.yaml", environ={}).assist.remind_s == 30  # all defaults
    for key, bad in (("remind_s", "0"), ("remind_s", "7200"), ("alert_after_s", "-1"), ("often", "1")):
        with pytest.raises(ConfigError) as err:
            parse(head + f"assist:\n  {key}: {bad}\n", "devices.yaml", environ={})
        [problem] = err.value.problems
        assert problem.startswith("devices.yaml:5: ") and key in problem, problem
