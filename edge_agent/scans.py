"""From a scanner's code to the feed: catalog lookup, member attach, ``scan`` events.

Scanner drivers publish ``scanner.scan`` and ``scanner.bad_scan`` on the bus
(drivers/scanner/driver.py). This service looks each product code up in the
local catalog and publishes one ``scan`` event for the live feed
(``WS /v1/events``) with the scanner, the symbology, the parsed fields and
the product, or ``"product": null`` for an unknown code. A member QR on a
kiosk's scanner attaches the member to that kiosk's session; at an
associate's counter (a scanner whose ``station`` is no kiosk) it does not:
a session is a kiosk's customer, and a counter has none to end. A member QR
whose id does not match the chain's ``loyalty.member_id_pattern`` is a bad
scan (``ok: false``): it attaches nobody and announces no arrival.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from drivers.scanner.driver import BAD_SCAN, SCAN
from edge_agent import catalog
from edge_agent.bus import EventBus
from edge_agent.config import LoyaltyConfig
from edge_agent.errors import StoreError
from edge_agent.sessions import Sessions
from edge_agent.store import Store
from edge_core.bus import BusEvent, Consumer

log = logging.getLogger(__name__)
FEED_SCAN = "scan"


def code_variants(code: str) -> list[str]:
    """The forms a GTIN may be stored under in the catalog: as scanned, as GTIN-13, as GTIN-14, as UPC-A."""
    variants = [code]
    if code.isdigit() and len(code) in (8, 12, 13, 14):
        variants += [code.zfill(13), code.zfill(14)]
        if len(code) in (13, 14) and code.lstrip("0") and len(code.lstrip("0")) <= 12:
            variants.append(code[-12:])  # a UPC-A carried as EAN-13 / GTIN-14 with leading zeros
    return list(dict.fromkeys(variants))


def lookup_scanned(conn: sqlite3.Connection, code: str) -> catalog.Product | None:
    """The product a scanned code names, trying each form of the code."""
    for variant in code_variants(code):
        product = catalog.lookup(conn, variant)
        if product is not None:
            return product
    return None


class ScanService(Consumer):
    """Turns scanner bus events into feed ``scan`` events; one task."""

    prefixes = (SCAN, BAD_SCAN)

    def __init__(self, store: Store, bus: EventBus, sessions: Sessions, kiosks: frozenset[str] | None = None,
                 loyalty: LoyaltyConfig = LoyaltyConfig()):
        super().__init__(bus)
        self.store = store
        self.sessions = sessions
        self.loyalty = loyalty
        # The stations whose member scans attach to a session (None: every station, for tests of this module).
        self.kiosks = kiosks

    async def handle(self, event: BusEvent) -> None:
        """Publish the feed event for one scanner event; a failed lookup still reaches the feed."""
        try:
            await self._handle(event)
        except StoreError as err:
            log.warning("scan of %s: catalog lookup failed: %s", event.data.get("code"), err)
            self.bus.publish(FEED_SCAN, {**_common(event.data), "ok": True, "product": None,
                                         "error": f"catalog unavailable: {err}"})

    async def _handle(self, event: BusEvent) -> None:
        data = event.data
        if event.type == BAD_SCAN:
            self.bus.publish(FEED_SCAN, {**_common(data), "ok": False, "reason": data["reason"]})
            return
        if data["kind"] == "member":
            problem = self.loyalty.member_id_problem(str(data["fields"].get("member_id", "")))
            if problem is not None:
                # Not shown again: what was printed on the QR may be someone's phone number.
                self.bus.publish(FEED_SCAN, {**_common(data), "raw": None, "ok": False, "kind": "member",
                                             "reason": f"member QR: {problem}"})
                return
        product = None
        if data["kind"] == "product":
            found = await self.store.read(lambda conn: lookup_scanned(conn, data["code"]))
            product = found.model_dump(mode="json") if found is not None else None
        self.bus.publish(FEED_SCAN, {
            **_common(data), "ok": True, "code": data["code"], "symbology": data["symbology"],
            "kind": data["kind"], "fields": data["fields"], "product": product,
            **({"unknown_code": True} if data["kind"] == "product" and product is None else {}),
        })
        station = data.get("station")
        if data["kind"] == "member" and station and (self.kiosks is None or station in self.kiosks):
            self.sessions.attach_member(station, data["fields"]["member_id"], via=f"scan:{data['device']}")


def _common(data: dict[str, Any]) -> dict[str, Any]:
    return {"device": data["device"], "station": data.get("station"), "raw": data["raw"]}
