"""Calls for help in the store day: the kiosks ask, an associate's wristband takes them, nobody on duty alerts.

- ``Kiosk._help`` (actors.py) now and then calls for help (``POST /v1/assist``)
  and waits until the call is taken; with nobody on duty (``on_duty: 0``) it
  sends the customer to the counter and cancels, as a kiosk should.
- ``Band``: band-1, an associate's wristband on ``WS /v1/wristband`` (WSS,
  reconnecting across agent restarts). It is no devices.yaml client: it pairs
  with a one-time code the admin asks for (``POST /v1/pairing``, then
  ``POST /v1/pair``) and uses the token it gets, which outlives the agent's
  restarts. A reader thread stamps each notice as
  it arrives; its hands acknowledge a call after a moment (which takes it)
  and say ``done`` a little later.
- ``OffDuty``: once in the day the band goes off duty and the console unpairs
  it (its old token then answers 401); kiosk-3 (a kiosk
  client without devices, for this alone) calls for help: the answer must say
  ``on_duty: 0``, ``GET /v1/health`` must name ``assist_unanswered`` within
  ``assist.alert_after_s`` and a margin; the band comes back, gets the open
  call at once (paired again with a new code), takes it, and the reason must go.
- ``judge``: at the end of the day, every call made while the band was on
  duty reached it in under ``DELIVERY_S`` (p99 and max go in the report),
  every call was taken or cancelled, and none is left open.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from soak import checks as rows
from soak.day import Day

DELIVERY_S = 1.0  # a call must reach a connected band within this (the feature's promise)
TAKEN_WITHIN = 15.0  # a kiosk waits this long for the band on duty to take its call
REASONS = ("age_check", "item_wont_scan", "payment_problem", "other")
NOTES = (None, "customer waiting", "bottle of wine", "card declined twice", "barcode torn")
BAND = "band-1"
LONELY_KIOSK = "kiosk-3"  # asks during the off-duty window; no actor uses it otherwise


@dataclass
class Call:
    """One call for help as the soak saw it."""

    assist_id: str
    station: str
    asked: float            # monotonic, just before the POST
    on_duty: int            # as the POST answered
    incarnation: int
    seen: float | None = None   # when the band first had its notice
    answered: float | None = None  # monotonic, when the kiosk had the POST's answer
    outcome: str = "open"       # taken, done, cancelled, forgotten (a restart)
    off_duty_check: bool = False


class HelpLog:
    """Every call for help of the day, thread-safe."""

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self.early: dict[str, float] = {}  # notices the band saw before the kiosk recorded its call
        self.lock = threading.Lock()

    def asked(self, call: Call) -> None:
        with self.lock:
            self.calls.setdefault(call.assist_id, call)
            if call.assist_id in self.early:
                self.calls[call.assist_id].seen = self.early.pop(call.assist_id)

    def seen(self, assist_id: str, at: float) -> None:
        with self.lock:
            known = self.calls.get(assist_id)
            if known is None:
                self.early.setdefault(assist_id, at)
            elif known.seen is None:
                known.seen = at

    def outcome(self, assist_id: str, outcome: str) -> None:
        with self.lock:
            if assist_id in self.calls:
                self.calls[assist_id].outcome = outcome

    def all(self) -> list[Call]:
        with self.lock:
            return list(self.calls.values())


def log(day: Day) -> HelpLog:
    """The day's help log, made on first use."""
    with day.ledger.lock:
        if getattr(day, "help", None) is None:
            day.help = HelpLog()
        return day.help


def paired_secrets(day: Day) -> dict[str, str]:
    """The pairing codes and tokens band-1 got in the day, by name: no log may hold one (intruder.py)."""
    if not hasattr(day, "paired_secrets"):
        day.paired_secrets = {}
    return day.paired_secrets


def _excused(day: Day, since: float) -> bool:
    """True if the agent was away (killed, restarting) at some time since ``since`` (monotonic)."""
    return day.outages.since_clear("agent") <= time.monotonic() - since + 1.0


