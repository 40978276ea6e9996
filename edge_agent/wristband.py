"""What the associates' wristbands are told: short notices with a vibration, acknowledged on the wrist.

``Bands`` follows the bus and turns four kinds of event into notices for
every connected band (``WS /v1/wristband``, edge_agent/api/routers/wristband.py):

| kind | from | to |
|---|---|---|
| ``assist`` | ``assist.requested``, ``assist.reminder`` (edge_agent/assist.py) | every band, until taken; then a ``clear`` to every other band |
| ``member`` | ``member.arrived`` of a member with tags | every band: tier and tags, the id masked |
| ``order`` | ``order.created`` (a pickup order) | every band |
| ``label`` | ``alert.raised`` ``label_price_mismatch`` (a label wrong past its grace) | the bands whose zones hold the label's zone (a band without zones: every zone; a label without one: every band); a ``clear`` when it is fixed |

A notice: ``{"type": "notify", "id": "n-17", "kind", "title" (<= 24), "line"
(<= 60), "vibrate": [ms, ...], "ack": true, "ref": {...}}``; a clear:
``{"type": "clear", "id", "line"}``. Each kind has its own vibration, the
call for help the strongest. A reminder of a request is its notice again,
under the same id. An associate's band that acknowledges an assist notice
takes the request (``Desk.take``); if someone was quicker, the band gets a
clear saying who. An admin's band is told everything but is not on duty, and
its acknowledgement of a call takes nothing (it gets an error saying so).

A slow band never slows anyone: each band has a bounded queue, and one that
overflows is marked lagging and its connection closed, as the feed does.
``close_client`` closes a client's bands (a device unpaired). No member id
reaches a band in full, so a notice is no read of personal data.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_agent import assist
from edge_agent.assist import Desk
from edge_agent.errors import DomainError
from edge_agent.feed import masked_id
from edge_agent.labels.alerts import CODES as LABEL_CODES
from edge_core.bus import Bus, BusEvent, Consumer

TITLE_MAX = 24
LINE_MAX = 60
LABEL_WRONG = LABEL_CODES["price"]
# Milliseconds on, off, on, ...: told apart on the wrist without looking; help the strongest.
VIBRATE = {"assist": [400, 150, 400, 150, 400], "member": [150], "order": [200, 100, 200], "label": [80, 80, 80]}
# Notices whose ack or clear is still remembered (a few hours of a busy store).
REMEMBERED = 2000


def _fit(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Notice:
    """What a band's ack refers to."""

    kind: str
    ref: dict[str, Any]


class Band:
    """One band's connection: who, its zones, a bounded queue of messages, and why it must close."""

    def __init__(self, name: str, zones: Iterable[str], maxsize: int, on_duty: bool = True):
        self.name = name
        self.zones = frozenset(zones)
        self.on_duty = on_duty  # an associate's band: counted on duty, its ack takes a call
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.lagging = asyncio.Event()
        self.revoked = asyncio.Event()

    def offer(self, message: dict[str, Any]) -> None:
        """Queue a message; a full queue marks the band lagging (its connection is closed)."""
        if self.lagging.is_set() or self.revoked.is_set():
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.lagging.set()

    def in_zone(self, zone: Any) -> bool:
        """True if a label in ``zone`` is this band's business."""
        return not self.zones or not zone or zone in self.zones


