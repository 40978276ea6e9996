"""The people and systems of the store day, each a thread looping with seeded think-times.

- ``Kiosk``: a customer at a time: a member QR on the kiosk's pty scanner,
  product scans, the session basket, points, ``POST /v1/sales``; sometimes
  "new customer" or a customer who walks away (idle timeout), and now and
  then a call for help first (soak/assist.py: the associate's wristband takes it). After each
  customer it tries to use her member and points again: that must fail.
- ``Associate``: stock counts and adjustments, returns of store sales and of
  collected online orders, pickup orders through to collection, orders
  placed for customers, label binds at the shelf.
- ``Hub``: price changes, promotions starting and ending, stock sets, pickup
  orders, member cards (paho on the hub's topics, sync/topics.py), and
  ``refresh_labels`` through the hub console's command API; held while a
  second PC shares the store's MQTT session (identity.second_pc).
- ``Tags``: the e-paper tags waking up and checking in at their access point.

A call the agent does not answer (it is being killed) is retried with the
same idempotency key until it is answered: the answer says what happened.
Every answer is a check of the ANSWERS row: a 5xx, a call unanswered for
``UNANSWERED_LIMIT``, an actor's step that crashed, a sale refused and a
member QR lost while its scanner and the agent were up are violations.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from soak import assist
from soak import checks as rows
from soak.day import BARCODES, CATALOG, SKUS, Day
from soak.ledger import Sale
from soak.rig import AP_LABELS, KIOSKS, STORE
from sync.topics import hub_event, hub_topic

MEMBERS = [f"M-S{n:03d}" for n in range(1, 21)]
# Each kiosk serves its own members, so that two kiosks never spend one card at once.
KIOSK_MEMBERS = {kiosk: MEMBERS[i::len(KIOSKS)] for i, kiosk in enumerate(KIOSKS)}
UNANSWERED_LIMIT = 300.0  # seconds a call is retried while the agent is away
ATTACH_WITHIN = 15.0  # seconds a member QR has to show in the session, per scan
# A scan this soon after its scanner was plugged back in or the agent restarted may be lost (the
# driver reopens its port with a backoff capped at 30 s): that is the store's day, not a bug.
SCAN_SETTLE = 30.0
HELP_ODDS = 0.15  # a customer who calls for help before shopping (soak/assist.py)


class Unanswered(Exception):
    """The agent did not answer within UNANSWERED_LIMIT."""


def call(day: Day, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One API call, retried on connection errors (same body, same key) until answered."""
    deadline = time.monotonic() + UNANSWERED_LIMIT
    while True:
        try:
            r = client.request(method, url, **kwargs)
        except httpx.TransportError as err:
            if time.monotonic() > deadline:
                raise Unanswered(f"{method} {url}: {err!r}") from err
            time.sleep(0.5)  # the agent is restarting: ask again
            continue
        day.checks.check(rows.ANSWERS, r.status_code < 500, f"{method} {url} answered without a server error",
                         "< 500", f"{r.status_code}: {r.text[:300]}", incarnation=day.rig.incarnation)
        return r


class Actor(threading.Thread):
    """A loop of ``step()`` and think-time until the day ends; an exception is a violation, and the loop goes on."""

    def __init__(self, day: Day, name: str):
        super().__init__(name=f"soak-{name}", daemon=True)
        self.day = day
        self.who = name
        self.rng = day.rng(name)

    def run(self) -> None:
        try:
            while not self.day.stop.is_set():
                try:
                    self.step()
                except Unanswered as err:
                    self.day.checks.fail(rows.ANSWERS, f"{self.who}: the agent answers within "
                                         f"{UNANSWERED_LIMIT:.0f} s", "an answer", str(err)[:300],
                                         incarnation=self.day.rig.incarnation)
                except Exception as err:  # an answer the actor could not read, or its own bug: either way unchecked
                    self.day.checks.fail(rows.ANSWERS, f"{self.who}: a step runs to its end", "no exception",
                                         f"{type(err).__name__}: {err}"[:300], incarnation=self.day.rig.incarnation,
                                         traceback=traceback.format_exc()[-1500:])
                    self.day.stop.wait(1)
        finally:
            for client in (getattr(self, "http", None), getattr(self, "console", None)):
                if client is not None:
                    client.close()

    def step(self) -> None:
        raise NotImplementedError


