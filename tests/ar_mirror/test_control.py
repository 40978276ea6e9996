"""The messages between the agent and the mirror process."""

from __future__ import annotations

import pytest

from ar_mirror import control
from ar_mirror.control import Error, Layer, Look, Ready, Stats


def test_every_message_round_trips_as_one_line():
    look = Look(layers=(Layer(sku="LIP-1", kind="lipstick", shade="#AA0011", finish="gloss"),), compare=0.25)
    line = control.encode(look)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert control.parse_look(line) == look
    for message in (Ready(width=1280, height=720, source="synthetic", stream="x"), Stats(captured=3, face=True),
                    Error(message="gone", missing=True)):
        assert control.parse_from_mirror(control.encode(message)) == message


def test_shades_are_colours_and_convert_to_bgr():
    assert Layer(sku="A", kind="blush", shade="#FF8000").bgr() == (0, 128, 255)
    with pytest.raises(ValueError, match="#rrggbb"):
        Layer(sku="A", kind="blush", shade="orange")


def test_what_is_not_a_message_is_refused():
    with pytest.raises(ValueError):
        control.parse_from_mirror(b'{"type": "frame", "jpeg": "..."}\n')
    with pytest.raises(ValueError):
        control.parse_look(b'{"type": "look", "layers": [], "extra": 1}\n')
    with pytest.raises(ValueError, match="longer than"):
        control.parse_look(b" " * (control.MAX_LINE + 1))
