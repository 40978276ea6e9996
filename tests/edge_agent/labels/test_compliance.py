"""Compliance and confirmation rules: pure functions on label records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from drivers.shelf_label.driver import Snapshot, TagState
from edge_agent.catalog import Product
from edge_agent.labels import watch
from edge_agent.labels.compliance import assess, entries
from edge_agent.labels.table import COLUMNS, Label, from_row, params

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
MAC = "0000021D4E83B4A1"


def label(**fields) -> Label:
    base = dict(mac=MAC, device="labels-1", sku="MILK", model="m2-2.9-bwr", source="api", bound_at=T0)
    return Label(**(base | fields))


def shown(price: str = "12.80", **fields) -> Label:
    """A label confirmed showing MILK at ``price``."""
    p = Decimal(price)
    base = dict(desired_hash="h1", desired_price=p, checkout_price=p, pushed_hash="h1", pushed_price=p,
                pushed_sku="MILK", pushed_at=T0, shown_hash="h1", shown_price=p, shown_sku="MILK",
                shown_since=T0, confirmed_at=T0 + timedelta(seconds=5), shown_token="ap1")
    return label(**(base | fields))


def test_confirmed_at_the_checkout_price_is_compliant():
    assert assess(shown(), Decimal("12.80")) is None


@pytest.mark.parametrize("lb, checkout, words", [
    (label(), Decimal("12.80"), "not planned yet"),
    (label(desired_hash="h1", pushed_hash="h1", pushed_at=T0), Decimal("12.80"), "waiting for the label"),
    (label(desired_hash="h1", last_error="ApHttpError: HTTP 500"), Decimal("12.80"), "the last push failed"),
    (shown(), Decimal("9.90"), "an update is queued"),
    (shown(last_error="DeviceTimeout: no answer"), Decimal("9.90"), "the update failed: DeviceTimeout"),
    (shown(desired_price=None, desired_note="price 0 is not above zero"), Decimal("0"), "cannot show the price"),
    (shown(sku="TEA"), Decimal("5.00"), "shows MILK instead of TEA"),
    (shown(sku=None), None, "bound to no product, but still shows MILK"),
])
def test_why_a_label_is_not_compliant(lb, checkout, words):
    reason = assess(lb, checkout)
    assert reason is not None and words in reason


def test_a_new_price_pushed_but_not_confirmed_is_not_compliant_yet():
    lb = shown()
    lb.pushed_hash, lb.pushed_price, lb.pushed_at = "h2", Decimal("9.90"), T0 + timedelta(minutes=1)
    assert "waits for the label" in assess(lb, Decimal("9.90"))
    # And while an upload with another price is on its way, even the right price is uncertain.
    assert "on its way" in assess(lb, Decimal("12.80"))
    # An upload of the same price (a stock count changed) leaves it compliant.
    lb.pushed_price = Decimal("12.80")
    assert assess(lb, Decimal("12.80")) is None


def test_a_notice_for_what_the_checkout_does_not_sell_is_compliant():
    lb = label(sku="GONE", desired_hash="n", shown_hash="n", shown_sku="GONE", confirmed_at=T0, pushed_hash="n",
               pushed_sku="GONE", desired_note="SKU GONE is not in the catalog")
    assert assess(lb, None) is None
    unbound = label(sku=None, shown_hash="n", pushed_hash="n", confirmed_at=T0)
    assert assess(unbound, None) is None


def test_entries_use_the_live_checkout_price_and_sort_by_since():
    promo_product = Product(sku="MILK", barcodes=[], name="Milk", price=Decimal("12.80"), currency="CNY",
                            promo={"price": "9.90", "starts_at": T0.isoformat()}, stock_store=0, stock_online=0,
                            rating=None, reviews=0, version=1)
    a, b = shown(wrong_since=T0 + timedelta(minutes=2)), shown(wrong_since=T0 + timedelta(minutes=1))
    b.mac = "0000021D4E83B4A2"
    found = entries([a, b], {"MILK": promo_product}, T0 + timedelta(hours=1), {"labels-1": "label device is offline"})
    assert [e.mac for e in found] == [b.mac, a.mac]
    assert found[0].checkout_price == Decimal("9.90") and found[0].shown_price == Decimal("12.80")
    assert found[0].reason.endswith("(label device is offline)")
    assert entries([a], {"MILK": promo_product}, T0 - timedelta(hours=1)) == []


def test_a_label_row_round_trips_through_the_table():
    lb = shown(last_error="x", wrong_since=T0)
    assert from_row(params(lb)) == lb and len(params(lb)) == len(COLUMNS)


# Confirmation (watch.py) ------------------------------------------------------

def pushed(at: datetime = T0, token: str | None = "old") -> Label:
    lb = shown()
    lb.pushed_hash, lb.pushed_price, lb.pushed_at, lb.push_token = "h2", Decimal("9.90"), at, token
    return lb


def tag(**fields) -> TagState:
    return TagState(MAC, **({"known": True, "token": "old", "pending": 0, "last_seen": T0} | fields))


@pytest.mark.parametrize("state, polled, confirmed", [
    (tag(token="new"), T0 + timedelta(seconds=1), True),  # the tag took new data
    (tag(token="new"), T0 - timedelta(seconds=1), False),  # a poll that began before the push
    (tag(token="new", pending=1), T0 + timedelta(seconds=1), False),  # more queued
    (tag(), T0 + timedelta(seconds=1), False),  # nothing happened yet
    (tag(last_seen=T0 + timedelta(seconds=2)), T0 + timedelta(seconds=3), True),  # same picture, checked in
    (tag(known=False, token="new"), T0 + timedelta(seconds=1), False),
])
def test_what_confirms_a_push(state, polled, confirmed):
    assert watch.confirms(pushed(), state, polled) is confirmed


def test_a_poll_confirms_and_a_foreign_picture_is_noticed():
    labels = {MAC: pushed()}
    out = watch.apply(Snapshot("labels-1", T0 + timedelta(seconds=1), {MAC: tag(token="new")}), labels, T0)
    assert out.confirmed == [MAC] and labels[MAC].shown_price == Decimal("9.90")
    assert labels[MAC].shown_token == "new"
    # Someone puts another picture on the tag through the AP's web page.
    later = T0 + timedelta(minutes=1)
    out = watch.apply(Snapshot("labels-1", later, {MAC: tag(token="other")}), labels, later)
    assert out.drifted == [MAC] and labels[MAC].confirmed_at is None and labels[MAC].pushed_hash is None
    assert "did not send" in labels[MAC].last_error
    # A poll of another device says nothing about this label.
    labels[MAC] = pushed()
    assert watch.apply(Snapshot("labels-2", later, {MAC: tag(token="new")}), labels, later).confirmed == []


def test_a_poll_begun_before_a_push_that_puts_back_the_confirmed_picture_is_not_drift():
    """Price 12.80 confirmed (h1); 9.90 pushed (h2) and taken by the tag; a poll begins and reads it;
    the price goes back to 12.80 and h1 is pushed before the tag's h2 was confirmed, so the label is
    not outstanding; that poll, looked at after the push returned, says nothing about h1."""
    lb = pushed(at=T0 + timedelta(seconds=10), token="ap1")  # h2 on its way; the tag shows ap1
    polled = T0 + timedelta(seconds=13)  # the tag took h2 at +12: the poll will read "ap2"
    lb.pushed_hash, lb.pushed_price, lb.pushed_at = "h1", Decimal("12.80"), T0 + timedelta(seconds=14)
    assert not lb.outstanding
    labels = {MAC: lb}
    out = watch.apply(Snapshot("labels-1", polled, {MAC: tag(token="ap2")}), labels, T0 + timedelta(seconds=15))
    assert out.drifted == [] and lb.shown_token == "ap1" and lb.confirmed_at is not None
    # A poll begun after the push: h1 queued again at the AP, then shown again.
    later = T0 + timedelta(seconds=16)
    assert watch.apply(Snapshot("labels-1", later, {MAC: tag(token="ap2", pending=1)}), labels, later).drifted == []
    assert watch.apply(Snapshot("labels-1", later, {MAC: tag(token="ap1")}), labels, later).drifted == []
    # And a picture nobody here sent, polled after the push, is drift.
    assert watch.apply(Snapshot("labels-1", later, {MAC: tag(token="web")}), labels, later).drifted == [MAC]


def test_a_label_being_pushed_is_left_for_a_later_poll():
    """The back end may show a push's picture before the push returns; the service passes the labels
    being pushed, and a poll looked at meanwhile neither confirms nor finds drift in them."""
    later = T0 + timedelta(minutes=1)
    snap = Snapshot("labels-1", later, {MAC: tag(token="new")})
    labels = {MAC: shown()}
    out = watch.apply(snap, labels, later, pushing={MAC})
    assert out.drifted == out.confirmed == [] and labels[MAC].shown_token == "ap1"
    assert watch.apply(snap, labels, later).drifted == [MAC]  # not being pushed: someone else's picture
    labels = {MAC: pushed()}
    assert watch.apply(snap, labels, later, pushing={MAC}).confirmed == []
    assert watch.apply(snap, labels, later).confirmed == [MAC]


def test_staleness_and_battery_thresholds():
    lb = shown()
    assert watch.is_stale(lb, tag(last_seen=T0), T0 + timedelta(seconds=61), 60)
    assert not watch.is_stale(lb, tag(last_seen=T0), T0 + timedelta(seconds=59), 60)
    assert watch.is_stale(lb, tag(known=False, last_seen=None), T0 + timedelta(seconds=61), 60)  # since bound
    assert watch.battery_low(tag(battery_mv=2550), 2600, alerted=False)
    assert watch.battery_low(tag(battery_mv=2650), 2600, alerted=True)
    assert not watch.battery_low(tag(battery_mv=2650), 2600, alerted=False)
    assert watch.battery_low(tag(battery_mv=0), 2600, alerted=False) is None