class Kiosk(Actor):
    """One self-checkout kiosk with its scanner and its customers."""

    def __init__(self, day: Day, station: str):
        super().__init__(day, station)
        self.station = station
        self.http = day.rig.client(station)
        self.scanner = day.rig.scanners[station]
        self.attach_within = ATTACH_WITHIN

    def step(self) -> None:
        d = self.day
        if self.rng.random() < HELP_ODDS:
            assist.ask(d, self.http, self.station, self.rng, call)
        member = self.rng.choice(KIOSK_MEMBERS[self.station]) if self.rng.random() < 0.7 else None
        if member and not self._attach(member):
            member = None
        for _ in range(self.rng.randint(1, 3)):
            sku = self.rng.choice(SKUS)
            if not d.outages.active(f"scanner-{self.station}"):
                self.scanner.scan(BARCODES[sku])
                d.ledger.did("kiosk scans")
            r = call(d, self.http, "POST", f"/v1/sessions/{self.station}/basket",
                     json={"code": BARCODES[sku], "qty": self.rng.randint(1, 2)})
            d.ledger.did("basket adds" if r.status_code == 201 else f"basket add {r.status_code}")
            if not d.think(self.rng, 0.2, 1.0):
                return
        ending = self.rng.random()
        if ending < 0.1:
            self._new_customer(member)
        elif ending < 0.17 and d.rig.timers.idle_timeout is not None and member:
            self._walk_away(member)
        else:
            self._pay(member)
        d.think(self.rng, 0.5, 2.0)

    def _session(self) -> dict:
        return call(self.day, self.http, "GET", f"/v1/sessions/{self.station}").json()

    def _attach(self, member: str) -> bool:
        """Scan the member's QR (again once if nothing happens, as a customer would); True once the
        session shows her. Not attached after both scans: a violation (a scan lost), unless the scanner
        was unplugged or the agent restarting around then (a note: the store's day does that)."""
        d = self.day
        scanned = []
        began = d.ledger.elapsed()
        started = time.monotonic()
        for _ in range(2):
            if d.outages.active(f"scanner-{self.station}"):
                return False
            self.scanner.scan(f"RM1:{member}")
            scanned.append(f"{d.ledger.elapsed():.0f} s")
            d.ledger.did("member QR scans")
            deadline = time.monotonic() + self.attach_within
            while time.monotonic() < deadline:
                if d.stop.is_set():
                    return False  # the day ended under her: nothing to judge
                if self._session().get("member_id") == member:
                    d.checks.ok(rows.ANSWERS)
                    return True
                time.sleep(0.1)  # a poll interval
        d.ledger.did("member QR scanned twice, not attached")
        # Since the last of the outages that lose a scan: within the attempt, or too soon before it.
        settled = d.outages.since_clear(f"scanner-{self.station}", "agent")
        seen = d.feed.seen(self.station, member, began) if d.feed else "no feed"
        what = (f"{self.station}: RM1:{member} scanned at {' and '.join(scanned)} attached within "
                f"{self.attach_within:.0f} s of either")
        if settled < time.monotonic() - started + SCAN_SETTLE:
            d.checks.note(f"{what}: not, {settled:.0f} s after its scanner was plugged back in or the agent "
                          f"restarted (agent incarnation {d.rig.incarnation}; the feed showed the scan at {seen})")
        else:
            d.checks.fail(rows.ANSWERS, what, f"member_id {member}", "not attached (a scan lost)",
                          station=self.station, member=member, incarnation=d.rig.incarnation, feed_saw_at=seen,
                          scanner_and_agent_up_for_s=round(settled) if settled != float("inf") else "all day")
        return False

    def _pay(self, member: str | None) -> None:
        d = self.day
        session = self._session()
        lines = [{"code": ln["sku"], "qty": ln["qty"]} for ln in session["basket"]["lines"]]
        if not lines:
            d.ledger.did("empty baskets")
            return
        products = {ln["code"]: call(d, self.http, "GET", f"/v1/products/{ln['code']}").json() for ln in lines}
        promos = {sku: (p["promo"]["label"], p["promo"]["price"]) for sku, p in products.items()
                  if p.get("promo") and p["promo"].get("label") and _running(p["promo"])}
        body: dict[str, Any] = {"client_sale_id": str(uuid.uuid4()), "lines": lines,
                                "payment": {"method": self.rng.choice(["card", "qr", "cash"]), "reference": "SOAK"}}
        if member:
            body["member_id"] = member
            if self.rng.random() < 0.5:
                card = call(d, self.http, "GET", f"/v1/members/{member}")
                points = (card.json().get("points") or 0) if card.status_code == 200 else 0
                if points > 0:
                    body["points_redeemed"] = self.rng.randint(1, min(points, 2000))
        r = self._sell(body, promos)
        if r.status_code == 422 and "points_redeemed" in body:
            d.ledger.did("redemptions refused (card, balance)")
            body = {**{k: v for k, v in body.items() if k != "points_redeemed"}, "client_sale_id": str(uuid.uuid4())}
            r = self._sell(body, promos)
        d.checks.check(rows.ANSWERS, r.status_code == 201, f"{self.station}: a sale of the basket answered 201",
                       201, f"{r.status_code}: {r.text[:300]}", station=self.station, member=member,
                       incarnation=d.rig.incarnation)
        if r.status_code != 201:
            d.ledger.did(f"sale {r.status_code}")
            return
        if member:
            self._probe(member, "after her checkout")

    def _sell(self, body: dict, promos: dict[str, tuple[str, str]]) -> httpx.Response:
        d = self.day
        r = call(d, self.http, "POST", "/v1/sales", json=body)
        if r.status_code == 201:
            sale = r.json()
            d.ledger.add_sale(Sale(sale["sale_id"], self.station, body, sale, promos, r.headers.get("Print-Job"),
                                   time.monotonic(), d.rig.incarnation))
            d.ledger.did("sales")
            if body.get("points_redeemed"):
                d.ledger.did("points redeemed", body["points_redeemed"])
        return r

    def _new_customer(self, member: str | None) -> None:
        d = self.day
        r = call(d, self.http, "DELETE", f"/v1/sessions/{self.station}")
        if not d.checks.check(rows.SESSION, r.status_code == 200, f"DELETE /v1/sessions/{self.station} "
                              "(new customer) ends the session", 200, f"{r.status_code}: {r.text[:200]}",
                              station=self.station, member=member):
            d.ledger.did(f"new customer {r.status_code}")
            return
        d.ledger.did("new customer")
        if member:
            self._probe(member, "after 'new customer'")

    def _walk_away(self, member: str) -> None:
        d = self.day
        d.ledger.did("customers who walked away")
        idle = d.rig.timers.idle_timeout or 0
        d.outages.begin(f"idle-{self.station}")  # the mirror leaves this basket alone meanwhile
        try:
            if not d.stop.wait(idle + 5):  # the idle timeout, and a margin for a loaded machine
                self._probe(member, f"{idle:g} s idle and more")
        finally:
            d.outages.end(f"idle-{self.station}")

    def _probe(self, member: str, when: str) -> None:
        """The next customer tries her member and points at this kiosk: both must be gone."""
        d = self.day
        if d.outages.active("agent"):
            return
        session = self._session()
        d.checks.check(rows.SESSION, session.get("member_id") is None, f"GET /v1/sessions/{self.station} {when}",
                       None, session.get("member_id"), station=self.station, member=member)
        body = {"client_sale_id": str(uuid.uuid4()), "lines": [{"code": "TOTE01", "qty": 1}], "member_id": member,
                "points_redeemed": 1, "payment": {"method": "card", "reference": "SOAK-PROBE"}}
        r = self._sell(body, {})
        d.ledger.did("session probes")
        d.checks.check(rows.SESSION, r.status_code == 422, f"a redeeming sale for {member} at {self.station} {when}",
                       422, r.status_code, station=self.station, member=member,
                       sale=r.json().get("sale_id") if r.status_code == 201 else None)


