"""The ESC/POS parser: what each command leaves on paper, status queries, chunking, garbage."""

from __future__ import annotations

from escpos.printer import Dummy
from hypothesis import given, settings
from hypothesis import strategies as hst
from PIL import Image as PILImage

from drivers.printer import documents
from drivers.printer.parser import (
    QR,
    Barcode,
    Cut,
    EscPosParser,
    Image,
    Init,
    Pulse,
    Text,
    decode_code128,
    split_documents,
)
from drivers.printer.profiles import escpos_profile, get_profile

ESC, GS, FS, DLE = b"\x1b", b"\x1d", b"\x1c", b"\x10"


def parse(data: bytes) -> list:
    p = EscPosParser()
    p.feed(data)
    return p.elements


def test_text_lines_and_styles():
    data = (ESC + b"@" + b"plain\n" + ESC + b"E\x01" + ESC + b"a\x01" + b"bold centred\n"
            + ESC + b"E\x00" + ESC + b"a\x00" + ESC + b"!\x30" + b"big\n" + ESC + b"!\x00"
            + GS + b"B\x01" + b"inverted\n" + GS + b"B\x00" + GS + b"!\x11" + b"gs big\n"
            + GS + b"!\x00" + ESC + b"M\x01" + b"small\n\n")
    assert parse(data) == [
        Init(),
        Text("plain"),
        Text("bold centred", bold=True, align="center"),
        Text("big", double=True),
        Text("inverted", invert=True),
        Text("gs big", double=True),
        Text("small", small=True),
        Text("", small=True),
    ]


def test_esc_bang_bold_bit_and_esc_e_agree():
    assert parse(ESC + b"!\x08" + b"x\n") == [Text("x", bold=True)]
    assert parse(ESC + b"E\x01" + ESC + b"!\x00" + b"x\n") == [Text("x")]  # ESC ! clears emphasis


def test_tab_and_carriage_return():
    assert parse(b"ab\tc\r\n") == [Text("ab      c")]


def test_code_tables_and_chinese_mode():
    data = (b"\x1bt\x13\x82\n"  # PC858: é
            + b"\x1bt\x11\x8f\n"  # PC866: П
            + FS + b"&" + "牛奶".encode("gb18030") + FS + b"." + b"\x82\n")  # after FS ., PC866 again
    assert [e.line for e in parse(data)] == ["é", "П", "牛奶В"]


def test_unknown_code_table_prints_a_visible_mark():
    assert parse(b"\x1bt\x63\xe9\n") == [Text("\ufffd")]


def test_status_queries_are_answered_in_order():
    p = EscPosParser(answer=lambda n: bytes((0x10 | n << 1,)))
    assert p.feed(DLE + b"\x04\x01" + b"text" + DLE + b"\x04\x04") == b"\x12\x18"
    assert p.status_queries == 2
    assert p.feed(DLE + b"\x04") == b""  # incomplete: held back
    assert p.feed(b"\x02") == b"\x14"
    assert p.feed(DLE + b"\x04\x07\x01" + DLE + b"\x05\x02") == b""  # ink status, DLE ENQ: no answer here


def test_cuts_and_pulses():
    data = GS + b"V\x00" + GS + b"V\x01" + GS + b"VB\x00" + GS + b"VA\x10" + ESC + b"p\x00\x19\xfa" + ESC + b"p\x01\x19\xfa"
    assert parse(data) == [Cut(False), Cut(True), Cut(True), Cut(False), Pulse(2), Pulse(5)]


def test_cut_prints_an_unfinished_line():
    assert parse(b"last" + GS + b"V\x00") == [Text("last"), Cut(False)]


def test_barcodes_function_a_and_b():
    data = GS + b"k\x02" + b"4006381333931\x00" + GS + b"kI\x0a{C\x01\x17\x2d\x43" + b"{Bab"
    assert parse(data) == [Barcode("EAN13", "4006381333931"), Barcode("CODE128", "01234567ab")]


def test_code128_code_sets():
    assert decode_code128(b"{BHello {{x}") == "Hello {x}"
    assert decode_code128(b"{C\x00\x63{B7") == "00997"
    assert decode_code128(b"{A\x41{1\x42") == "AB"


def test_native_qr():
    p = Dummy(profile=escpos_profile(get_profile("epson-tm-t88")))
    p.qr("https://example.com/r/1", native=True, size=5)
    assert parse(p.output) == [QR("https://example.com/r/1")]


def test_raster_graphics_and_column_images():
    img = PILImage.new("1", (16, 4), 1)
    img.putpixel((0, 0), 0)
    img.putpixel((15, 3), 0)
    p = Dummy(profile=escpos_profile(get_profile("epson-tm-t88")))
    p.image(img, impl="bitImageRaster")
    p.image(img, impl="graphics")
    p.image(img, impl="bitImageColumn")
    images = [e for e in parse(p.output) if isinstance(e, Image)]
    assert [(i.width, i.height) for i in images] == [(16, 4), (16, 4), (16, 24)]
    for i in images:
        assert i.dark(0, 0) and i.dark(15, 3) and not i.dark(1, 0)


def test_init_resets_modes_and_splits_documents():
    data = (ESC + b"@" + ESC + b"E\x01" + b"one\n" + ESC + b"@" + b"two\n" + GS + b"V\x01"
            + ESC + b"@" + b"three\n")
    docs = split_documents(parse(data))
    assert [(d.lines, d.end) for d in docs] == [(["one"], "init"), (["two"], "cut"), (["three"], "open")]
    assert docs[1].elements[0] == Text("two")  # bold was reset by ESC @


def test_unknown_commands_are_skipped():
    data = ESC + b"\x7f" + b"a\n" + GS + b"\xee" + b"b\n" + FS + b"\x99" + b"c\n" + b"\x07\x18d\n"
    assert [e.line for e in parse(data)] == ["a", "b", "c", "d"]


def test_absurd_lengths_are_garbage_not_a_wait():
    # An image of 65535 x 65535 bytes, a graphics block of 4 GiB: headers skipped, not waited for.
    p = EscPosParser()
    p.feed(GS + b"v0\x00\xff\xff\xff\xff" + b"after\n" + GS + b"8L\xff\xff\xff\xff" + b"more\n")
    assert p.elements == [Text("after"), Text("more")]
    assert p.pending == 0
    # A declared length within reason is waited for.
    assert p.feed(GS + b"(k\x10\x00" + b"123") == b"" and p.pending == 8


def test_a_document_parses_the_same_whatever_the_chunks():
    data = documents.sale_receipt(
        {"id": "550e8400-e29b-41d4-a716-446655440000", "time": "2025-03-01T14:05:00", "store_name": "Ünïcode 店",
         "lines": [{"sku": "A", "name": "Молоко – 牛奶", "qty": 1, "unit_price": "1", "line_total": "1"}],
         "total": "1", "currency": "CNY", "payment": {"method": "cash"}, "receipt_url": "https://x.test/r"},
        "generic-80-gb18030")
    whole = parse(data)
    for size in (1, 2, 3, 7, 64):
        p = EscPosParser()
        for i in range(0, len(data), size):
            p.feed(data[i:i + size])
        assert p.elements == whole, size
        assert p.pending == 0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(hst.binary(max_size=300), hst.integers(min_value=1, max_value=50))
def test_garbage_never_raises_and_chunking_does_not_matter(data, size):
    whole = EscPosParser()
    whole.feed(data)
    chunked = EscPosParser()
    for i in range(0, len(data), size):
        chunked.feed(data[i:i + size])
    assert chunked.elements == whole.elements
    assert chunked.pending == whole.pending