class Bands(Consumer):
    """The connected wristbands and what they are told."""

    prefixes = ("assist.", "member.arrived", "order.created", "alert.")

    def __init__(self, bus: Bus, desk: Desk, queue: int = 100):
        super().__init__(bus)
        self.desk = desk
        self.queue = queue
        self.bands: set[Band] = set()
        self._ids = itertools.count(1)
        self._notices: OrderedDict[str, Notice] = OrderedDict()  # notice id -> what it is about
        self._by_assist: dict[str, str] = {}  # assist id -> notice id
        self._by_label: dict[str, str] = {}  # label mac -> notice id
        self.sent = 0

    # Connections -----------------------------------------------------------------------

    def connect(self, name: str, zones: Iterable[str], on_duty: bool = True) -> tuple[Band, dict[str, Any]]:
        """A band connects: its hello, and the calls for help nobody has taken yet queued first.

        ``on_duty``: an associate's band (counted on duty, may take a call); an admin's is told only."""
        band = Band(name, zones, self.queue, on_duty)
        self.bands.add(band)
        if on_duty:
            self.desk.join(name)
        for request in self.desk.open_requests():
            band.offer(self._assist_notice(self.desk.view(request)))
        return band, {"type": "hello", "name": name, "zones": sorted(band.zones)}

    def disconnect(self, band: Band) -> None:
        """Forget a band."""
        if band in self.bands:
            self.bands.discard(band)
            if band.on_duty:
                self.desk.leave(band.name)

    def close_client(self, name: str) -> int:
        """Close every band of the client ``name`` (unpaired); how many there were."""
        mine = [b for b in self.bands if b.name == name]
        for band in mine:
            band.revoked.set()
        return len(mine)

    def ack(self, band: Band, notice_id: str) -> None:
        """A band acknowledged a notice: an assist notice takes its request, or says who was quicker."""
        notice = self._notices.get(notice_id)
        if notice is None or notice.kind != "assist":
            return
        if not band.on_duty:
            band.offer({"type": "error", "id": notice_id,
                        "detail": "only an associate takes a call for help; this band is not on duty"})
            return
        try:
            self.desk.take(notice.ref["assist_id"], band.name)
        except DomainError as err:
            band.offer({"type": "clear", "id": notice_id, "line": _fit(str(err).capitalize(), LINE_MAX)})

    # The bus ---------------------------------------------------------------------------

    async def handle(self, event: BusEvent) -> None:
        """Turn one event into notices or clears."""
        data = event.data
        if event.type in (assist.REQUESTED, assist.REMINDER):
            if data.get("state") == assist.State.OPEN.value:
                self._to_all(self._assist_notice(data))
        elif event.type in (assist.TAKEN, assist.CLOSED):
            self._assist_settled(data)
        elif event.type == "member.arrived":
            if data.get("tags"):
                self._to_all(self._member_notice(data))
        elif event.type == "order.created":
            self._to_all(self._order_notice(data))
        elif data.get("code") == LABEL_WRONG and "count" not in data:
            self._label(event.type, data)

    def _to_all(self, message: dict[str, Any], bands: Iterable[Band] | None = None) -> None:
        for band in list(self.bands if bands is None else bands):
            band.offer(message)
            self.sent += 1

    def _remember(self, notice_id: str, notice: Notice) -> None:
        self._notices[notice_id] = notice
        self._notices.move_to_end(notice_id)
        while len(self._notices) > REMEMBERED:
            old_id, old = self._notices.popitem(last=False)
            key = old.ref.get("assist_id") or old.ref.get("mac")
            for index in (self._by_assist, self._by_label):
                if index.get(key) == old_id:
                    del index[key]

    def _notify(self, notice_id: str, kind: str, title: str, line: str, ref: dict[str, Any]) -> dict[str, Any]:
        self._remember(notice_id, Notice(kind, ref))
        return {"type": "notify", "id": notice_id, "kind": kind, "title": _fit(title, TITLE_MAX),
                "line": _fit(line, LINE_MAX), "vibrate": list(VIBRATE[kind]), "ack": True, "ref": ref}

    def _new_id(self) -> str:
        return f"n-{next(self._ids)}"

    def _assist_notice(self, data: dict[str, Any]) -> dict[str, Any]:
        assist_id = data["assist_id"]
        notice_id = self._by_assist.get(assist_id) or self._new_id()
        self._by_assist[assist_id] = notice_id
        reason = assist.REASON_TEXT.get(assist.HelpReason(data["reason"]), "Help needed")
        line = f"{reason}: {data['note']}" if data.get("note") else reason
        if data.get("reminders"):
            line = f"Still waiting · {line}"
        return self._notify(notice_id, "assist", f"Help at {data['station']}", line,
                            {"assist_id": assist_id, "station": data["station"]})

    def _assist_settled(self, data: dict[str, Any]) -> None:
        notice_id = self._by_assist.get(data["assist_id"])
        if notice_id is None:
            return
        if data["state"] == assist.State.TAKEN.value:
            taker = data.get("taken_by")
            self._to_all({"type": "clear", "id": notice_id, "line": _fit(f"Taken by {taker}", LINE_MAX)},
                         [b for b in self.bands if b.name != taker])
            return
        del self._by_assist[data["assist_id"]]
        line = "Cancelled at the kiosk" if data["state"] == assist.State.CANCELLED.value else "Done"
        self._to_all({"type": "clear", "id": notice_id, "line": line})

    def _member_notice(self, data: dict[str, Any]) -> dict[str, Any]:
        tier = str(data.get("tier") or "member").capitalize()
        tags = ", ".join(str(t) for t in data.get("tags") or [])
        shown = masked_id(data.get("member_id"))
        return self._notify(self._new_id(), "member", f"{tier} member here", f"{tags} · {shown}",
                            {"member": shown, "tier": data.get("tier"), "tags": list(data.get("tags") or [])})

    def _order_notice(self, data: dict[str, Any]) -> dict[str, Any]:
        order_id = str(data.get("order_id"))
        lines = data.get("lines") or []
        items = data.get("items") or sum(int(ln.get("qty") or 0) for ln in lines if isinstance(ln, dict))
        return self._notify(self._new_id(), "order", "Pickup order in", f"{order_id}: {items} item(s) to pick",
                            {"order_id": order_id})

    def _label(self, event_type: str, data: dict[str, Any]) -> None:
        mac = str(data.get("subject") or data.get("mac"))
        zone = data.get("zone")
        bands = [b for b in self.bands if b.in_zone(zone)]
        if event_type == "alert.cleared" or data.get("state") == "cleared":
            notice_id = self._by_label.pop(mac, None)
            if notice_id is not None:
                self._to_all({"type": "clear", "id": notice_id, "line": "Label fixed"}, bands)
            return
        notice_id = self._by_label.get(mac) or self._new_id()
        self._by_label[mac] = notice_id
        where = f" in {zone}" if zone else ""
        line = f"{data.get('sku')}{where}: shows {data.get('shown_price') or '?'}, till {data.get('checkout_price')}"
        self._to_all(self._notify(notice_id, "label", "Wrong shelf label", line,
                                  {"mac": mac, "sku": data.get("sku"), "zone": zone}), bands)