def _running(promo: dict) -> bool:
    """True while a product's promotion (as GET /v1/products shows it) runs."""
    now = datetime.now(timezone.utc)
    starts, ends = promo.get("starts_at"), promo.get("ends_at")
    return (not starts or datetime.fromisoformat(starts) <= now) and (not ends or now < datetime.fromisoformat(ends))


class Associate(Actor):
    """The associates' PAD: counts, adjustments, returns, pickups, orders, label binds."""

    def __init__(self, day: Day):
        super().__init__(day, "pad-1")
        self.http = day.rig.client("pad-1")
        self.spares = [s.label for s in AP_LABELS if s.sku is None]

    def step(self) -> None:
        task = self.rng.choices(
            [self._count, self._adjust, self._return_sale, self._pickup, self._order, self._return_order, self._bind],
            weights=[15, 15, 15, 25, 8, 7, 10])[0]
        task()
        self.day.think(self.rng, 1.0, 4.0)

    def _count(self) -> None:
        sku = self.rng.choice(SKUS)
        r = call(self.day, self.http, "POST", "/v1/stock/adjustments",
                 json={"code": sku, "counted": self.rng.randint(5, 40), "reason": "count",
                       "client_adjustment_id": str(uuid.uuid4())})
        self.day.ledger.did("stock counts" if r.status_code == 201 else f"stock count {r.status_code}")

    def _adjust(self) -> None:
        sku = self.rng.choice(SKUS)
        for delta in (-1, 1, -1):  # the sequence that once blanked labels
            r = call(self.day, self.http, "POST", "/v1/stock/adjustments",
                     json={"code": sku, "delta": delta, "reason": self.rng.choice(["damaged", "found", "other"]),
                           "client_adjustment_id": str(uuid.uuid4())})
            self.day.ledger.did("stock adjustments" if r.status_code == 201 else f"stock adjustment {r.status_code}")

    def _return_sale(self) -> None:
        d = self.day
        sales = [s for s in d.ledger.sales_list() if s.answer.get("lines")]
        if not sales:
            return
        sale = self.rng.choice(sales)
        line = self.rng.choice(sale.answer["lines"])
        with d.ledger.lock:
            if d.ledger.returned[(sale.sale_id, line["sku"])] >= line["qty"]:
                return
            d.ledger.returned[(sale.sale_id, line["sku"])] += 1
        body = {"client_return_id": str(uuid.uuid4()), "sale": sale.sale_id,
                "lines": [{"code": line["sku"], "qty": 1}], "reason": "soak"}
        r = call(d, self.http, "POST", "/v1/returns", json=body)
        if r.status_code == 201:
            d.ledger.returns[r.json()["return_id"]] = r.json()
            d.ledger.did("returns of store sales")
        else:
            d.ledger.did(f"return {r.status_code}")
            d.checks.fail(rows.ANSWERS, "a return of a unit sold and not yet returned answered 201", 201,
                          f"{r.status_code}: {r.text[:200]}", sale=sale.sale_id, sku=line["sku"])

    def _return_order(self) -> None:
        d = self.day
        with d.ledger.lock:
            collected = [o for o in d.ledger.collected if o in d.ledger.hub_orders
                         and not d.ledger.returned[(o, "*")]]
        if not collected:
            return
        order_id = self.rng.choice(sorted(collected))
        got = call(d, self.http, "GET", f"/v1/orders/{order_id}").json()
        line = got["lines"][0]
        d.ledger.returned[(order_id, "*")] += 1
        r = call(d, self.http, "POST", "/v1/returns",
                 json={"client_return_id": str(uuid.uuid4()), "order_id": order_id,
                       "lines": [{"code": line["sku"], "qty": 1}], "reason": "soak"})
        if r.status_code == 201:
            d.ledger.returns[r.json()["return_id"]] = r.json()
            d.ledger.did("returns of online orders")
        else:
            d.ledger.did(f"online return {r.status_code}")
            d.checks.fail(rows.ANSWERS, "a return of a collected online order answered 201", 201,
                          f"{r.status_code}: {r.text[:200]}", order=order_id, sku=line["sku"])

    def _pickup(self) -> None:
        d = self.day
        orders = call(d, self.http, "GET", "/v1/orders", params={"status": "open"}).json()
        if not orders:
            return
        order = orders[0]
        step = {"new": "picking", "picking": "ready", "ready": "collected"}[order["status"]]
        body: dict[str, Any] = {"status": step}
        if step == "collected":
            with d.ledger.lock:
                code = d.ledger.hub_orders.get(order["order_id"]) or \
                    (d.ledger.orders.get(order["order_id"]) or {}).get("pickup_code")
            if code is None:
                return
            body["pickup_code"] = code
        r = call(d, self.http, "POST", f"/v1/orders/{order['order_id']}/status", json=body)
        d.ledger.did(f"pickup steps to {step}" if r.status_code == 200 else f"pickup step {r.status_code}")
        if r.status_code == 200 and step == "collected":
            with d.ledger.lock:
                d.ledger.collected.add(order["order_id"])
        elif r.status_code != 200:
            d.checks.fail(rows.ANSWERS, f"an open order's next step ({order['status']} -> {step}) answered 200",
                          200, f"{r.status_code}: {r.text[:200]}", order=order["order_id"])

    def _order(self) -> None:
        d = self.day
        lines = [{"code": sku, "qty": self.rng.randint(1, 2)} for sku in self.rng.sample(SKUS, 2)]
        r = call(d, self.http, "POST", "/v1/orders", json={"client_order_id": str(uuid.uuid4()), "lines": lines})
        if r.status_code == 201:
            d.ledger.orders[r.json()["order_id"]] = r.json()
            d.ledger.did("orders placed")
        else:
            d.ledger.did(f"order placed {r.status_code}")

    def _bind(self) -> None:
        d = self.day
        label, sku = self.rng.choice(self.spares), self.rng.choice(SKUS)
        r = call(d, self.http, "POST", "/v1/labels/bind", json={"label": label, "code": BARCODES[sku], "device": "labels-ap"})
        if r.status_code in (200, 201):
            d.ledger.bind(label, sku)
            d.ledger.did("label binds")
        else:
            d.ledger.did(f"label bind {r.status_code}")
            d.checks.fail(rows.ANSWERS, "a spare tag bound at the shelf answered 200 or 201", "200 or 201",
                          f"{r.status_code}: {r.text[:200]}", label=label, sku=sku)


