"""Keyboard-mode decoding: layouts, modifiers, dead keys, Alt codes, and round trips through every layout."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.scanner.keymap import LAYOUTS, REPLACEMENT, Keymap, KeyDecoder, available
from drivers.scanner.protocol import BadScan, parse

US, DE, FR = (Keymap.load(n) for n in ("us", "de", "fr"))


def tap(key: str, *mods: str) -> list[tuple[str, int]]:
    return [(m, 1) for m in mods] + [(key, 1), (key, 0)] + [(m, 0) for m in reversed(mods)]


def decode(keymap: Keymap, events, **keys) -> list[str]:
    d = KeyDecoder(keymap, **keys)
    return [text for key, value in events if (text := d.feed(key, value)) is not None]


ENTER = tap("KEY_ENTER")


# Layout files --------------------------------------------------------------------------------


def test_available_lists_the_shipped_layouts():
    assert available() == ["de", "fr", "us"]


def test_unknown_layout_names_the_available_ones():
    with pytest.raises(ValueError, match=r"no keyboard layout 'xx'; available: de, fr, us"):
        Keymap.load("xx")
    with pytest.raises(ValueError):
        Keymap.load("../layouts/us")


@pytest.mark.parametrize("name", ["us", "de", "fr"])
def test_layout_files_are_well_formed(name):
    data = json.loads((LAYOUTS / f"{name}.json").read_text(encoding="utf-8"))
    assert data["name"] == name
    keymap = Keymap.load(name)
    assert keymap.description
    # Every printable ASCII character except where the layout has no key for it.
    typable = {c for c in map(chr, range(0x20, 0x7F)) if _can_type(keymap, c)}
    assert typable == set(map(chr, range(0x20, 0x7F)))


def _can_type(keymap: Keymap, c: str) -> bool:
    try:
        keymap.keystrokes(c)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize(
    "entry, reason",
    [
        ({"keys": {"A": {"plain": "a"}}}, "A: expected an evdev key name"),
        ({"keys": {"KEY_A": {"upper": "A"}}}, "KEY_A: unknown level 'upper'"),
        ({"keys": {"KEY_A": {"plain": "ab"}}}, "KEY_A.plain: expected one character, got 'ab'"),
        ({"keys": {"KEY_A": {"plain": "a", "dead": ["shift"]}}}, r"KEY_A: dead levels \['shift'\] have no character"),
        ({"keys": {"KEY_A": {"plain": "a", "dead": ["plain"]}}}, "KEY_A: a dead key must be one of"),
    ],
)
def test_malformed_layouts_are_refused(entry, reason):
    with pytest.raises(ValueError, match=reason):
        Keymap.from_dict("bad", entry)


# Decoding ------------------------------------------------------------------------------------


def test_digits_and_enter():
    events = [e for d in "4006381333931" for e in tap(f"KEY_{d}")] + ENTER
    assert decode(US, events) == ["4006381333931"]


def test_german_scanner_swaps_y_and_z():
    # The classic: a scanner set to German sends KEY_Y for "z".
    events = tap("KEY_Y") + tap("KEY_Z") + tap("KEY_Y", "KEY_LEFTSHIFT") + ENTER
    assert decode(DE, events) == ["zyZ"]
    assert decode(US, events) == ["yzY"]


def test_german_shifted_digits_and_punctuation():
    events = tap("KEY_7", "KEY_LEFTSHIFT") + tap("KEY_SLASH") + tap("KEY_SLASH", "KEY_RIGHTSHIFT") + ENTER
    assert decode(DE, events) == ["/-_"]
    assert decode(US, events) == ["&/?"]


def test_altgr_for_german_at_and_brackets():
    events = tap("KEY_Q", "KEY_RIGHTALT") + tap("KEY_8", "KEY_RIGHTALT") + tap("KEY_9", "KEY_RIGHTALT") + ENTER
    assert decode(DE, events) == ["@[]"]


def test_french_digits_need_shift():
    events = tap("KEY_1") + tap("KEY_1", "KEY_LEFTSHIFT") + tap("KEY_2") + tap("KEY_2", "KEY_LEFTSHIFT") + ENTER
    assert decode(FR, events) == ["&1é2"]


def test_capslock_shifts_letters_only():
    events = tap("KEY_CAPSLOCK") + tap("KEY_A") + tap("KEY_1") + tap("KEY_B", "KEY_LEFTSHIFT") + ENTER
    assert decode(US, events) == ["A1b"]
    # German ß has no capital on its key: Caps Lock leaves it alone.
    assert decode(DE, tap("KEY_CAPSLOCK") + tap("KEY_MINUS") + tap("KEY_SEMICOLON") + ENTER) == ["ßÖ"]
    # A second press turns it off.
    assert decode(US, tap("KEY_CAPSLOCK") + tap("KEY_CAPSLOCK") + tap("KEY_A") + ENTER) == ["a"]


def test_keypad_digits_and_layout_specific_decimal_key():
    events = tap("KEY_KP1") + tap("KEY_KP0") + tap("KEY_KPDOT") + tap("KEY_KP5") + tap("KEY_KPENTER")
    assert decode(US, events) == ["10.5"]
    assert decode(DE, events) == ["10,5"]


def test_ctrl_bracket_is_gs_for_gs1():
    events = tap("KEY_0") + tap("KEY_RIGHTBRACE", "KEY_LEFTCTRL") + tap("KEY_1") + ENTER
    assert decode(US, events) == ["0\x1d1"]
    # On German, "]" is AltGr+9, so Ctrl+AltGr+9.
    assert decode(DE, tap("KEY_9", "KEY_LEFTCTRL", "KEY_RIGHTALT") + ENTER) == ["\x1d"]


def test_alt_codes_on_the_keypad():
    # "Alt mode" scanners: Alt held, keypad digits, Alt released.
    events = [("KEY_LEFTALT", 1)] + tap("KEY_KP0") + tap("KEY_KP2") + tap("KEY_KP9") + [("KEY_LEFTALT", 0)]
    events += [("KEY_LEFTALT", 1)] + tap("KEY_KP0") + tap("KEY_KP2") + tap("KEY_KP2") + tap("KEY_KP8") + [
        ("KEY_LEFTALT", 0)]
    events += [("KEY_LEFTALT", 1)] + tap("KEY_KP1") + tap("KEY_KP2") + tap("KEY_KP9") + [("KEY_LEFTALT", 0)]
    assert decode(US, events + ENTER) == ["\x1dä\xfc"]  # 0228 is ä in cp1252, 129 is ü in cp437


def test_alt_code_out_of_range_is_a_replacement():
    d = KeyDecoder(US)
    for key, value in [("KEY_LEFTALT", 1)] + tap("KEY_KP9") * 4 + [("KEY_LEFTALT", 0)]:
        d.feed(key, value)
    assert d.flush() == REPLACEMENT
    assert d.unknown == {"ALT+9999": 1}


def test_dead_keys():
    # German ^ is dead: ^ then space types "^", ^ then a types "â", ´ then e "é".
    events = tap("KEY_GRAVE") + tap("KEY_SPACE") + tap("KEY_GRAVE") + tap("KEY_A") + tap("KEY_EQUAL") + tap("KEY_E")
    events += tap("KEY_GRAVE") + tap("KEY_1")  # nothing to compose: both come out
    assert decode(DE, events + tap("KEY_GRAVE") + ENTER) == ["^âé^1^"]
    # A control character or an unmapped key after a dead key: the accent is kept, on its own.
    assert decode(DE, tap("KEY_GRAVE") + tap("KEY_9", "KEY_LEFTCTRL", "KEY_RIGHTALT") + ENTER) == ["^\x1d"]
    assert decode(DE, tap("KEY_GRAVE") + tap("KEY_F1") + ENTER) == ["^" + REPLACEMENT]


def test_unknown_keys_become_replacements_and_are_counted():
    d = KeyDecoder(US)
    for key, value in tap("KEY_1") + tap("KEY_F5") + tap("KEY_F5") + tap("KEY_A", "KEY_RIGHTALT"):
        d.feed(key, value)
    text = d.feed("KEY_ENTER", 1)
    assert text == "1" + REPLACEMENT * 3
    assert d.unknown == {"KEY_F5": 2, "KEY_A": 1}
    assert parse(text) == BadScan(text, "unreadable character at 1 (undecodable byte or unmapped key)")


def test_modifiers_and_locks_type_nothing():
    events = tap("KEY_LEFTMETA") + tap("KEY_NUMLOCK") + tap("KEY_LEFTSHIFT") + tap("KEY_RIGHTCTRL") + tap("KEY_1")
    d = KeyDecoder(US)
    assert [d.feed(k, v) for k, v in events + ENTER] == [None] * (len(events)) + ["1", None]
    assert not d.unknown


def test_autorepeat_is_ignored():
    assert decode(US, [("KEY_1", 1), ("KEY_1", 2), ("KEY_1", 2), ("KEY_1", 0)] + ENTER) == ["1"]


def test_terminators_are_configurable():
    events = tap("KEY_A") + tap("KEY_TAB") + tap("KEY_B") + ENTER
    assert decode(US, events, terminators=["KEY_TAB"]) == ["a"]
    assert decode(US, events) == ["a\tb"]  # Tab kept, and parse then refuses it


def test_empty_codes_are_not_returned():
    assert decode(US, ENTER + ENTER) == []


def test_flush_and_reset():
    d = KeyDecoder(US)
    for key, value in tap("KEY_A") + [("KEY_LEFTSHIFT", 1)]:
        d.feed(key, value)
    assert d.flush() == "a"
    assert d.flush() is None
    d.reset()
    for key, value in tap("KEY_B"):
        d.feed(key, value)
    assert d.flush() == "b"  # shift forgotten


def test_overlong_is_capped_one_past_the_limit():
    d = KeyDecoder(US, max_length=10)
    for _ in range(100):
        for key, value in tap("KEY_1"):
            d.feed(key, value)
    text = d.feed("KEY_ENTER", 1)
    assert text == "1" * 11
    assert parse(text, max_length=10).reason == "longer than 10 characters"


def test_keystrokes_look_like_a_scanner():
    assert US.keystrokes("Ab") == [
        ("KEY_LEFTSHIFT", 1), ("KEY_A", 1), ("KEY_A", 0), ("KEY_LEFTSHIFT", 0),
        ("KEY_B", 1), ("KEY_B", 0), ("KEY_ENTER", 1), ("KEY_ENTER", 0),
    ]
    assert DE.keystrokes("^", terminator=None) == [
        ("KEY_GRAVE", 1), ("KEY_GRAVE", 0), ("KEY_SPACE", 1), ("KEY_SPACE", 0)]
    with pytest.raises(ValueError, match="layout 'us' cannot type 'é'"):
        US.keystrokes("é")


# Round trips -----------------------------------------------------------------------------


_TYPABLE: dict[str, list[str]] = {}


def _typable(keymap: Keymap) -> list[str]:
    if keymap.name in _TYPABLE:
        return _TYPABLE[keymap.name]
    chars = {c for levels in keymap.keys.values() for c in levels.values() if c.isprintable()}
    chars |= {"\x1d", "â", "é", "ü", "Ü"}
    return _TYPABLE.setdefault(keymap.name, sorted(c for c in chars if _can_type(keymap, c)))


@pytest.mark.parametrize("keymap", [US, DE, FR], ids=lambda k: k.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_typing_then_decoding_gives_the_text_back(keymap, data):
    text = data.draw(st.text(alphabet=_typable(keymap), min_size=1, max_size=40))
    assert decode(keymap, keymap.keystrokes(text)) == [text]


@pytest.mark.parametrize("scanner, host", [(DE, US), (US, DE), (FR, US)], ids=["de-as-us", "us-as-de", "fr-as-us"])
def test_wrong_layout_mangles_codes_which_is_why_it_is_configured(scanner, host):
    text = "RM1:ZY-1234"
    assert decode(host, scanner.keystrokes(text)) != [text]
