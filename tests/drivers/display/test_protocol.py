"""The pole display's bytes, exactly, in both command sets; the texts they carry."""

from __future__ import annotations

from decimal import Decimal

import pytest

from drivers.display import protocol
from drivers.display.protocol import COMMANDS, Protocol

ESC, US = b"\x1b", b"\x1f"


def test_cd5220_bytes():
    c = COMMANDS[Protocol.CD5220]
    assert protocol.setup(c) == ESC + b"@" + ESC + b"\x11" + ESC + b"_\x00" + b"\x0c"
    assert c.move(1, 1) == ESC + b"l\x01\x01"
    assert c.move(20, 2) == ESC + b"l\x14\x02"


def test_epson_dm_d_bytes():
    c = COMMANDS[Protocol.EPSON]
    assert protocol.setup(c) == ESC + b"@" + US + b"\x01" + US + b"C\x00" + b"\x0c"
    assert c.move(1, 2) == US + b"$\x01\x02"


@pytest.mark.parametrize("p", list(Protocol))
def test_a_screen_is_both_lines_whole(p):
    c = COMMANDS[p]
    out = protocol.screen(c, "ab", "")
    assert out == c.move(1, 1) + b"ab" + b" " * 18 + c.move(1, 2) + b" " * 20


@pytest.mark.parametrize("column,row", [(0, 1), (21, 1), (1, 0), (1, 3)])
def test_no_move_off_the_glass(column, row):
    with pytest.raises(ValueError, match="no position"):
        COMMANDS[Protocol.CD5220].move(column, row)


def test_text_is_ascii_only():
    assert protocol.ascii_text("Crème brûlée") == "Creme brulee"
    assert protocol.ascii_text("ＴＯＴＥ　Ｂａｇ") == "TOTE Bag"   # full-width forms fold
    assert protocol.ascii_text("口红 Lipstick Red") == "Lipstick Red"  # what has no ASCII form goes
    assert protocol.ascii_text("口红") == ""
    assert protocol.ascii_text("a\x1b@b\x0c") == "a@b"  # no control byte reaches the display
    # A stray character in a finished line shows as "?", never as a byte the display would obey.
    assert protocol.screen(COMMANDS[Protocol.CD5220], "é\x0c", "")[4:6] == b"??"


def test_item_and_total_lines_fit_twenty_columns():
    # The name is cut to leave the price its room at the right.
    assert protocol.item_line("Lipstick Red Velvet Matte", Decimal("159")) == "Lipstick Red  159.00"
    # A name with nothing the display can show gives way to the SKU.
    assert protocol.item_line("口红", Decimal("89.5"), fallback="LIP-RED-01") == "LIP-RED-01     89.50"
    assert protocol.total_line(Decimal("348.9"), "CNY") == "TOTAL     CNY 348.90"
    assert protocol.total_line(Decimal("1234567.00"), "CNY") == "TOTAL CNY 1234567.00"
    assert protocol.total_line(Decimal("99999999.99"), "CNY") == "TOTAL    99999999.99"  # no room for CNY
    assert protocol.centred("Thank you") == "     Thank you      "
