"""Text to printer bytes: code pages switched with ESC t, GB18030 in FS & mode, visible replacements."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from drivers.printer import encoding
from drivers.printer.encoding import TextEncoder
from drivers.printer.parser import EscPosParser, Text
from drivers.printer.profiles import get_profile

EPSON = get_profile("epson-tm-t88")
CHINESE = get_profile("generic-80-gb18030")
ESC_T = b"\x1bt"


def printed(data: bytes, profile=EPSON) -> str:
    """What a printer prints for ``data`` (one line), read back by the parser."""
    tables = {cp.esc_t: cp.codec for cp in profile.code_pages} or None
    parser = EscPosParser(tables)
    parser.feed(data + b"\n")
    (line,) = parser.elements
    assert isinstance(line, Text)
    return line.line


def test_ascii_needs_no_table_switch():
    assert encoding.encode("Milk 1L $2.50", EPSON) == encoding.Encoded(b"Milk 1L $2.50", 0)


def test_latin_accents_on_cp858():
    out = encoding.encode("Crème brûlée", EPSON)
    # Epson table 19 is PC858; è is 0x8A there, û 0x96, é 0x82.
    assert out.data == b"Cr" + ESC_T + bytes((19,)) + b"\x8ame br\x96l\x82e"
    assert out.replaced == 0
    assert printed(out.data) == "Crème brûlée"


def test_euro_sign_prints_from_cp858():
    out = encoding.encode("5 €", EPSON)
    assert out.data == b"5 " + ESC_T + bytes((19,)) + b"\xd5"


def test_switches_to_cp1252_for_a_run_cp858_cannot_print():
    # "–" (en dash) and "“ ”" are in WPC1252 (table 16) only; the whole run goes there.
    out = encoding.encode("Café – “bio”", EPSON)
    assert out.data == b"Caf" + ESC_T + bytes((16,)) + b"\xe9 \x96 \x93bio\x94"
    assert out.replaced == 0
    assert printed(out.data) == "Café – “bio”"


def test_cyrillic_switches_tables_and_back():
    text = "Молоко – Milch für 2 €"
    out = encoding.encode(text, EPSON)
    assert out.data.count(ESC_T) == 2
    assert ESC_T + bytes((17,)) in out.data  # PC866 for the Cyrillic
    assert printed(out.data) == text


def test_encoder_remembers_the_table_across_lines():
    enc = TextEncoder(EPSON)
    first, second = enc.encode("é"), enc.encode("è")
    assert first == ESC_T + bytes((19,)) + b"\x82"
    assert second == b"\x8a"  # still on table 19: no second switch
    enc.reset()  # after ESC @ the table is unknown again
    assert enc.encode("é").startswith(ESC_T)


def test_chinese_on_gb18030_is_wrapped_in_chinese_mode():
    out = encoding.encode("牛奶 Milk", CHINESE)
    assert out.data == b"\x1c&" + "牛奶 Milk".encode("gb18030") + b"\x1c."
    assert out.replaced == 0
    assert printed(out.data, CHINESE) == "牛奶 Milk"


def test_ascii_on_gb18030_needs_no_chinese_mode():
    assert encoding.encode("Milk", CHINESE).data == b"Milk"


def test_latin_and_cyrillic_print_on_gb18030_too():
    for text in ("Café", "Привет"):
        out = encoding.encode(text, CHINESE)
        assert out.replaced == 0 and printed(out.data, CHINESE) == text


def test_cjk_counts_double_width_on_gb18030_only():
    assert encoding.display_width("牛奶 Milk", CHINESE) == 2 + 2 + 1 + 4
    assert encoding.display_width("Café", CHINESE) == 3 + 2  # é prints from the double-byte font
    assert encoding.display_width("Café", EPSON) == 4
    assert encoding.display_width("牛奶 Milk", EPSON) == 7  # "?? Milk"


def test_unprintable_characters_are_replaced_one_by_one():
    out = encoding.encode("Tee 绿茶 green", EPSON)
    assert out.data == b"Tee ?? green"
    assert out.replaced == 2
    # The rest of the line is intact: never a whole line of "?".
    assert printed(out.data) == "Tee ?? green"


def test_emoji_on_gb18030_is_replaced_not_sent_as_four_bytes():
    out = encoding.encode("茶 🍵!", CHINESE)
    assert out.replaced == 1
    assert printed(out.data, CHINESE) == "茶 ?!"


def test_approximations_before_replacement():
    # ó is in PC858; Ł has no decomposition and no table: "?"; ź loses its accent.
    assert encoding.normalize("Łódź ﬁsh １２", EPSON) == ("?ódz fish 12", 1)
    assert encoding.normalize("e\u0301", EPSON) == ("é", 0)  # combined to one character first
    assert encoding.normalize("a\u200db\ufe0f", EPSON) == ("ab", 0)  # invisible format characters go


def test_control_characters_never_reach_the_printer():
    out = encoding.encode("A\x1b@B\x1dV\x00C\tD\nE", EPSON)
    assert b"\x1b" not in out.data and b"\x1d" not in out.data and b"\x00" not in out.data
    assert out.data == b"A?@B?V?C D E"
    assert out.replaced == 3


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hst.text(max_size=40))
def test_any_text_encodes_and_reads_back_as_its_normalized_form(text):
    for profile in (EPSON, CHINESE):
        clean, replaced = encoding.normalize(text, profile)
        out = encoding.encode(text, profile)
        assert out.replaced == replaced
        assert printed(out.data, profile) == clean


@pytest.mark.parametrize("profile", [EPSON, CHINESE], ids=lambda p: p.name)
def test_width_matches_what_prints(profile):
    for text in ("Crème brûlée", "牛奶 Milk 2 x 12.50", "Молоко", "Tee 绿茶"):
        clean, _ = encoding.normalize(text, profile)
        assert encoding.display_width(text, profile) == sum(
            2 if profile.gb18030 and ord(c) >= 0x80 else 1 for c in clean)
