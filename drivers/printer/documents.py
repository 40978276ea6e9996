"""The documents a store prints, each a template (a list of blocks) fed with data. No I/O.

    sale_receipt   store, lines (a promoted one with its promotion, regular price and
                   saving), subtotal, promotions and points paid, total, what the
                   promotions saved, payment, member points, a QR code of the
                   e-receipt URL, the sale id as a CODE128 barcode
    return_slip    a refund: lines returned, what of them points paid (given back as
                   points), refund total and method, signature line
    pick_ticket    a pickup order to pick: big pickup code, lines with check boxes
    test_page      what the printer can do: columns, styles, characters, QR, barcode

Each takes its data as a pydantic model or a plain mapping (the sale body of
``POST /v1/sales`` as stored, plus the store's name and the e-receipt URL,
validates as ``SaleReceipt``), a ``PrinterProfile``, and ``reprint=True`` to
mark a copy of a job that may have printed before. ``render`` does the same
by document kind and also says how many characters came out as "?": a print
queue can store (kind, data) and render again for a reprint.

The sale id is a UUID: its barcode carries it as 40 digits (CODE128 code
set C, see layout.UUID_DIGITS for why); ``sale_id_from_barcode`` turns a
scan back into the id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from drivers.printer.layout import Page, barcode_text
from drivers.printer.models import (
    DocumentData,
    Line,
    Payment,
    PickLine,
    PickTicket,
    Promotion,
    ReturnSlip,
    SaleReceipt,
    StoreInfo,
    TestPage,
)
from drivers.printer.profiles import PrinterProfile, get_profile

__all__ = [
    "render", "sale_receipt", "return_slip", "pick_ticket", "test_page", "sale_id_from_barcode",
    "Rendered", "DocumentKind", "LAYOUTS", "LABELS", "MODELS",
    # The data models, from models.py.
    "DocumentData", "SaleReceipt", "ReturnSlip", "PickTicket", "TestPage", "Line", "PickLine", "Payment",
    "Promotion", "StoreInfo",
]

# Printed words, in one place: a store in another language swaps this table.
LABELS: dict[str, str] = {
    "sale": "Sale",
    "time": "Time",
    "subtotal": "Subtotal",
    "total": "TOTAL",
    "promotion": "Promotion",
    "was": "was",
    "you_save": "you save",
    "saved": "You saved",
    "points_paid": "Paid with {points} points",
    "payment": "Paid by",
    "reference": "Reference",
    "member": "Member",
    "points_earned": "Points earned",
    "points_redeemed": "Points redeemed",
    "points_balance": "Points balance",
    "points_reversed": "Points reversed",
    "points_restored": "Points given back",
    "e_receipt": "Your e-receipt:",
    "thanks": "Thank you for shopping with us!",
    "reprint": "*** REPRINT ***",
    "reprint_footer": "REPRINT - a copy, not a new sale",
    "return_title": "RETURN / REFUND",
    "return": "Return",
    "original_sale": "Sale",  # "Original sale" and a sale id do not fit one 80 mm line
    "order": "Order",
    "refund_total": "REFUND",
    "refund_method": "Refunded to",
    "refund_by_hub": "to the original payment",
    "pending": "PENDING: the online store checks this return",
    "reason": "Reason",
    "signature": "Customer signature:",
    "pick_title": "PICK TICKET",
    "ready_by": "Ready by",
    "items": "Items",
    "picked_by": "Picked by:",
    "test_title": "PRINTER TEST PAGE",
    "profile": "Profile",
    "device": "Device",
    "store": "Store",
}
PAYMENT_METHODS = {"cash": "Cash", "card": "Card", "qr": "QR payment", "points": "Points",
                   "original": "Original payment"}

DocumentKind = Literal["sale_receipt", "return_slip", "pick_ticket", "test_page"]


# Rendering ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A document's bytes, and how many characters the printer could not print (sent as "?")."""

    data: bytes
    replaced: int