class Band(threading.Thread):
    """band-1's wristband: a reader that stamps notices, and hands that ack and close calls."""

    def __init__(self, day: Day):
        super().__init__(name="soak-band", daemon=True)
        self.day = day
        self.http = day.rig.client(None)  # its token once paired (pair)
        self.token: str | None = None
        self.off_duty = threading.Event()
        self.connected = threading.Event()
        self.inbox: queue.Queue[dict] = queue.Queue()
        self.ws: ClientConnection | None = None
        self.hands = threading.Thread(target=self._hands, name="soak-band-hands", daemon=True)
        self.rng = day.rng(BAND)
        self.notices = 0

    def run(self) -> None:
        self.hands.start()
        d = self.day
        try:
            while not d.stop.is_set():
                if self.off_duty.is_set():
                    d.stop.wait(0.1)
                    continue
                try:
                    if self.token is None and not self.pair():
                        d.stop.wait(0.5)  # the agent is restarting: pair again
                        continue
                    self._connection()
                except (OSError, WebSocketException, ValueError):
                    d.stop.wait(0.5)  # the agent is restarting: connect again
        finally:
            self.hands.join(60)
            self.http.close()

    def pair(self) -> bool:
        """Pair as band-1: the admin asks for a code, the band redeems it for its own token. False if the agent
        could not be reached (it is restarting); a refusal is a violation."""
        d = self.day
        try:
            with d.rig.client("admin", timeout=10) as admin, d.rig.client(None, timeout=10) as anon:
                made = admin.post("/v1/pairing", json={"name": BAND})
                if not d.checks.check(rows.HELP, made.status_code == 201, "the admin gets a pairing code for band-1",
                                      201, f"{made.status_code}: {made.text[:200]}"):
                    return False
                paired = anon.post("/v1/pair", json={"code": made.json()["code"]})
                if not d.checks.check(rows.HELP, paired.status_code == 201, "band-1 pairs with its code", 201,
                                      f"{paired.status_code}: {paired.text[:200]}"):
                    return False
        except httpx.HTTPError:
            return False
        self.token = paired.json()["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        n = len(paired_secrets(d)) // 2 + 1
        paired_secrets(d).update({f"band-1's pairing code {n}": made.json()["code"], f"band-1's token {n}": self.token})
        d.ledger.did("wristband pairings")
        return True

    def _connection(self) -> None:
        d = self.day
        with connect(f"{d.rig.agent.ws_url}/v1/wristband", open_timeout=10, ssl=d.rig.tls.context(),
                     additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            self.ws = ws
            try:
                while not d.stop.is_set() and not self.off_duty.is_set():
                    try:
                        text = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    at = time.monotonic()
                    msg = json.loads(text)
                    if msg.get("type") == "hello":
                        self.connected.set()
                    elif msg.get("type") == "notify" and msg.get("kind") == "assist":
                        self.notices += 1
                        log(d).seen(msg["ref"]["assist_id"], at)
                        self.inbox.put(msg)
            finally:
                self.ws = None
                self.connected.clear()

    def _hands(self) -> None:
        """Ack a call's notice a moment after it buzzed (a reminder or a re-send is acked again: the same
        associate taking it again changes nothing), then say done a little later, once per call."""
        d = self.day
        closed: set[str] = set()
        while not (d.stop.is_set() and self.inbox.empty()):
            try:
                msg = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            assist_id = msg["ref"]["assist_id"]
            if assist_id in closed or d.stop.is_set():
                continue
            d.stop.wait(self.rng.uniform(0.2, 1.0))
            ws = self.ws
            if ws is None:
                continue  # gone off duty or the agent went away: the next connection gets the call again
            try:
                ws.send(json.dumps({"ack": msg["id"]}))
            except (OSError, WebSocketException):
                continue
            d.ledger.did("help notices acked on the band")
            d.stop.wait(self.rng.uniform(0.3, 1.5))
            if self._done(assist_id):
                closed.add(assist_id)

    def _done(self, assist_id: str) -> bool:
        """Say the call is done; False if it was not taken (the ack did not get through: the next notice)."""
        d = self.day
        for _ in range(40):  # the ack's take may still be on its way
            try:
                r = self.http.post(f"/v1/assist/{assist_id}/done")
            except httpx.HTTPError:
                d.stop.wait(0.5)
                continue
            d.checks.check(rows.ANSWERS, r.status_code < 500, f"POST /v1/assist/{assist_id}/done answered",
                           "< 500", f"{r.status_code}: {r.text[:200]}")
            if r.status_code == 200:
                log(d).outcome(assist_id, "done")
                d.ledger.did("help calls done")
                return True
            if r.status_code == 409 and "take it first" in r.text:
                time.sleep(0.1)  # a poll interval: the ack is being handled
                continue
            # Cancelled by the kiosk meanwhile, or forgotten by a restart: the kiosk's record says which.
            d.ledger.did(f"help done {r.status_code}")
            return True
        return False


class OffDuty(threading.Thread):
    """Once in the day: the band off duty, a call nobody takes, the alert; the band back, the alert gone."""

    def __init__(self, day: Day, band: Band, at_s: float):
        super().__init__(name="soak-off-duty", daemon=True)
        self.day = day
        self.band = band
        self.at_s = at_s
        self.http = day.rig.client(LONELY_KIOSK)
        self.anon = day.rig.client(None, timeout=10)

    def run(self) -> None:
        d = self.day
        try:
            if d.stop.wait(self.at_s):
                return
            while d.outages.active("agent") and not d.stop.is_set():
                d.stop.wait(1)
            if not d.stop.is_set():
                self._scenario()
        except Exception as err:  # noqa: BLE001 - its own bug or an answer it could not read: a violation
            d.checks.fail(rows.HELP, "the off-duty scenario runs to its end", "no exception",
                          f"{type(err).__name__}: {err}"[:300])
        finally:
            self.band.off_duty.clear()
            self.http.close()
            self.anon.close()

    def _check(self, holds: bool, what: str, expected: Any, got: Any, since: float, **ids: Any) -> bool:
        """A check of the HELP row; a note, not a violation, when the agent was killed meanwhile."""
        if not holds and _excused(self.day, since):
            self.day.checks.note(f"off duty: {what}: not, the agent restarting meanwhile ({got})")
            return False
        return self.day.checks.check(rows.HELP, holds, what, expected, got, **ids)

    def _unpair(self) -> None:
        """The console unpairs the band while it is off duty; its token must be refused at once. Coming back,
        the band pairs again with a new code (Band.run)."""
        d, since = self.day, time.monotonic()
        old = self.band.token
        with d.rig.client("console-1", timeout=10) as console:
            r = console.delete(f"/v1/paired/{BAND}")
        if not self._check(r.status_code == 200, "the console unpairs band-1", 200, f"{r.status_code}: {r.text[:200]}",
                           since):
            return
        self.band.token = None
        with httpx.Client(base_url=d.rig.agent.url, timeout=10, verify=d.rig.tls.context(),
                          headers={"Authorization": f"Bearer {old}"}) as stale:
            r = stale.get("/v1/assist")
        self._check(r.status_code == 401, "band-1's token is refused once it is unpaired", 401,
                    f"{r.status_code}: {r.text[:200]}", since)
        d.ledger.did("wristband unpairings")

    def _unanswered(self) -> list[dict]:
        try:
            h = self.anon.get("/v1/health").json()
        except (httpx.HTTPError, ValueError):
            return []
        return [x for x in h.get("reasons", []) if x.get("code") == "assist_unanswered"
                and x.get("subject") == LONELY_KIOSK]

    def _scenario(self) -> None:
        d = self.day
        alert_after = d.rig.timers.assist_alert
        d.ledger.faults["wristband off duty (nobody to answer a call)"] += 1
        self.band.off_duty.set()
        d.outages.begin("off-duty")
        try:
            # The band's connection closes; the agent sees it go. The same call asked again answers with
            # who is on duty now, so poll it until nobody is.
            asked = time.monotonic()
            answer: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                r = self.http.post("/v1/assist", json={"reason": "age_check", "note": "nobody on duty"})
                answer = r.json() if r.status_code in (200, 201) else {"status": r.status_code, "detail": r.text}
                if answer.get("on_duty") == 0 or "assist_id" not in answer:
                    break
                time.sleep(0.2)  # a poll interval
            if not self._check(answer.get("on_duty") == 0, "a call with the band off duty answers on_duty 0", 0,
                               answer.get("on_duty", answer), asked):
                return
            self._unpair()
            assist_id = answer["assist_id"]
            log(d).asked(Call(assist_id, LONELY_KIOSK, asked, 0, d.rig.incarnation, off_duty_check=True))
            started = time.monotonic()
            while time.monotonic() < started + alert_after + 30 and not self._unanswered():
                time.sleep(0.25)  # a poll interval
            raised = bool(self._unanswered())
            self._check(raised, f"/v1/health names assist_unanswered ({LONELY_KIOSK}) with nobody on duty",
                        f"within {alert_after:g} s + 30 s", "not named", started, assist_id=assist_id)
            if raised:
                d.ledger.figures["off duty: alert after (s)"] = f"{time.monotonic() - started:.1f}"
        finally:
            self.band.off_duty.clear()
            d.outages.end("off-duty")
        back = time.monotonic()
        self.band.connected.wait(30)
        while time.monotonic() < back + 30 and log(d).calls[assist_id].seen is None:
            time.sleep(0.05)  # a poll interval
        self._check(log(d).calls[assist_id].seen is not None, "the band back on duty gets the open call",
                    "within 30 s", "not received", back, assist_id=assist_id)
        while time.monotonic() < back + 60 and self._unanswered():
            time.sleep(0.25)  # a poll interval
        cleared = not self._unanswered()
        self._check(cleared, "assist_unanswered cleared once the band took the call", "within 60 s",
                    "still named", back, assist_id=assist_id)
        got = self.http.get(f"/v1/assist/{assist_id}")
        state = got.json().get("state") if got.status_code == 200 else "forgotten"
        log(d).outcome(assist_id, state if state in ("taken", "done") else "open")
        if state == "open":
            self.http.delete(f"/v1/assist/{assist_id}")


def ask(day: Day, http: httpx.Client, station: str, rng: Any, call_fn: Any) -> None:
    """A kiosk's call for help, then waiting until it is taken (the kiosk actor's step calls this)."""
    d = day
    help_log = log(d)
    asked = time.monotonic()
    r = call_fn(d, http, "POST", "/v1/assist", json={"reason": rng.choice(REASONS), "note": rng.choice(NOTES)})
    if not d.checks.check(rows.HELP, r.status_code in (200, 201), f"{station}: POST /v1/assist answered 201 or 200",
                          "201 or 200", f"{r.status_code}: {r.text[:200]}", station=station):
        return
    answer = r.json()
    assist_id = answer["assist_id"]
    if r.status_code == 200:
        d.ledger.did("help asked again while the last call was live")
        return
    help_log.asked(Call(assist_id, station, asked, answer["on_duty"], d.rig.incarnation, answered=time.monotonic()))
    d.ledger.did("help calls")
    if answer["on_duty"] == 0:
        # Nobody will see it: the kiosk sends the customer to the counter.
        call_fn(d, http, "DELETE", f"/v1/assist/{assist_id}")
        help_log.outcome(assist_id, "cancelled")
        d.ledger.did("help calls with nobody on duty (sent to the counter)")
        return
    deadline = time.monotonic() + TAKEN_WITHIN
    while time.monotonic() < deadline and not d.stop.is_set():
        g = call_fn(d, http, "GET", f"/v1/assist/{assist_id}")
        if g.status_code == 404:
            help_log.outcome(assist_id, "forgotten")  # the agent restarted: the kiosk would ask again
            return
        state = g.json().get("state")
        if state in ("taken", "done"):
            help_log.outcome(assist_id, state)
            return
        time.sleep(0.25)  # a poll interval
    c = call_fn(d, http, "DELETE", f"/v1/assist/{assist_id}")
    outcome = "cancelled"
    if c.status_code != 200:
        # Done between the last look and the DELETE (409), as when the day ends under a call just taken: the
        # call's state says so; gone (404) is forgotten.
        g = call_fn(d, http, "GET", f"/v1/assist/{assist_id}")
        outcome = g.json().get("state") if g.status_code == 200 else "forgotten"
    help_log.outcome(assist_id, outcome)
    if outcome in ("taken", "done"):
        return
    if d.stop.is_set() or _excused(d, asked) or d.outages.since_clear("off-duty") <= time.monotonic() - asked + 1:
        d.ledger.did("help calls cancelled (the band away)")
        return
    d.checks.fail(rows.HELP, f"{station}: the call is taken by the band on duty", f"within {TAKEN_WITHIN:g} s",
                  f"not taken; cancelled ({c.status_code})", station=station, assist_id=assist_id)


def judge(day: Day) -> None:
    """End of day: each call while the band was on duty reached it in under DELIVERY_S; each was taken or
    cancelled; none left open at the agent."""
    judge_calls(day)
    try:
        with day.rig.client("pad-1") as pad:
            live = pad.get("/v1/assist").json()
    except httpx.HTTPError as err:
        day.checks.fail(rows.HELP, "GET /v1/assist at the end of the day", "an answer", repr(err)[:200])
        return
    still_open = [c for c in live if c.get("state") == "open"]
    day.checks.check(rows.HELP, not still_open, "no call for help left open at the end of the day", [],
                     [c["assist_id"] for c in still_open])


def judge_calls(day: Day) -> None:
    """The help log's calls: delivered in time while the band was on duty, taken or cancelled; the figures."""
    d = day
    latencies = []
    for c in log(d).all():
        if c.off_duty_check:
            continue
        if c.outcome == "forgotten":
            holds = _excused(d, c.asked)
            if holds:
                d.checks.note(f"a call for help of {c.station} forgotten by the agent's restart (agent incarnation "
                              f"{c.incarnation}); the kiosk asks again")
            else:
                d.checks.fail(rows.HELP, "a call is taken or cancelled", "taken, done or cancelled", "forgotten",
                              assist_id=c.assist_id, station=c.station)
            continue
        d.checks.check(rows.HELP, c.outcome in ("taken", "done", "cancelled"), "a call is taken or cancelled",
                       "taken, done or cancelled", c.outcome, assist_id=c.assist_id, station=c.station)
        if c.on_duty < 1:
            continue
        if c.seen is None:
            if _excused(d, c.asked):
                continue
            d.checks.fail(rows.HELP, "a call while the band was on duty reached it", f"< {DELIVERY_S:g} s",
                          "never", assist_id=c.assist_id, station=c.station, incarnation=c.incarnation)
            continue
        took = c.seen - c.asked
        if c.answered is not None and c.answered - c.asked >= DELIVERY_S:
            # The agent took as long to answer the kiosk itself (the machine stalled: CI shares two cores, and
            # the answers row judges that): the band is judged from the answer on, when the agent had the call.
            d.checks.note(f"{c.station}'s call for help: the agent answered the kiosk after "
                          f"{c.answered - c.asked:.1f} s; its delivery to the band judged from that answer")
            took = c.seen - c.answered
        latencies.append(took)
        d.checks.check(rows.HELP, took < DELIVERY_S, "a call while the band was on duty reached it",
                       f"< {DELIVERY_S:g} s", f"{took:.3f} s", assist_id=c.assist_id, station=c.station)
    if latencies:
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        d.ledger.figures["help calls delivered to the band"] = str(len(ordered))
        d.ledger.figures["help delivery p50 (ms)"] = f"{ordered[len(ordered) // 2] * 1000:.0f}"
        d.ledger.figures["help delivery p99 (ms)"] = f"{p99 * 1000:.0f}"
        d.ledger.figures["help delivery max (ms)"] = f"{ordered[-1] * 1000:.0f}"
