"""Documents rendered for every profile, read back by the ESC/POS parser, checked for content.

Golden transcripts live in tests/fixtures/printer/<document>.<profile>.txt;
``UPDATE_GOLDEN=1 pytest tests/drivers/printer/test_documents.py`` rewrites
them (review the diff before committing it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.printer import documents
from drivers.printer.encoding import normalize
from drivers.printer.layout import qr_matrix
from drivers.printer.parser import EscPosParser, Receipt, Text
from drivers.printer.profiles import PrinterProfile, get_profile, profile_names

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "printer"
PROFILES = [get_profile(n) for n in profile_names()]
SALE_ID = "550e8400-e29b-41d4-a716-446655440000"
URL = f"https://receipts.example.com/r/{SALE_ID}"

# The body POST /v1/sales stores (edge_agent/sales.py: "amount", "created_at", extra
# keys), with what the printer driver adds: the store's name and address, the URL.
SALE = {
    "id": SALE_ID,
    "client_sale_id": "0b7e1f7c-51c6-4a4e-9d0e-0f3a3c1e2d11",
    "seq": 17,
    "created_at": "2025-03-01T14:05:00+08:00",
    "store_name": "Demo Store",
    "store_address": "1 Example Road, Shanghai",
    "lines": [
        {"sku": "MILK-1L", "name": "Organic Milk 1 L", "qty": 2, "unit_price": "12.50", "amount": "25.00"},
        # A promoted line: what the print queue adds from the catalog (edge_agent/printing.py).
        {"sku": "CHOC-70", "name": "Crème brûlée chocolate – dark 70 % cocoa", "qty": 1, "unit_price": "9.90",
         "amount": "9.90", "regular_price": "12.90", "promo": {"price": "9.90", "label": "Summer sale"}},
        {"sku": "TEA-OOL", "name": "乌龙茶 Oolong", "qty": 2, "unit_price": "15.00", "amount": "30.00",
         "regular_price": "18.00", "promo": "Tea week"},
    ],
    "promotions": [{"label": "Member discount", "amount": "-3.00"}],
    "subtotal": "64.90",
    "points_value": "5.00",
    "total": "56.90",
    "currency": "CNY",
    "payment": {"method": "card", "reference": "AUTH-778812"},
    "member_id": "M-000123456",
    "points_earned": 56,
    "points_redeemed": 500,
    "points_balance": 756,
    "receipt_url": URL,
}
RETURN = {
    "id": "7d444840-9dc0-11d1-b245-5ffdce74fad2",
    "created_at": "2025-03-02T10:30:00+08:00",
    "sale_id": SALE_ID,
    "store_name": "Demo Store",
    "lines": [{"sku": "MILK-1L", "name": "Organic Milk 1 L", "qty": 1, "unit_price": "12.50", "amount": "12.50"}],
    "total": "12.50",
    "currency": "CNY",
    "refund": {"method": "card", "reference": "RF-1029"},
    "reason": "Damaged packaging",
    "member_id": "M-000123456",
    "points_reversed": 12,
    "points_balance": 1249,
}
PICK = {
    "order_id": "ORD-20250301-0042",
    "pickup_code": "482913",
    "time": "2025-03-01T09:00:00+08:00",
    "ready_by": "2025-03-01T12:00:00+08:00",
    "store_name": "Demo Store",
    "member_id": "M-000987654",
    "lines": [
        {"sku": "MILK-1L", "name": "Organic Milk 1 L", "qty": 2, "location": "A3-02"},
        {"sku": "TEA-OOL", "name": "乌龙茶 Oolong", "qty": 1, "location": "C1-10"},
    ],
}
TEST = {"device_id": "printer-1", "store_name": "Demo Store", "time": "2025-03-01T08:00:00+08:00"}
DATA = {"sale_receipt": SALE, "return_slip": RETURN, "pick_ticket": PICK, "test_page": TEST}


def read_back(data: bytes, profile: PrinterProfile) -> list[Receipt]:
    """The documents a printer with ``profile`` would print from ``data``."""
    tables = {cp.esc_t: cp.codec for cp in profile.code_pages} or None
    parser = EscPosParser(tables)
    parser.feed(data)
    assert parser.pending == 0, "the document ends in the middle of a command"
    from drivers.printer.parser import split_documents

    return split_documents(parser.elements)


def one(kind: str, profile: PrinterProfile, data: dict | None = None, *, reprint: bool = False) -> Receipt:
    rendered = documents.render(kind, DATA[kind] if data is None else data, profile, reprint=reprint)
    docs = read_back(rendered.data, profile)
    assert len(docs) == 1, [d.transcript() for d in docs]
    return docs[0]


def printed(text: str, profile: PrinterProfile) -> str:
    return normalize(text, profile)[0]


def find_item(receipt: Receipt, name: str, amount: str) -> None:
    """The item ``name`` (maybe wrapped over lines) with ``amount`` flush right on its first line."""
    lines = receipt.lines
    for i, line in enumerate(lines):
        head = line[: -len(amount)].rstrip() if line.endswith(" " + amount) else None
        if head and name.startswith(head):
            parts = [head]
            for more in lines[i + 1:]:
                if len(" ".join(parts)) >= len(name):
                    break
                parts.append(more.strip())
            assert " ".join(parts) == name
            return
    raise AssertionError(f"no line for {name!r} with {amount!r} in:\n{receipt.text}")


def check_cut(receipt: Receipt, profile: PrinterProfile) -> None:
    if profile.cutter == "none":
        assert receipt.cuts == []
    else:
        assert receipt.cuts == [receipt.elements[-1]], "one cut, at the end"
        assert receipt.cuts[0].partial == (profile.cutter == "partial")


def check_fits(receipt: Receipt, profile: PrinterProfile) -> None:
    for e in receipt.elements:
        if isinstance(e, Text):
            width = sum(2 if profile.gb18030 and ord(c) >= 0x80 else 1 for c in e.line)
            room = profile.columns("b") if e.small else profile.columns(double_width=e.double)
            assert width <= room, f"{e.line!r} is {width} columns, the line has {room}"


@pytest.fixture(params=PROFILES, ids=lambda p: p.name)
def profile(request) -> PrinterProfile:
    return request.param


# Sale receipt ----------------------------------------------------------------------


def test_sale_receipt_content(profile):
    r = one("sale_receipt", profile)
    lines = r.lines
    assert Text("Demo Store", bold=True, double=True, align="center") in r.elements
    for line in SALE["lines"]:
        find_item(r, printed(line["name"], profile), line["amount"])
    assert "  2 x 12.50" in lines
    # Each promoted line: what was paid, the regular price, the promotion's name and the saving.
    assert lines[lines.index("  1 x 9.90 (was 12.90)") + 1] == "  * Summer sale: you save 3.00"
    assert lines[lines.index("  2 x 15.00 (was 18.00)") + 1] == "  * Tea week: you save 6.00"
    total = [e for e in r.elements if isinstance(e, Text) and e.line.startswith("TOTAL")]
    assert len(total) == 1 and total[0].bold and total[0].double
    assert re.fullmatch(r"TOTAL +CNY 56\.90", total[0].line)
    assert any(re.fullmatch(r"Subtotal +64\.90", ln) for ln in lines)
    assert any(re.fullmatch(r"Member discount +-3\.00", ln) for ln in lines)
    assert any(re.fullmatch(r"Paid with 500 points +-5\.00", ln) for ln in lines)
    # What promotions saved: the lines' 3.00 and 6.00 and the member discount, not the points.
    assert any(re.fullmatch(r"You saved +CNY 12\.00", ln) for ln in lines)
    assert any(re.fullmatch(r"Paid by +Card", ln) for ln in lines)
    assert any(re.fullmatch(r"Points redeemed +-500", ln) for ln in lines)
    assert any(re.fullmatch(r"Points earned +\+56", ln) for ln in lines)
    assert any(re.fullmatch(r"Points balance +756", ln) for ln in lines)
    assert any(re.fullmatch(r"Member +\*{4}3456", ln) for ln in lines)
    assert "M-000123456" not in r.text  # the member id is masked on paper
    assert SALE_ID in r.text
    check_cut(r, profile)
    check_fits(r, profile)


def test_sale_receipt_qr_is_the_e_receipt_url(profile):
    r = one("sale_receipt", profile)
    if profile.qr == "native":
        assert [q.data for q in r.qr_codes] == [URL]
    else:
        # Printed as an image: read the modules back and compare with the code for the URL.
        assert r.qr_codes == []
        (image,) = r.images
        assert image.width <= profile.dots_per_line
        assert image.qr_modules() == qr_matrix(URL)


def test_sale_receipt_barcode_is_the_sale_id(profile):
    r = one("sale_receipt", profile)
    if profile.barcode_code128:
        (barcode,) = r.barcodes
        assert barcode.kind == "CODE128"
        assert len(barcode.data) == 40 and barcode.data.isdigit()
        assert documents.sale_id_from_barcode(barcode.data) == SALE_ID
    else:
        assert r.barcodes == []


def test_chinese_name_round_trips_on_gb18030_and_is_replaced_elsewhere(profile):
    rendered = documents.render("sale_receipt", SALE, profile)
    r = read_back(rendered.data, profile)[0]
    if profile.gb18030:
        find_item(r, "乌龙茶 Oolong", "30.00")
        assert rendered.replaced == 0
    else:
        find_item(r, "??? Oolong", "30.00")
        assert rendered.replaced == 3  # one "?" per character, the rest of the line intact


@pytest.mark.parametrize("kind", sorted(DATA))
def test_reprint_banner_only_on_reprints(kind, profile):
    first = one(kind, profile)
    again = one(kind, profile, reprint=True)
    assert "REPRINT" not in first.text
    banner = again.elements[0]
    assert isinstance(banner, Text) and banner.line == "*** REPRINT ***" and banner.invert and banner.double
    assert again.lines[-1] == "REPRINT - a copy, not a new sale"
    # Otherwise the same receipt.
    assert [ln for ln in again.lines if "REPRINT" not in ln][1:] == first.lines


def test_sale_without_member_url_or_promotions():
    lines = [{k: v for k, v in ln.items() if k not in ("promo", "regular_price")} for ln in SALE["lines"]]
    sale = {**SALE, "lines": lines, "member_id": None, "points_earned": 0, "points_redeemed": 0,
            "points_value": None, "points_balance": None, "receipt_url": None, "promotions": []}
    r = one("sale_receipt", get_profile("epson-tm-t88"), sale)
    assert "Member" not in r.text and "Points" not in r.text and "points" not in r.text
    assert "Subtotal" not in r.text and "save" not in r.text and "was" not in r.text
    assert r.qr_codes == [] and "e-receipt" not in r.text


def test_a_line_at_or_above_its_regular_price_shows_no_saving():
    line = {"sku": "X", "name": "Plain", "qty": 1, "unit_price": "5.00", "amount": "5.00", "regular_price": "5.00"}
    r = one("sale_receipt", get_profile("epson-tm-t88"), {**SALE, "lines": [line], "promotions": []})
    assert "save" not in r.text and "(was" not in r.text


def test_a_job_queued_with_points_as_a_promotion_prints_them_once():
    # The print queue used to pass the redemption as a promotion; such a job may wait in a queue.
    legacy = {**SALE, "promotions": [{"label": "Points redeemed (500)", "amount": "-5.00"}]}
    r = one("sale_receipt", get_profile("epson-tm-t88"), legacy)
    assert "Points redeemed (500)" not in r.text
    assert sum(1 for ln in r.lines if ln.startswith("Paid with 500 points")) == 1


def test_qr_falls_back_to_the_url_as_text_without_qr_support():
    profile = get_profile("epson-tm-t88").model_copy(update={"qr": "none"})
    r = one("sale_receipt", profile)
    assert r.qr_codes == [] and r.images == []
    assert URL in "".join(r.lines)


def test_hostile_field_values_stay_text():
    sale = {**SALE, "store_name": "Evil\x1dV\x00Store\x1b@", "lines": [
        {"sku": "X", "name": "Cut\x1dV\x01 here\n\x10\x04\x01", "qty": 1, "unit_price": "1.00", "amount": "1.00"}]}
    profile = get_profile("epson-tm-t88")
    rendered = documents.render("sale_receipt", sale, profile)
    parser = EscPosParser()
    assert parser.feed(rendered.data) == b""  # no status query slipped through
    r = read_back(rendered.data, profile)
    assert len(r) == 1 and len(r[0].cuts) == 1
    assert "Evil?V?Store?@" in r[0].text
    find_item(r[0], "Cut?V? here ???", "1.00")
    assert rendered.replaced == 8


def test_bad_data_is_a_validation_error():
    with pytest.raises(ValidationError):
        documents.sale_receipt({**SALE, "total": "lots"}, "epson-tm-t88")
    with pytest.raises(ValidationError):
        documents.sale_receipt({k: v for k, v in SALE.items() if k != "lines"}, "epson-tm-t88")


def test_models_are_accepted_as_well_as_mappings():
    model = documents.SaleReceipt.model_validate(SALE)
    assert documents.sale_receipt(model, "epson-tm-t88") == documents.sale_receipt(SALE, "epson-tm-t88")


# The other documents ---------------------------------------------------------------


def test_return_slip_content(profile):
    r = one("return_slip", profile)
    assert "RETURN / REFUND" in r.lines
    find_item(r, "Organic Milk 1 L", "12.50")
    assert any(re.fullmatch(r"REFUND +CNY 12\.50", ln) for ln in r.lines)
    assert any(re.fullmatch(r"Refunded to +Card", ln) for ln in r.lines)
    assert any(re.fullmatch(r"Points reversed +-12", ln) for ln in r.lines)
    assert "Reason: Damaged packaging" in r.lines
    assert SALE_ID in r.text and "Customer signature:" in r.lines
    if profile.barcode_code128:
        assert [documents.sale_id_from_barcode(b.data) for b in r.barcodes] == [RETURN["id"]]
    check_cut(r, profile)
    check_fits(r, profile)


def test_a_return_slip_says_what_points_paid_and_gives_back(profile):
    # A sale paid partly with points: the refund is the money share, the rest comes back as points.
    slip = {**RETURN, "lines": [{**RETURN["lines"][0], "sku": "LIP", "unit_price": "159.00", "amount": "159.00"}],
            "total": "154.68", "points_reversed": 154, "points_restored": 432}
    r = one("return_slip", profile, slip)
    order = [r"Subtotal +159\.00", r"Paid with 432 points +-4\.32", r"REFUND( +CNY 154\.68)?",
             r"Points given back +\+432"]
    at = [next(i for i, ln in enumerate(r.lines) if re.fullmatch(p, ln)) for p in order]
    assert at == sorted(at) and "CNY 154.68" in r.text, r.text
    check_fits(r, profile)
    # Without points given back, or without store prices, there is nothing to explain.
    assert "Paid with" not in one("return_slip", profile).text


def test_a_pending_online_return_slip_has_no_store_prices(profile):
    online = {**RETURN, "sale_id": None, "order_id": "WEB-77", "total": None, "state": "pending",
              "refund": {"method": "original"}, "points_reversed": 0, "points_restored": 0,
              "lines": [{"sku": "MILK-1L", "name": "Organic Milk 1 L", "qty": 2, "unit_price": None, "amount": None}]}
    r = one("return_slip", profile, online)
    assert any(re.fullmatch(r"Organic Milk 1 L +x 2", ln) for ln in r.lines)
    assert any(re.fullmatch(r"REFUND +to the original payment", ln) for ln in r.lines)
    assert "PENDING:" in r.text and "WEB-77" in r.text
    assert any(re.fullmatch(r"Refunded to +Original payment", ln) for ln in r.lines)
    check_fits(r, profile)


def test_pick_ticket_content(profile):
    r = one("pick_ticket", profile)
    assert "482913" not in r.text  # the customer's pickup code is hers: a ticket goes through the back room
    assert any(re.fullmatch(r"\[ \] 2 x MILK-1L +A3-02", ln) for ln in r.lines)
    assert any(re.fullmatch(r"\[ \] 1 x TEA-OOL +C1-10", ln) for ln in r.lines)
    assert f"    {printed('乌龙茶 Oolong', profile)}" in r.lines
    assert any(re.fullmatch(r"Items +3", ln) for ln in r.lines)
    if profile.barcode_code128:
        assert [b.data for b in r.barcodes] == [PICK["order_id"]]
    check_cut(r, profile)
    check_fits(r, profile)


def test_test_page_content(profile):
    r = one("test_page", profile)
    assert any(re.fullmatch(rf"Profile +{profile.name}", ln) for ln in r.lines)
    ruler = "".join(str(i % 10) for i in range(1, profile.columns() + 1))
    assert ruler in r.lines
    assert "Latin: ÀÉÎÕÜ àéîõü ñ ç ß €" in r.lines or profile.gb18030
    if profile.gb18030:
        assert "中文：欢迎光临，谢谢惠顾" in r.lines
    if profile.qr == "native":
        assert [q.data for q in r.qr_codes] == ["TEST printer-1"]
    elif profile.qr == "image":
        assert r.images[0].qr_modules() == qr_matrix("TEST printer-1")
    check_cut(r, profile)
    check_fits(r, profile)


def test_pick_ticket_for_an_alphanumeric_order_uses_code_set_b():
    r = one("pick_ticket", get_profile("epson-tm-t20"), {**PICK, "order_id": "AB-{7}"})
    assert [b.data for b in r.barcodes] == ["AB-{7}"]


# Golden transcripts -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(DATA))
def test_golden(kind, profile):
    got = one(kind, profile).transcript()
    path = GOLDEN / f"{kind}.{profile.name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1 to write it"
    assert got == path.read_text(encoding="utf-8")