@dataclass
class _Ctx:
    page: Page
    data: Any
    reprint: bool


Block = Callable[[_Ctx], None]


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _qty(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else f"{value.normalize():f}"


def _when(value: datetime) -> str:
    # Printed as given: the caller hands the time in the store's timezone.
    return value.strftime("%Y-%m-%d %H:%M")


def _masked(member_id: str) -> str:
    """A member id on paper: only its last four characters."""
    return "*" * 4 + member_id[-4:] if len(member_id) > 4 else "*" * 4


# Blocks shared by every document.

def _reprint(c: _Ctx) -> None:
    if c.reprint:
        c.page.text(LABELS["reprint"], bold=True, double=True, align="center", invert=True)
        c.page.blank()


def _reprint_footer(c: _Ctx) -> None:
    if c.reprint:
        c.page.text(LABELS["reprint_footer"], bold=True, align="center")


def _store(c: _Ctx) -> None:
    if c.data.store_name:
        c.page.text(c.data.store_name, bold=True, double=True, align="center")
    if c.data.store_address:
        c.page.text(c.data.store_address, align="center")


def _rule(c: _Ctx) -> None:
    c.page.rule()


def _cut(c: _Ctx) -> None:
    c.page.cut()


def _line(c: _Ctx, line: Line) -> None:
    c.page.pair(line.name or line.sku, _money(line.line_total))
    saving = line.saving
    if saving:
        # The line total is what was paid; the regular price and the saving explain it, so the
        # saving is worded, not a negative amount a shopper would take off the total again.
        assert line.regular_price is not None
        c.page.text(f"  {_qty(line.qty)} x {_money(line.unit_price)} ({LABELS['was']} {_money(line.regular_price)})")
        c.page.text(f"  * {line.promo or LABELS['promotion']}: {LABELS['you_save']} {_money(saving)}")
        return
    if line.qty != 1:
        c.page.text(f"  {_qty(line.qty)} x {_money(line.unit_price)}")
    if line.promo:
        c.page.text(f"  * {line.promo}")


def _lines(c: _Ctx) -> None:
    for line in c.data.lines:
        _line(c, line)


def _points(c: _Ctx, earned: int, redeemed: int, reversed_: int, balance: int | None, restored: int = 0) -> None:
    if not c.data.member_id:
        return
    c.page.pair(LABELS["member"], _masked(c.data.member_id))
    if earned:
        c.page.pair(LABELS["points_earned"], f"+{earned}")
    if redeemed:
        c.page.pair(LABELS["points_redeemed"], f"-{redeemed}")
    if reversed_:
        c.page.pair(LABELS["points_reversed"], f"-{reversed_}")
    if restored:
        c.page.pair(LABELS["points_restored"], f"+{restored}")
    if balance is not None:
        c.page.pair(LABELS["points_balance"], str(balance))


def _code_below(c: _Ctx, text: str) -> None:
    c.page.blank()
    if c.page.barcode(text):
        c.page.blank()


# Sale receipt.

def _sale_meta(c: _Ctx) -> None:
    c.page.pair(LABELS["sale"], c.data.id)
    c.page.pair(LABELS["time"], _when(c.data.time))


def _sale_promotions(c: _Ctx) -> None:
    d = c.data
    if not d.promotions and not d.points_value:
        return
    c.page.pair(LABELS["subtotal"], _money(sum((ln.line_total for ln in d.lines), Decimal(0))))
    for promo in d.promotions:
        c.page.pair(promo.label, _money(promo.amount))
    if d.points_value:
        c.page.pair(LABELS["points_paid"].format(points=d.points_redeemed), f"-{_money(d.points_value)}")


def _sale_total(c: _Ctx) -> None:
    c.page.pair(LABELS["total"], f"{c.data.currency} {_money(c.data.total)}", bold=True, double=True)


def _sale_saving(c: _Ctx) -> None:
    saving = c.data.saving
    if saving > 0:
        c.page.pair(LABELS["saved"], f"{c.data.currency} {_money(saving)}", bold=True)


def _payment(c: _Ctx, label: str, payment: Payment) -> None:
    c.page.pair(label, PAYMENT_METHODS.get(payment.method, payment.method))
    if payment.reference:
        c.page.pair(LABELS["reference"], payment.reference)


def _sale_payment(c: _Ctx) -> None:
    _payment(c, LABELS["payment"], c.data.payment)


def _sale_points(c: _Ctx) -> None:
    d = c.data
    _points(c, d.points_earned, d.points_redeemed, 0, d.points_balance)


def _e_receipt(c: _Ctx) -> None:
    url = c.data.receipt_url
    if not url:
        return
    c.page.blank()
    c.page.text(LABELS["e_receipt"], align="center")
    if not c.page.qr(url):
        c.page.text(url, align="center")


def _sale_code(c: _Ctx) -> None:
    _code_below(c, c.data.id)


def _thanks(c: _Ctx) -> None:
    c.page.text(LABELS["thanks"], align="center")


# Return slip.

def _return_title(c: _Ctx) -> None:
    c.page.text(LABELS["return_title"], bold=True, double=True, align="center")


def _return_meta(c: _Ctx) -> None:
    d = c.data
    c.page.pair(LABELS["return"], d.id)
    if d.sale_id:
        c.page.pair(LABELS["original_sale"], d.sale_id)
    if d.order_id:
        c.page.pair(LABELS["order"], d.order_id)
    c.page.pair(LABELS["time"], _when(d.time))


def _return_lines(c: _Ctx) -> None:
    for line in c.data.lines:
        if line.line_total is None or line.unit_price is None:
            c.page.pair(line.name or line.sku, f"x {_qty(line.qty)}")  # an online order's line: no store price
        else:
            _line(c, line)


def _refund_points(c: _Ctx) -> None:
    """What of the returned lines' price was paid with points: given back as points, not money."""
    d = c.data
    if d.total is None or not d.points_restored or any(ln.line_total is None for ln in d.lines):
        return
    lines = sum((ln.line_total for ln in d.lines), Decimal(0))
    if lines > d.total:
        c.page.pair(LABELS["subtotal"], _money(lines))
        c.page.pair(LABELS["points_paid"].format(points=d.points_restored), f"-{_money(lines - d.total)}")


def _refund_total(c: _Ctx) -> None:
    if c.data.total is None:
        c.page.pair(LABELS["refund_total"], LABELS["refund_by_hub"], bold=True)
    else:
        c.page.pair(LABELS["refund_total"], f"{c.data.currency} {_money(c.data.total)}", bold=True, double=True)
    if c.data.state == "pending":
        c.page.text(LABELS["pending"], bold=True)


def _refund_payment(c: _Ctx) -> None:
    _payment(c, LABELS["refund_method"], c.data.refund)


def _return_points(c: _Ctx) -> None:
    _points(c, 0, 0, c.data.points_reversed, c.data.points_balance, c.data.points_restored)


def _return_reason(c: _Ctx) -> None:
    if c.data.reason:
        c.page.text(f"{LABELS['reason']}: {c.data.reason}")


def _signature(c: _Ctx) -> None:
    c.page.blank()
    c.page.text(LABELS["signature"])
    c.page.blank(2)
    c.page.rule("_")


def _return_code(c: _Ctx) -> None:
    _code_below(c, c.data.id)


# Pick ticket.

def _pick_title(c: _Ctx) -> None:
    c.page.text(LABELS["pick_title"], bold=True, align="center")
    if c.data.store_name:
        c.page.text(c.data.store_name, align="center")


def _pick_meta(c: _Ctx) -> None:
    d = c.data
    c.page.pair(LABELS["order"], d.order_id)
    c.page.pair(LABELS["time"], _when(d.time))
    if d.ready_by:
        c.page.pair(LABELS["ready_by"], _when(d.ready_by), bold=True)
    if d.member_id:
        c.page.pair(LABELS["member"], _masked(d.member_id))
    if d.note:
        c.page.text(d.note)


def _pick_lines(c: _Ctx) -> None:
    for line in c.data.lines:
        c.page.pair(f"[ ] {line.qty} x {line.sku}", line.location or "")
        if line.name:
            c.page.text(f"    {line.name}")


def _pick_count(c: _Ctx) -> None:
    c.page.pair(LABELS["items"], str(sum(ln.qty for ln in c.data.lines)), bold=True)


def _pick_code(c: _Ctx) -> None:
    # The order's number, never its pickup code: that is the customer's proof at collection, and a
    # ticket travels with the goods through the back room.
    _code_below(c, c.data.order_id)


def _picked_by(c: _Ctx) -> None:
    c.page.text(LABELS["picked_by"])
    c.page.blank()
    c.page.rule("_")


# Test page.

def _test_title(c: _Ctx) -> None:
    c.page.text(LABELS["test_title"], bold=True, double=True, align="center")


def _test_meta(c: _Ctx) -> None:
    p, d = c.page.profile, c.data
    c.page.pair(LABELS["profile"], p.name)
    if d.device_id:
        c.page.pair(LABELS["device"], d.device_id)
    if d.store_name:
        c.page.pair(LABELS["store"], d.store_name)
    c.page.pair(LABELS["time"], _when(d.time))
    c.page.text(f"{p.paper_width_mm:g} mm, {p.dots_per_line} dots, {p.chars_per_line.a}/{p.chars_per_line.b} columns")
    c.page.text(f"cutter {p.cutter}, QR {p.qr}, CODE128 {'yes' if p.barcode_code128 else 'no'}")


def _test_ruler(c: _Ctx) -> None:
    c.page.text("".join(str(i % 10) for i in range(1, c.page.columns() + 1)))


def _test_styles(c: _Ctx) -> None:
    c.page.text("Normal text")
    c.page.text("Bold text", bold=True)
    c.page.text("Double size", double=True)
    c.page.text("Centered", align="center")
    c.page.text("Right", align="right")
    c.page.text("Reverse", invert=True)


def _test_charset(c: _Ctx) -> None:
    profile = c.page.profile
    c.page.text("Latin: ÀÉÎÕÜ àéîõü ñ ç ß €")
    if profile.gb18030:
        c.page.text("中文：欢迎光临，谢谢惠顾")
    if any(cp.codec in ("cp866", "cp855", "cp1251") for cp in profile.code_pages) or profile.gb18030:
        c.page.text("Кириллица: Привет")


def _test_codes(c: _Ctx) -> None:
    c.page.blank()
    if not c.page.qr(f"TEST {c.data.device_id or c.page.profile.name}"):
        c.page.text("(no QR code on this printer)")
    c.page.blank()
    if not c.page.barcode("0123456789"):
        c.page.text("(no CODE128 on this printer)")
    c.page.blank()


_BLOCKS: dict[str, Block] = {
    "reprint": _reprint, "reprint_footer": _reprint_footer, "store": _store, "rule": _rule, "cut": _cut,
    "sale_meta": _sale_meta, "lines": _lines, "sale_promotions": _sale_promotions, "sale_total": _sale_total,
    "sale_saving": _sale_saving, "sale_payment": _sale_payment, "sale_points": _sale_points, "e_receipt": _e_receipt,
    "sale_code": _sale_code, "thanks": _thanks,
    "return_title": _return_title, "return_meta": _return_meta, "refund_total": _refund_total,
    "return_lines": _return_lines, "refund_points": _refund_points,
    "refund_payment": _refund_payment, "return_points": _return_points, "return_reason": _return_reason,
    "signature": _signature, "return_code": _return_code,
    "pick_title": _pick_title, "pick_meta": _pick_meta, "pick_lines": _pick_lines,
    "pick_count": _pick_count, "pick_code": _pick_code, "picked_by": _picked_by,
    "test_title": _test_title, "test_meta": _test_meta, "test_ruler": _test_ruler,
    "test_styles": _test_styles, "test_charset": _test_charset, "test_codes": _test_codes,
}

# The templates: each document is its blocks, top to bottom.
LAYOUTS: dict[DocumentKind, tuple[str, ...]] = {
    "sale_receipt": (
        "reprint", "store", "rule", "sale_meta", "rule", "lines", "rule", "sale_promotions", "sale_total",
        "sale_saving", "sale_payment", "sale_points", "rule", "e_receipt", "sale_code", "thanks", "reprint_footer", "cut",
    ),
    "return_slip": (
        "reprint", "store", "return_title", "rule", "return_meta", "rule", "return_lines", "rule", "refund_points",
        "refund_total",
        "refund_payment", "return_points", "return_reason", "signature", "return_code", "reprint_footer", "cut",
    ),
    "pick_ticket": (
        "reprint", "pick_title", "rule", "pick_meta", "rule", "pick_lines", "rule", "pick_count",
        "pick_code", "picked_by", "reprint_footer", "cut",
    ),
    "test_page": (
        "reprint", "test_title", "rule", "test_meta", "rule", "test_ruler", "test_styles", "test_charset", "rule",
        "test_codes", "reprint_footer", "cut",
    ),
}
MODELS: dict[DocumentKind, type[DocumentData]] = {
    "sale_receipt": SaleReceipt, "return_slip": ReturnSlip, "pick_ticket": PickTicket, "test_page": TestPage,
}

M = TypeVar("M", bound=DocumentData)


def _validated(model: type[M], data: M | Mapping[str, Any]) -> M:
    return data if isinstance(data, model) else model.model_validate(data)


def render(kind: DocumentKind, data: DocumentData | Mapping[str, Any], profile: PrinterProfile | str, *,
           reprint: bool = False) -> Rendered:
    """Bytes of document ``kind`` for ``data`` on ``profile``; pydantic.ValidationError on bad data."""
    model = MODELS[kind]
    prof = get_profile(profile) if isinstance(profile, str) else profile
    ctx = _Ctx(Page(prof), _validated(model, data), reprint)
    for name in LAYOUTS[kind]:
        _BLOCKS[name](ctx)
    return Rendered(ctx.page.output, ctx.page.replaced)


def sale_receipt(data: SaleReceipt | Mapping[str, Any], profile: PrinterProfile | str, *,
                 reprint: bool = False) -> bytes:
    """The sale receipt for ``data`` on ``profile``."""
    return render("sale_receipt", data, profile, reprint=reprint).data


def return_slip(data: ReturnSlip | Mapping[str, Any], profile: PrinterProfile | str, *,
                reprint: bool = False) -> bytes:
    """The return slip for ``data`` on ``profile``."""
    return render("return_slip", data, profile, reprint=reprint).data


def pick_ticket(data: PickTicket | Mapping[str, Any], profile: PrinterProfile | str, *,
                reprint: bool = False) -> bytes:
    """The pick ticket for ``data`` on ``profile``."""
    return render("pick_ticket", data, profile, reprint=reprint).data


def test_page(data: TestPage | Mapping[str, Any], profile: PrinterProfile | str, *,
              reprint: bool = False) -> bytes:
    """The test page for ``data`` on ``profile``."""
    return render("test_page", data, profile, reprint=reprint).data


test_page.__test__ = False  # type: ignore[attr-defined]  # a document, not a pytest test


def sale_id_from_barcode(scanned: str) -> str:
    """The sale (or return) id a scanned receipt barcode stands for."""
    return barcode_text(scanned)
