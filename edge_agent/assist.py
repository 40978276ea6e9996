"""The help desk: a kiosk's calls for help, who takes them, who is on duty, reminders and the unanswered alert.

A kiosk (an api client with role ``kiosk``) asks for help with a reason and
an optional note (``ask``); it has at most one request that is not closed:
asking again gives back that one. A request is ``open`` until an associate
takes it (``take``: from the PAD, or by acknowledging it on a wristband),
then ``taken`` until the associate or the kiosk says ``done`` (a request
nobody has taken is not done: the kiosk cancels it); the kiosk may
``cancel`` it at any time before. Each step is a bus event carrying the
request: ``assist.requested``, ``assist.taken``, ``assist.closed`` (the feed
shows them to staff and to the kiosk that asked, so its screen can say who is
coming).

Until it is taken, an open request is announced again every
``assist.remind_s`` seconds (``assist.reminder``, for the wristbands), and
after ``assist.alert_after_s`` it raises the alert ``assist_unanswered``
(``alert.raised``, subject the station; ``alert.cleared`` once it is taken or
closed): ``GET /v1/health`` names it while it is up.

Who is on duty: the associates connected right now to the wristband stream
or the live feed (``join`` / ``leave``, by client name, counted once however
many connections a name holds). Associates only: an admin's band is told
the calls but is not on duty, and its acknowledgement takes nothing
(edge_agent/wristband.py). A request made while nobody is on duty is
still kept; ``on_duty: 0`` in the answer tells the kiosk to send the
customer to the counter.

Everything lives in memory: a restart forgets the requests and the kiosk asks
again. Bounded: one live request per kiosk, and a request taken or closed
more than ``FORGET_AFTER_S`` ago is forgotten (at most ``MAX_KEPT`` kept in
all). The timers need no task: one ``loop.call_later`` for the next thing
due, which runs ``tick``; ``clock`` (monotonic seconds) is injectable, and a
test with its own clock calls ``tick`` itself.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from edge_agent.config import AssistConfig, Role
from edge_agent.errors import Conflict, Forbidden, NotFound
from edge_core.bus import Bus, utcnow

REQUESTED = "assist.requested"
TAKEN = "assist.taken"
CLOSED = "assist.closed"
REMINDER = "assist.reminder"  # for the wristbands, not the feed
ALERT_CODE = "assist_unanswered"
ALERT_DEVICE = "assist"
NOTE_MAX = 80
# Characters a note may not hold: controls, format characters (bidi overrides, zero-width ones) and line and
# paragraph separators, which would garble or disguise what an associate's wrist shows.
NOTE_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
NOTE_RULE = "a note is one line of visible text: no control, format or line-separator characters (Cc, Cf, Zl, Zp)"
# A request taken or closed this long ago is forgotten (the kiosk's screen has long moved on).
FORGET_AFTER_S = 3600.0
# Requests kept in all, open ones included: a store has a few dozen kiosks at most.
MAX_KEPT = 1000
DEFAULTS = AssistConfig()


class HelpReason(str, Enum):
    """Why a kiosk calls for help."""

    AGE_CHECK = "age_check"
    ITEM_WONT_SCAN = "item_wont_scan"
    PAYMENT_PROBLEM = "payment_problem"
    OTHER = "other"


def note_refusal(note: str) -> str | None:
    """Why ``note`` cannot be shown on a wrist (``NOTE_RULE`` and the first character refused), or None."""
    for at, char in enumerate(note):
        category = unicodedata.category(char)
        if category in NOTE_REFUSED_CATEGORIES:
            return f"{NOTE_RULE}; U+{ord(char):04X} ({category}) at {at}"
    return None


class State(str, Enum):
    """Where a request stands."""

    OPEN = "open"
    TAKEN = "taken"
    DONE = "done"
    CANCELLED = "cancelled"


REASON_TEXT = {HelpReason.AGE_CHECK: "Age check", HelpReason.ITEM_WONT_SCAN: "Item won't scan",
               HelpReason.PAYMENT_PROBLEM: "Payment problem", HelpReason.OTHER: "Help needed"}


@dataclass(frozen=True, slots=True)
class Request:
    """One call for help. ``asked``, ``settled``, ``next_remind`` are the desk's clock; not shown."""

    id: str
    station: str
    reason: HelpReason
    note: str | None
    created_at: datetime
    asked: float
    next_remind: float
    state: State = State.OPEN
    taken_by: str | None = None
    taken_at: datetime | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None
    settled: float | None = None  # when it was taken or closed
    alerted: bool = False
    reminders: int = 0

    @property
    def live(self) -> bool:
        """Open or taken: the kiosk's one request."""
        return self.state in (State.OPEN, State.TAKEN)

    def as_dict(self, on_duty: int) -> dict[str, Any]:
        """The request as the API, the feed and the bus show it."""
        return {"assist_id": self.id, "station": self.station, "reason": self.reason.value, "note": self.note,
                "state": self.state.value, "created_at": self.created_at.isoformat(), "on_duty": on_duty,
                "taken_by": self.taken_by, "taken_at": self.taken_at.isoformat() if self.taken_at else None,
                "closed_by": self.closed_by, "closed_at": self.closed_at.isoformat() if self.closed_at else None,
                "reminders": self.reminders}