class Hub(Actor):
    """The chain's hub: catalog, stock, orders, member cards on the downlink; commands via its console."""

    def __init__(self, day: Day):
        super().__init__(day, "hub")
        # The store's count is the store's: the hub sets it with retail.stock.set, not with catalog items.
        self.items = {item["sku"]: {k: v for k, v in item.items() if k != "stock_store"} for item in CATALOG}
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-hub-actor-{uuid.uuid4().hex[:6]}",
                                protocol=mqtt.MQTTv5)
        self.mqtt.connect("127.0.0.1", day.rig.broker.port)
        self.mqtt.loop_start()
        self.console = day.rig.console()
        self.orders = 0

    def run(self) -> None:
        for member in MEMBERS:
            self._card(member)
        try:
            super().run()
        finally:
            self.mqtt.loop_stop()
            self.mqtt.disconnect()

    def publish(self, kind: str, events: list[dict]) -> bool:
        """Publish on hub/{store}/{kind} at QoS 1; the broker may be restarting: retry for a while."""
        body = json.dumps(events).encode()
        for _ in range(60):
            if self.day.stop.is_set():
                return False
            try:
                info = self.mqtt.publish(hub_topic(STORE, kind), body, qos=1)
                info.wait_for_publish(5)
                if info.is_published():
                    return True
            except (RuntimeError, ValueError):
                pass
            self.day.stop.wait(1)  # the broker is away: try again
        # The broker is away for seconds (broker restart): a minute without it is no day's outage.
        self.day.checks.fail(rows.ANSWERS, f"the hub publishes on {kind} within a minute", "published",
                             "the broker took nothing for a minute")
        return False

    def step(self) -> None:
        task = self.rng.choices([self._price, self._promo, self._stock, self._order, self._card_any, self._refresh],
                                weights=[20, 15, 10, 15, 15, 8])[0]
        with self.day.downlink:
            if self.day.outages.active("second-pc"):
                # Two PCs share the store's MQTT session: a message would reach either (identity.second_pc).
                self.day.ledger.did("hub steps held while a second PC shared the store's session")
            else:
                task()
        self.day.think(self.rng, 2.0, 6.0)

    def _item(self, sku: str, **changes: Any) -> None:
        item = self.items[sku]
        item.update(changes)
        item["version"] += 1
        if item.get("promo") is None:
            item.pop("promo", None)
        if self.publish("catalog", [hub_event("retail.catalog.updated", item)]):
            self.day.ledger.did("hub catalog updates")

    def _price(self) -> None:
        sku = self.rng.choice(SKUS)
        base = float(CATALOG[SKUS.index(sku)]["price"])
        price = f"{base * self.rng.choice([0.9, 0.95, 1.0, 1.05, 1.1]):.2f}"
        promo = self.items[sku].get("promo")
        if promo and float(promo["price"]) >= float(price):
            self.items[sku]["promo"] = None
        self._item(sku, price=price)
        self.day.ledger.did("price changes")

    def _promo(self) -> None:
        sku = self.rng.choice(SKUS)
        if self.items[sku].get("promo"):
            self._item(sku, promo=None)
            self.day.ledger.did("promotions ended")
            return
        price = float(self.items[sku]["price"])
        promo: dict[str, Any] = {"price": f"{price * 0.8:.2f}", "label": self.rng.choice(["Double 11", "Soak Week"])}
        if self.rng.random() < 0.5:
            # A promotion that ends by itself soon: the agent must wake up at that moment.
            promo["ends_at"] = (datetime.now(timezone.utc) + timedelta(seconds=self.rng.uniform(10, 40))).isoformat()
        self._item(sku, promo=promo)
        self.day.ledger.did("promotions started")

    def _stock(self) -> None:
        sku = self.rng.choice(SKUS)
        if self.publish("stock", [hub_event("retail.stock.set", {"sku": sku, "qty": self.rng.randint(10, 60)})]):
            self.day.ledger.did("hub stock sets")

    def _order(self) -> None:
        self.orders += 1
        order_id = f"WEB-{self.day.seed}-{self.orders}"
        code = f"{self.rng.randint(0, 999999):06d}"
        lines = [{"sku": sku, "qty": self.rng.randint(1, 2)} for sku in self.rng.sample(SKUS, 2)]
        with self.day.ledger.lock:
            self.day.ledger.hub_orders[order_id] = code
        data = {"order_id": order_id, "pickup_code": code, "member_id": self.rng.choice(MEMBERS), "lines": lines}
        if self.publish("orders", [hub_event("retail.order.created", data)]):
            self.day.ledger.did("hub pickup orders")

    def _card(self, member: str) -> None:
        points = self.rng.randint(500, 5000)
        card = {"member_id": member, "tier": self.rng.choice(["gold", "silver"]), "tags": [], "points": points,
                "interests": self.rng.sample(SKUS, 2)}
        if self.publish("members", [hub_event(self.rng.choice(["retail.member.card", "retail.member.arrived"]), card)]):
            with self.day.ledger.lock:
                self.day.ledger.members[member] = points
            self.day.ledger.did("hub member cards")

    def _card_any(self) -> None:
        for member in self.rng.sample(MEMBERS, 5):
            self._card(member)

    def _refresh(self) -> None:
        device = self.rng.choice(["labels-ap", "labels-files"])
        try:
            r = self.console.post(f"/api/stores/{STORE}/commands", json={"device": device, "action": "refresh_labels"})
        except httpx.HTTPError:
            return  # the hub is down: its console with it
        self.day.ledger.did("refresh_labels commands" if r.status_code == 202 else f"refresh_labels {r.status_code}")


