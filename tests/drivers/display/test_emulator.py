"""The emulator's parser reads back what the protocol writes, in both command sets, however it is cut."""

from __future__ import annotations

import pytest

from drivers.display import protocol
from drivers.display.emulator import VfdScreen, render
from drivers.display.protocol import COMMANDS, Protocol


@pytest.mark.parametrize("p", list(Protocol))
def test_the_parser_shows_what_the_protocol_draws(p):
    c = COMMANDS[p]
    data = protocol.setup(c) + protocol.screen(c, "Lipstick Red  159.00", "TOTAL     CNY 159.00")
    screen = VfdScreen(p)
    screen.feed(data)
    assert screen.lines == ("Lipstick Red  159.00", "TOTAL     CNY 159.00")
    assert screen.unknown == 0 and screen.inits == 1


@pytest.mark.parametrize("p", list(Protocol))
def test_commands_cut_anywhere_between_reads(p):
    c = COMMANDS[p]
    data = protocol.setup(c) + protocol.screen(c, "A", "B") + protocol.screen(c, "one", "two")
    for cut in range(1, len(data)):
        screen = VfdScreen(p)
        screen.feed(data[:cut])
        screen.feed(data[cut:])
        assert screen.text == "one\ntwo", cut
        assert screen.unknown == 0


def test_the_other_sets_cursor_move_is_not_obeyed():
    # A display set to CD5220 shown Epson bytes: US $ is no command there, so no move happens.
    screen = VfdScreen(Protocol.CD5220)
    screen.feed(COMMANDS[Protocol.EPSON].move(5, 2) + b"x")
    assert screen.lines[1] == " " * 20 and screen.unknown >= 1


def test_clear_home_wrap_and_clear_line():
    screen = VfdScreen(Protocol.EPSON)
    screen.feed(b"x" * 25)  # overwrite mode: past column 20, on to line 2
    assert screen.lines == ("x" * 20, "xxxxx" + " " * 15)
    screen.feed(b"\x18")  # CAN clears the cursor's line
    assert screen.lines[1] == " " * 20
    screen.feed(b"\x0bhi")  # home
    assert screen.lines[0].startswith("hixxx")
    screen.feed(b"\x0c")
    assert screen.text == "\n"
    screen.feed(b"\x1f$\x15\x01")  # column 21: no such place, ignored
    assert screen.unknown == 1
    assert render(screen).splitlines()[0] == "+" + "-" * 20 + "+"