class Desk:
    """Every kiosk's help requests, who is on duty, and the timers of the untaken ones."""

    def __init__(self, bus: Bus, remind_s: float = DEFAULTS.remind_s, alert_after_s: float = DEFAULTS.alert_after_s,
                 clock: Callable[[], float] = time.monotonic):
        self.bus = bus
        self.remind_s = remind_s
        self.alert_after_s = alert_after_s
        self.clock = clock
        self._requests: dict[str, Request] = {}  # by id, oldest first
        self._duty: Counter[str] = Counter()  # associate -> connections to the feed or a wristband
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Nothing to start: the timers are armed by the requests."""

    async def stop(self) -> None:
        """Drop the timer (requests die with the agent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # Who is on duty --------------------------------------------------------------------

    def join(self, name: str) -> None:
        """An associate's connection (feed or wristband) opened."""
        self._duty[name] += 1

    def leave(self, name: str) -> None:
        """That connection closed."""
        self._duty[name] -= 1
        if self._duty[name] <= 0:
            del self._duty[name]

    @property
    def on_duty(self) -> int:
        """Associates connected now."""
        return len(self._duty)

    # Requests --------------------------------------------------------------------------

    def view(self, request: Request) -> dict[str, Any]:
        """``request`` as shown, with who is on duty now."""
        return request.as_dict(self.on_duty)

    def ask(self, station: str, reason: HelpReason, note: str | None) -> tuple[Request, bool]:
        """The kiosk's call for help: (its request, True) if new; (the one it has, False) if it has one."""
        self._forget()
        for request in self._requests.values():
            if request.station == station and request.live:
                return request, False
        now = self.clock()
        request = Request(uuid.uuid4().hex, station, reason, note or None, utcnow(), now, now + self.remind_s)
        self._requests[request.id] = request
        self._trim()
        self.bus.publish(REQUESTED, self.view(request))
        self._schedule()
        return request, True

    def get(self, assist_id: str, client: str, role: Role) -> Request:
        """One request, as ``client`` may see it: a kiosk sees only its own."""
        request = self._requests.get(assist_id)
        if request is None or (role == Role.KIOSK and request.station != client):
            raise NotFound(f"no help request {assist_id!r}" + (f" from {client!r}" if role == Role.KIOSK else ""))
        return request

    def listing(self) -> list[Request]:
        """The open and taken requests, oldest first."""
        self._forget()
        return [r for r in self._requests.values() if r.live]

    def unanswered(self) -> list[Request]:
        """The open requests whose alert is up."""
        return [r for r in self._requests.values() if r.state == State.OPEN and r.alerted]

    def open_requests(self) -> list[Request]:
        """The requests nobody has taken yet, oldest first."""
        return [r for r in self._requests.values() if r.state == State.OPEN]

    def take(self, assist_id: str, by: str) -> Request:
        """``by`` (an associate) takes the request; the same associate again changes nothing.

        Conflict when someone else has it, or it is closed."""
        request = self.get(assist_id, by, Role.ASSOCIATE)
        if request.state == State.TAKEN:
            if request.taken_by == by:
                return request
            raise Conflict(f"taken already by {request.taken_by}")
        if request.state != State.OPEN:
            raise Conflict(f"this help request was already {request.state.value}")
        return self._settle(request, TAKEN, state=State.TAKEN, taken_by=by, taken_at=utcnow())

    def done(self, assist_id: str, client: str, role: Role) -> Request:
        """The associate who took it, or the kiosk that asked, says it is done; done again changes nothing."""
        request = self.get(assist_id, client, role)
        if request.state == State.DONE:
            return request
        if request.state == State.CANCELLED:
            raise Conflict("this help request was cancelled by the kiosk")
        if request.state == State.OPEN:
            raise Conflict("nobody has taken this help request yet: " +
                           ("cancel it instead (DELETE)" if role == Role.KIOSK else "take it first"))
        if role != Role.KIOSK:
            if request.taken_by != client:
                raise Forbidden(f"only {request.taken_by}, who took it, or the kiosk may close it")
        return self._settle(request, CLOSED, state=State.DONE, closed_by=client, closed_at=utcnow())

    def cancel(self, assist_id: str, station: str) -> Request:
        """The kiosk that asked takes it back (the customer managed, or left); cancelling again changes nothing."""
        request = self.get(assist_id, station, Role.KIOSK)
        if request.state == State.CANCELLED:
            return request
        if request.state == State.DONE:
            raise Conflict("this help request is done already")
        return self._settle(request, CLOSED, state=State.CANCELLED, closed_by=station, closed_at=utcnow())

    # Timers ----------------------------------------------------------------------------

    def tick(self) -> None:
        """What is due now: reminders of untaken requests, their alerts, forgetting old ones."""
        now = self.clock()
        for request in self.open_requests():
            if now >= request.next_remind:
                request = self._put(replace(request, next_remind=now + self.remind_s,
                                            reminders=request.reminders + 1))
                self.bus.publish(REMINDER, self.view(request))
            if not request.alerted and now - request.asked >= self.alert_after_s:
                request = self._put(replace(request, alerted=True))
                self.bus.publish("alert.raised", self._alert(request, raised=True))
        self._forget()
        self._schedule()

    def _due_at(self) -> float | None:
        times = []
        for r in self._requests.values():
            if r.state == State.OPEN:
                times.append(r.next_remind)
                if not r.alerted:
                    times.append(r.asked + self.alert_after_s)
            elif r.settled is not None:
                times.append(r.settled + FORGET_AFTER_S)
        return min(times) if times else None

    def _schedule(self) -> None:
        """One timer, for the next thing due."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._due_at()
        if due is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a test with its own clock): it calls tick itself
        self._timer = loop.call_later(max(0.0, due - self.clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.tick()

    # Inside ----------------------------------------------------------------------------

    def _put(self, request: Request) -> Request:
        self._requests[request.id] = request
        return request

    def _settle(self, request: Request, event: str, **changes: Any) -> Request:
        """Take or close ``request``: its event, and its alert cleared if it was up."""
        request = self._put(replace(request, settled=self.clock(), **changes))
        if request.alerted:
            request = self._put(replace(request, alerted=False))
            self.bus.publish("alert.cleared", self._alert(request, raised=False))
        self.bus.publish(event, self.view(request))
        self._schedule()
        return request

    def _alert(self, request: Request, raised: bool) -> dict[str, Any]:
        waited = self.clock() - request.asked
        if raised:
            message = (f"{request.station} has asked for help ({REASON_TEXT[request.reason].lower()}) for "
                       f"{waited:.0f} s and nobody has taken it; {self.on_duty} associate(s) on duty")
        else:
            message = f"{request.station}'s call for help was {request.state.value}"
        return {"device": ALERT_DEVICE, "code": ALERT_CODE, "subject": request.station,
                "severity": "warning" if raised else "info", "state": "raised" if raised else "cleared",
                "assist_id": request.id, "station": request.station, "reason": request.reason.value,
                "since": request.created_at.isoformat(), "message": message}

    def _forget(self) -> None:
        """Drop requests taken or closed ``FORGET_AFTER_S`` ago."""
        now = self.clock()
        for key in [k for k, r in self._requests.items()
                    if r.settled is not None and now - r.settled >= FORGET_AFTER_S]:
            del self._requests[key]

    def _trim(self) -> None:
        """At most ``MAX_KEPT``: the oldest settled ones go first."""
        while len(self._requests) > MAX_KEPT:
            settled = [k for k, r in self._requests.items() if not r.live]
            del self._requests[settled[0] if settled else next(iter(self._requests))]
