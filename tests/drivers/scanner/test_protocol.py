"""Scanner protocol: GTIN check digits, UPC-E, AIM prefixes, GS1 element strings, chain codes."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.scanner import gs1
from drivers.scanner.protocol import (
    AIM, BadScan, CodeKind, Scan, Symbology, expand_upce, gtin_check_digit, parse, shown,
)

GS = "\x1d"
SALE = "123e4567-e89b-12d3-a456-426614174000"


def good(text: str, **keys) -> Scan:
    result = parse(text, **keys)
    assert isinstance(result, Scan), result
    return result


def bad(text: str, **keys) -> BadScan:
    result = parse(text, **keys)
    assert isinstance(result, BadScan), result
    return result


# Check digits ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, digit",
    [
        ("400638133393", 1),      # EAN-13 4006381333931
        ("7351353", 7),           # EAN-8 73513537
        ("03600029145", 2),       # UPC-A 036000291452
        ("0950110153000", 3),     # GTIN-14 09501101530003
        ("0061414100001", 2),     # GTIN-14 00614141000012
        ("10614141123456789", 7),  # SSCC 106141411234567897
        ("0", 0),
    ],
)
def test_gtin_check_digit(body, digit):
    assert gtin_check_digit(body) == digit


@pytest.mark.parametrize("body", ["", "12a", "١٢٣"])
def test_gtin_check_digit_wants_ascii_digits(body):
    with pytest.raises(ValueError):
        gtin_check_digit(body)


# UPC-E -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "upce, upca",
    [
        ("04252614", "042100005264"),  # last digit 1: manufacturer 42100, item 00526
        ("01234505", "012000003455"),  # last digit 0
        ("01234531", "012300000451"),  # last digit 3
        ("01234543", "012340000053"),  # last digit 4
        ("01234558", "012345000058"),  # last digit 5-9
        ("11234562", "112345000062"),  # number system 1
    ],
)
def test_expand_upce(upce, upca):
    assert gtin_check_digit(upca[:-1]) == int(upca[-1])
    assert expand_upce(upce) == upca


@pytest.mark.parametrize(
    "upce, reason",
    [
        ("0425261", "UPC-E must be 8 digits, got '0425261'"),
        ("0425261x", "UPC-E must be 8 digits, got '0425261x'"),
        ("24252614", "UPC-E number system must be 0 or 1, got 2"),
        ("04252615", "UPC-E check digit is 5, expected 4"),
    ],
)
def test_expand_upce_rejects(upce, reason):
    with pytest.raises(ValueError) as err:
        expand_upce(upce)
    assert str(err.value) == reason


# Plain EAN/UPC (no AIM prefix) -------------------------------------------------------


@pytest.mark.parametrize(
    "text, code, symbology, fields",
    [
        ("4006381333931", "4006381333931", Symbology.EAN13, {}),
        ("5901234123457", "5901234123457", Symbology.EAN13, {}),
        ("73513537", "73513537", Symbology.EAN8, {}),
        ("96385074", "96385074", Symbology.EAN8, {}),
        ("036000291452", "036000291452", Symbology.UPCA, {}),
        # UPC-A sent as EAN-13: the same symbol, so the same key.
        ("0036000291452", "036000291452", Symbology.UPCA, {}),
        # Not a valid EAN-8 (check digit would be 0), a valid UPC-E.
        ("04252614", "042100005264", Symbology.UPCE, {"upce": "04252614"}),
        ("09501101530003", "9501101530003", Symbology.ITF, {"gtin": "09501101530003"}),
        ("10614141000019", "10614141000019", Symbology.ITF, {"gtin": "10614141000019"}),
    ],
)
def test_gtins_without_aim(text, code, symbology, fields):
    scan = good(text)
    assert (scan.code, scan.symbology, scan.kind, scan.fields, scan.raw) == (
        code, symbology, CodeKind.PRODUCT, fields, text)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("4006381333933", "EAN-13 check digit is 3, expected 1"),
        ("5901234123450", "EAN-13 check digit is 0, expected 7"),
        ("036000291453", "UPC-A check digit is 3, expected 2"),
        ("09501101530004", "GTIN-14 check digit is 4, expected 3"),
        # Neither EAN-8 nor UPC-E: the reason names EAN-8, the likelier one.
        ("73513538", "EAN-8 check digit is 8, expected 7"),
        ("24252615", "EAN-8 check digit is 5, expected 4"),
        ("04252615", "EAN-8 check digit is 5, expected 0"),
    ],
)
def test_bad_check_digits(text, reason):
    assert bad(text) == BadScan(text, reason)


# AIM symbology identifiers ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, code, symbology, kind",
    [
        ("]E04006381333931", "4006381333931", Symbology.EAN13, CodeKind.PRODUCT),
        ("]E0036000291452", "036000291452", Symbology.UPCA, CodeKind.PRODUCT),
        ("]E00036000291452", "036000291452", Symbology.UPCA, CodeKind.PRODUCT),
        ("]E004252614", "042100005264", Symbology.UPCE, CodeKind.PRODUCT),
        ("]E473513537", "73513537", Symbology.EAN8, CodeKind.PRODUCT),
        ("]C0ABC-123", "ABC-123", Symbology.CODE128, CodeKind.OTHER),
        ("]C04006381333931", "4006381333931", Symbology.CODE128, CodeKind.OTHER),
        ("]C10109501101530003", "9501101530003", Symbology.GS1_128, CodeKind.PRODUCT),
        ("]d2" + GS + "0109501101530003", "9501101530003", Symbology.GS1_DATAMATRIX, CodeKind.PRODUCT),
        ("]d1hello", "hello", Symbology.DATAMATRIX, CodeKind.OTHER),
        ("]Q1https://example.com/x", "https://example.com/x", Symbology.QR, CodeKind.OTHER),
        ("]Q30109501101530003", "9501101530003", Symbology.QR, CodeKind.PRODUCT),
        ("]e00109501101530003", "9501101530003", Symbology.GS1_DATABAR, CodeKind.PRODUCT),
        ("]I109501101530003", "9501101530003", Symbology.ITF, CodeKind.PRODUCT),
        ("]I01234", "1234", Symbology.ITF, CodeKind.OTHER),
        ("]A0CODE39", "CODE39", Symbology.CODE39, CodeKind.OTHER),
        ("]X0whatever", "whatever", Symbology.UNKNOWN, CodeKind.OTHER),
    ],
)
def test_aim_prefix_decides_the_symbology(text, code, symbology, kind):
    scan = good(text, aim=True)
    assert (scan.code, scan.symbology, scan.kind, scan.raw) == (code, symbology, kind, text)


def test_aim_add_on_goes_into_the_fields():
    scan = good("]E3400638133393112", aim=True)
    assert (scan.code, scan.symbology, scan.fields) == ("4006381333931", Symbology.EAN13, {"addon": "12"})
    assert good("]E303600029145212345", aim=True).fields == {"addon": "12345"}


@pytest.mark.parametrize(
    "text, reason",
    [
        ("4006381333931", "missing AIM symbology identifier (expected ']' and 2 characters, e.g. ]E0)"),
        ("]E", "missing AIM symbology identifier (expected ']' and 2 characters, e.g. ]E0)"),
        ("]W04006381333931", "unknown AIM symbology identifier ']W0'"),
        ("]E-4006381333931", "unknown AIM symbology identifier ']E-'"),
        ("]E0", "empty code"),
        ("]E04006381333933", "EAN-13 check digit is 3, expected 1"),
        ("]E473513538", "EAN-8 check digit is 8, expected 7"),
        # ]E4 is EAN-8 only: a valid UPC-E there is still a bad EAN-8.
        ("]E404252614", "EAN-8 check digit is 4, expected 0"),
        # ]E0 with 8 digits is UPC-E only.
        ("]E073513537", "UPC-E number system must be 0 or 1, got 7"),
        ("]E004252615", "UPC-E check digit is 5, expected 4"),
        ("]E0123", "]E0 (EAN-13, UPC-A or UPC-E) needs 8, 12 or 13 digits, got 3"),
        ("]E0400638133393A", "]E0 (EAN-13, UPC-A or UPC-E) data must be digits"),
        ("]E112", "EAN/UPC add-on sent alone (]E1); set the scanner to send add-ons with the main code (]E3)"),
        ("]E5123", "unknown EAN/UPC AIM modifier ']E5'"),
        ("]C10109501101530004", "AI 01 (GTIN) check digit is 4, expected 3"),
    ],
)
def test_aim_rejects(text, reason):
    assert bad(text, aim=True).reason == reason


def test_aim_table_is_iso_15424_code_characters():
    assert set(AIM) >= set("ACEFGILQXdez")
    assert AIM["C"].gs1_modifiers == "1" and AIM["d"].gs1_modifiers == "25"


# GS1 element strings -------------------------------------------------------------------


def test_gs1_human_readable_form():
    scan = good("(01)09501101530003(17)140704(10)AB-123")
    assert scan == Scan(
        "9501101530003", Symbology.GS1_128, CodeKind.PRODUCT,
        {"gtin": "09501101530003", "expiry": "2014-07-04", "batch": "AB-123"},
        "(01)09501101530003(17)140704(10)AB-123",
    )


def test_gs1_raw_form_with_gs_separators():
    text = GS + "0109501101530003" + "10AB-123" + GS + "3103001250" + "21SN42" + GS + "3922" + "1250"
    scan = good(text)
    assert scan.code == "9501101530003"
    assert scan.fields == {"gtin": "09501101530003", "batch": "AB-123", "net_weight_kg": "1.250",
                           "serial": "SN42", "price": "12.50"}


def test_gs1_without_any_marker_is_recognised_when_it_parses():
    # GS1-128 read with AIM off: no FNC1, no parentheses, only digits and text.
    assert good("01095011015300031714070410AB-123").fields["batch"] == "AB-123"
    # ... but a Code 128 that merely starts with 01 stays Code 128.
    assert good("0123456789").symbology is Symbology.CODE128


@pytest.mark.parametrize(
    "text, fields",
    [
        ("(00)106141411234567897", {"sscc": "106141411234567897"}),
        ("(02)09501101530003(37)12", {"content": "09501101530003", "count": "12"}),
        ("(11)240229(13)240300(15)991231", {"prod_date": "2024-02-29", "pack_date": "2024-03-31",
                                            "best_before": "1999-12-31"}),
        ("(3200)000150", {"net_weight_lb": "150"}),
        ("(3105)123456", {"net_weight_kg": "1.23456"}),
        ("(3932)9781250", {"price": "12.50", "currency": "978"}),
        ("(400)PO-7(8200)https://example.com/p", {"order_number": "PO-7", "product_url": "https://example.com/p"}),
        ("(30)5(20)01", {"var_count": "5", "variant": "01"}),
    ],
)
def test_gs1_ai_table(text, fields):
    scan = good(text)
    assert scan.fields == fields
    assert scan.kind is CodeKind.OTHER and scan.code == text  # no AI 01: not a product by itself


@pytest.mark.parametrize(
    "text, reason",
    [
        ("(01)09501101530004", "AI 01 (GTIN) check digit is 4, expected 3"),
        ("(02)09501101530004", "AI 02 (CONTENT) check digit is 4, expected 3"),
        ("(00)106141411234567890", "AI 00 (SSCC) check digit is 0, expected 7"),
        ("(01)0950110153000", "AI 01 (GTIN) needs 14 characters, got 13"),
        ("(17)141304", "AI 17 (USE BY or EXPIRY) '141304' is not a date (YYMMDD)"),
        ("(17)140231", "AI 17 (USE BY or EXPIRY) '140231' is not a date (YYMMDD)"),
        ("(17)230229", "AI 17 (USE BY or EXPIRY) '230229' is not a date (YYMMDD)"),
        ("(17)1407AA", "AI 17 (USE BY or EXPIRY) must be digits, got '1407AA'"),
        ("(17)14070", "AI 17 (USE BY or EXPIRY) needs 6 characters, got 5"),
        ("(10)" + "A" * 21, "AI 10 (BATCH/LOT) is longer than 20 characters"),
        ("(10)AB~", "AI 10 (BATCH/LOT) has '~', which GS1 does not allow"),
        ("(10)", "AI 10 (BATCH/LOT) is empty"),
        ("(23)1", "unknown GS1 AI (23)"),
        # 393n without its n (the number of decimals) is no AI; nor is 3107 (310n has n 0-6).
        ("(393)9781250", "unknown GS1 AI (393)"),
        ("(3107)123456", "unknown GS1 AI (3107)"),
        ("(10)A(10)B", "AI 10 appears twice"),
        ("0109501101530003" + GS + "23X", "unknown GS1 AI at position 17: '23X'"),
        ("(3929)1", "AI 3929 (PRICE) has 9 decimals but only 1 digits"),
        ("(3932)97", "AI 3932 (PRICE) '97' does not fit its format N3+N..15"),
        ("(414)5790000000001", "AI 414 (LOC No.) check digit is 1, expected 5"),
        ("(01)09501101530003" + "(21)" + "S" * 21, "AI 21 (SERIAL) is longer than 20 characters"),
        # The raw form: a variable-length field runs to the next GS, not to its maximum.
        (GS + "0109501101530003" + "21" + "S" * 21 + GS + "17261231", "AI 21 (SERIAL) is longer than 20 characters"),
        (GS + "0109501101530003" + "10AB~C" + GS + "17261231", "AI 10 (BATCH/LOT) has '~', which GS1 does not allow"),
    ],
)
def test_gs1_rejects(text, reason):
    assert bad(text).reason == reason


def test_gs1_fresh_food_label_weight_price_expiry_batch():
    # A scale-printed GS1-128 on a meat tray: GTIN, use-by, net weight 1.250 kg, price 14.99, lot;
    # FNC1 (GS) only after the variable-length price, none after the fixed-length fields.
    text = "]C1" + "0109501101530003" + "17261215" + "3103001250" + "3922" + "1499" + GS + "10LOT42"
    scan = good(text, aim=True)
    assert (scan.code, scan.symbology, scan.kind) == ("9501101530003", Symbology.GS1_128, CodeKind.PRODUCT)
    assert scan.fields == {"gtin": "09501101530003", "expiry": "2026-12-15", "net_weight_kg": "1.250",
                           "price": "14.99", "batch": "LOT42"}


def test_gs1_pharmacy_datamatrix_expiry_batch_serial():
    text = "]d2" + "0103453120000011" + "17290531" + "10ABC123" + GS + "21XYZ789"
    scan = good(text, aim=True)
    assert (scan.code, scan.symbology) == ("3453120000011", Symbology.GS1_DATAMATRIX)
    assert scan.fields == {"gtin": "03453120000011", "expiry": "2029-05-31", "batch": "ABC123", "serial": "XYZ789"}


def test_gs1_ais_the_old_table_did_not_know_are_parsed():
    # Every AI of the GS1 General Specifications is known now; those without a name in FIELDS keep
    # their number: country of origin (422), gross weight (330n), production date and time (8008),
    # company internal (91), a GLN (414, check digit checked).
    text = ("(01)09501101530003(7003)2612071530(16)261210(422)528(3302)004250(8008)26120715(91)INT-7"
            "(414)5790000000005(3932)9781250")
    assert good(text).fields == {
        "gtin": "09501101530003", "expiry_time": "2026-12-07T15:30", "sell_by": "2026-12-10", "422": "528",
        "3302": "42.50", "8008": "2026-12-07T15:00", "91": "INT-7", "414": "5790000000005",
        "price": "12.50", "currency": "978"}


def test_gs1_raw_form_of_new_ais_with_separators():
    text = GS + "0109501101530003" + "7003" + "2612071530" + GS + "3102000750" + "7240" + "HAM-1" + GS + "17261231"
    assert good(text).fields == {"gtin": "09501101530003", "expiry_time": "2026-12-07T15:30",
                                 "net_weight_kg": "7.50", "7240": "HAM-1", "expiry": "2026-12-31"}


@pytest.mark.parametrize(
    "text, aim, code, symbology, fields",
    [
        ("https://id.gs1.org/01/09506000134352/10/ABC123?17=261231", False, "9506000134352", Symbology.QR,
         {"gtin": "09506000134352", "batch": "ABC123", "expiry": "2026-12-31"}),
        ("]Q1https://brand.example/shop/01/09501101530003/21/SN1?3103=001250&utm=x", True, "9501101530003",
         Symbology.QR, {"gtin": "09501101530003", "serial": "SN1", "net_weight_kg": "1.250"}),
        ("]d1HTTPS://ID.GS1.ORG/01/09506000134352", True, "9506000134352", Symbology.DATAMATRIX,
         {"gtin": "09506000134352"}),
    ],
)
def test_gs1_digital_link_in_a_qr_code_is_the_product(text, aim, code, symbology, fields):
    scan = good(text, aim=aim)
    assert (scan.code, scan.symbology, scan.kind, scan.fields) == (code, symbology, CodeKind.PRODUCT, fields)


def test_an_ordinary_url_stays_a_plain_code_and_a_bad_digital_link_is_refused():
    assert good("]Q1https://example.com/x", aim=True).kind is CodeKind.OTHER
    assert good("https://example.com/01/ABC").kind is CodeKind.OTHER
    assert good("http://[::1").kind is CodeKind.OTHER
    assert bad("https://id.gs1.org/01/09506000134353").reason == "AI 01 (GTIN) check digit is 3, expected 2"


def test_gs1_day_00_is_the_last_day_of_the_month():
    assert good("(01)09501101530003(17)240200").fields["expiry"] == "2024-02-29"
    assert good("(01)09501101530003(17)250200").fields["expiry"] == "2025-02-28"
    assert good("(01)09501101530003(17)251100").fields["expiry"] == "2025-11-30"


def test_gs1_century_is_the_sliding_window_around_this_year():
    # GS1 General Specifications 7.12: a YY up to 50 years ahead is this century's, further is the last.
    now = datetime.datetime.now(datetime.timezone.utc).year  # biip's "today" is UTC
    ahead, behind = (now + 50) % 100, (now + 51) % 100
    assert good(f"(17){ahead:02d}0101").fields["expiry"] == f"{now + 50}-01-01"
    assert good(f"(17){behind:02d}0101").fields["expiry"] == f"{now + 51 - 100}-01-01"


def test_gtin_key():
    assert gs1.gtin_key("09501101530003") == "9501101530003"
    assert gs1.gtin_key("00036000291452") == "036000291452"
    assert gs1.gtin_key("10614141000019") == "10614141000019"
    assert gs1.gtin_key("73513537") == "73513537"


# The chain's own codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, aim, scan",
    [
        ("RM1:ABCD-1234", False, Scan("ABCD-1234", Symbology.QR, CodeKind.MEMBER, {"member_id": "ABCD-1234"})),
        ("RP1:ord-77:012345", False,
         Scan("ord-77", Symbology.QR, CodeKind.PICKUP, {"order_id": "ord-77", "pickup_code": "012345"})),
        ("RS1:" + SALE, False, Scan(SALE, Symbology.CODE128, CodeKind.RECEIPT, {"sale_id": SALE})),
        ("RS1:" + SALE.upper(), False, Scan(SALE, Symbology.CODE128, CodeKind.RECEIPT, {"sale_id": SALE})),
        ("]Q1RM1:ABCD", True, Scan("ABCD", Symbology.QR, CodeKind.MEMBER, {"member_id": "ABCD"})),
        ("]C0RS1:" + SALE, True, Scan(SALE, Symbology.CODE128, CodeKind.RECEIPT, {"sale_id": SALE})),
    ],
)
def test_chain_codes(text, aim, scan):
    got = good(text, aim=aim)
    assert (got.code, got.symbology, got.kind, got.fields, got.raw) == (
        scan.code, scan.symbology, scan.kind, scan.fields, text)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("RM1:abcd", "RM1 code: 'abcd' is not a member id ([A-Z0-9-]{4,32})"),
        ("RM1:ABC", "RM1 code: 'ABC' is not a member id ([A-Z0-9-]{4,32})"),
        ("RM1:" + "A" * 33, "RM1 code: '" + "A" * 33 + "' is not a member id ([A-Z0-9-]{4,32})"),
        ("RP1:ord-77:12345", "RP1 code: 'ord-77:12345' is not a <order_id>:<6-digit pickup code>"),
        ("RP1::123456", "RP1 code: ':123456' is not a <order_id>:<6-digit pickup code>"),
        ("RS1:not-a-uuid", "RS1 code: 'not-a-uuid' is not a sale id (a UUID)"),
    ],
)
def test_malformed_chain_codes(text, reason):
    assert bad(text).reason == reason


# Junk ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty code"),
        ("40063\x0781333931", "control character 0x07 at 5"),
        ("\x004006381333931", "control character 0x00 at 0"),
        ("4006381333931\r", "control character 0x0d at 13"),
        ("abc\x7f", "control character 0x7f at 3"),
        ("abc\x85", "control character 0x85 at 3"),
        ("ab\ufffdc", "unreadable character at 2 (undecodable byte or unmapped key)"),
        ("9" * 513, "longer than 512 characters"),
    ],
)
def test_junk(text, reason):
    assert bad(text).reason == reason


def test_limits_are_parameters():
    assert bad("abc", min_length=4).reason == "shorter than 4 characters"
    assert good("abcd", min_length=4).code == "abcd"
    assert bad("abcdef", max_length=5).reason == "longer than 5 characters"


def test_plain_text_is_code128_and_non_ascii_unknown():
    assert good("ABC-123 x").symbology is Symbology.CODE128
    assert good("Grüße").symbology is Symbology.UNKNOWN


def test_badscan_raw_is_printable_and_short():
    result = bad("\x07" + "x" * 200)
    assert result.raw == "\\x07" + "x" * 73 + "..."
    assert len(result.raw) == 80
    assert shown(b"\xff\x00ab") == "\\xff\\x00ab"


# Fuzz --------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=80), aim=st.booleans())
def test_parse_never_raises_on_any_text(text, aim):
    assert isinstance(parse(text, aim=aim), (Scan, BadScan))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), aim=st.booleans())
def test_parse_never_raises_on_decoded_bytes(data, aim):
    assert isinstance(parse(data.decode("utf-8", errors="replace"), aim=aim), (Scan, BadScan))


_GS1_ALPHABET = st.sampled_from(list("0123456789()" + GS) + ["(01)", "(17)", "(10)", "(3103)", "(392", "01", "17"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_GS1_ALPHABET, max_size=30), aim=st.sampled_from(["", "]C1", "]d2", "]Q3", "]E0"]))
def test_parse_never_raises_on_gs1_lookalikes(parts, aim):
    assert isinstance(parse(aim + "".join(parts), aim=bool(aim)), (Scan, BadScan))


@settings(max_examples=200, deadline=None)
@given(body=st.text(alphabet="0123456789", min_size=7, max_size=13).filter(lambda s: len(s) in (7, 11, 12)))
def test_any_gtin_with_its_check_digit_is_a_product(body):
    scan = good(body + str(gtin_check_digit(body)))
    assert scan.kind is CodeKind.PRODUCT