class Tags(Actor):
    """The e-paper tags: each wakes up every second or two and takes its newest picture from the AP."""

    def __init__(self, day: Day):
        super().__init__(day, "tags")

    def step(self) -> None:
        d = self.day
        if not d.outages.active("ap"):
            for spot in AP_LABELS:
                if d.rig.ap.checkin(spot.label):
                    d.ledger.did("tag pictures taken")
        d.think(self.rng, 0.5, 1.5)


GARMENTS = ("TEE-CREW-NAVY", "SHIRT-OXF-BLUE", "JKT-BOMBER-OLIVE")  # ar_mirror/products.yaml: kind top, outerwear


class MirrorScreen(Actor):
    """The try-on mirror's screen: the customer stands back (the camera's ``synthetic-body``) and now and then
    tries a garment on, with or without a lipstick; "Add to basket" puts a product in kiosk-1's basket."""

    def __init__(self, day: Day):
        super().__init__(day, "mirror-1")
        self.http = day.rig.client("mirror-1")

    def step(self) -> None:
        d = self.day
        if self.rng.random() < 0.5:
            look = [self.rng.choice(GARMENTS), *(["LIP-RED-01"] if self.rng.random() < 0.5 else [])]
            r = call(d, self.http, "PUT", "/v1/mirror/mirror-1/look", json={"skus": look})
            d.ledger.did("mirror looks with a garment" if r.status_code == 200 else f"mirror look {r.status_code}")
            seen = call(d, self.http, "GET", "/v1/mirror/mirror-1")
            if seen.status_code == 200 and seen.json().get("view") == "body":
                d.ledger.did("mirror in body view")
        if not d.outages.active("idle-kiosk-1"):
            r = call(d, self.http, "POST", "/v1/sessions/kiosk-1/basket", json={"sku": self.rng.choice(SKUS), "qty": 1})
            d.ledger.did("mirror adds to basket" if r.status_code == 201 else f"mirror add {r.status_code}")
        d.think(self.rng, 5.0, 15.0)


def actors(day: Day) -> list[Actor]:
    """Every actor of the day, not started."""
    mirror = [MirrorScreen(day)] if day.rig.mirror else []
    return [*(Kiosk(day, k) for k in KIOSKS), Associate(day), Hub(day), Tags(day), *mirror]
