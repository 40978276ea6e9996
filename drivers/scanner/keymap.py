"""Keyboard-mode (USB HID) scanners: key events back to text, by keyboard layout. No I/O.

A scanner in keyboard mode does not send characters, it presses keys: to
send "Z" it presses Shift and the key where Z is on the layout it was set
to. Decode with a different layout and a German scanner's "Z" arrives as
"Y". So the layout here must match the one set in the scanner (a
programming barcode in its manual), not the host's.

Layouts live in layouts/<name>.json: evdev key names (KEY_A, KEY_1, ...)
to the character per level ("plain", "shift", "altgr", "shift_altgr"),
plus "dead": the levels that are dead keys (pressed, then the next key).
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

LAYOUTS = Path(__file__).parent / "layouts"
LEVELS = ("plain", "shift", "altgr", "shift_altgr")
REPLACEMENT = "\ufffd"  # an unmapped key; protocol.parse turns a code with it into a BadScan

SHIFT_KEYS = frozenset({"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"})
CTRL_KEYS = frozenset({"KEY_LEFTCTRL", "KEY_RIGHTCTRL"})
ALT_KEY = "KEY_LEFTALT"      # Alt + keypad digits = a character by number (Windows "Alt codes")
ALTGR_KEY = "KEY_RIGHTALT"   # AltGr: the third level on European layouts
# Keys that change no text: ignored rather than counted as unknown.
_SILENT = frozenset({"KEY_LEFTMETA", "KEY_RIGHTMETA", "KEY_NUMLOCK", "KEY_SCROLLLOCK", "KEY_CAPSLOCK"})

# Keys every layout has in the same place; a layout file may override them
# (German keypads type a comma on KEY_KPDOT).
COMMON_KEYS: dict[str, dict[str, str]] = {
    "KEY_SPACE": {"plain": " ", "shift": " "},
    "KEY_TAB": {"plain": "\t"},
    "KEY_ENTER": {"plain": "\r"},
    "KEY_KPENTER": {"plain": "\r"},
    **{f"KEY_KP{d}": {"plain": str(d)} for d in range(10)},
    "KEY_KPDOT": {"plain": "."},
    "KEY_KPCOMMA": {"plain": ","},
    "KEY_KPSLASH": {"plain": "/"},
    "KEY_KPASTERISK": {"plain": "*"},
    "KEY_KPMINUS": {"plain": "-"},
    "KEY_KPPLUS": {"plain": "+"},
    "KEY_KPEQUAL": {"plain": "="},
}

# A dead key's spacing accent -> the combining mark it puts on the next letter.
COMBINING = {"^": "\u0302", "´": "\u0301", "`": "\u0300", "~": "\u0303", "¨": "\u0308"}
# Ctrl + one of these gives the ASCII control character (Ctrl+] = GS, how
# keyboard-mode scanners send GS1's FNC1).
_CTRL_CHARS = "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"


def available() -> list[str]:
    """Names of the layouts shipped in layouts/."""
    return sorted(p.stem for p in LAYOUTS.glob("*.json"))


@dataclass(frozen=True, eq=False)
class Keymap:
    """One keyboard layout: which character each key types at each level."""

    name: str
    keys: Mapping[str, Mapping[str, str]]
    dead: Mapping[str, frozenset[str]] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def load(cls, name: str) -> Keymap:
        """The layout ``name`` from layouts/; ValueError naming the available ones."""
        names = available()
        if name not in names:
            raise ValueError(f"no keyboard layout {name!r}; available: {', '.join(names)}")
        path = LAYOUTS / f"{name}.json"
        try:
            return cls.from_dict(name, json.loads(path.read_text(encoding="utf-8")))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    @classmethod
    def from_dict(cls, name: str, data: Mapping) -> Keymap:
        """A layout from its JSON form; ValueError on a malformed entry."""
        keys: dict[str, dict[str, str]] = {k: dict(v) for k, v in COMMON_KEYS.items()}
        dead: dict[str, frozenset[str]] = {}
        for key, entry in data.get("keys", {}).items():
            if not key.startswith("KEY_") or not isinstance(entry, dict):
                raise ValueError(f"{key}: expected an evdev key name and an object of levels")
            dead_levels = frozenset(entry.get("dead", ()))
            levels = {k: v for k, v in entry.items() if k != "dead"}
            for level, char in levels.items():
                if level not in LEVELS:
                    raise ValueError(f"{key}: unknown level {level!r} (levels: {', '.join(LEVELS)})")
                if not isinstance(char, str) or len(char) != 1:
                    raise ValueError(f"{key}.{level}: expected one character, got {char!r}")
            if not dead_levels <= levels.keys():
                raise ValueError(f"{key}: dead levels {sorted(dead_levels - levels.keys())} have no character")
            if any(levels[lv] not in COMBINING for lv in dead_levels):
                raise ValueError(f"{key}: a dead key must be one of {''.join(COMBINING)}")
            keys[key] = levels
            if dead_levels:
                dead[key] = dead_levels
        return cls(name, keys, dead, data.get("description", ""))

    def char(self, key: str, level: str) -> str | None:
        """The character ``key`` types at ``level`` (falling back one level), or None."""
        levels = self.keys.get(key)
        if levels is None:
            return None
        if level in levels:
            return levels[level]
        # shift_altgr -> altgr; a key with no shifted sign (keypad) types the plain one.
        fallback = {"shift_altgr": "altgr", "shift": "plain"}.get(level)
        return levels.get(fallback) if fallback else None

    def is_dead(self, key: str, level: str) -> bool:
        """True when ``key`` at ``level`` is a dead key (an accent for the next letter)."""
        return level in self.dead.get(key, ())

    def keystrokes(self, text: str, *, terminator: str | None = "KEY_ENTER") -> list[tuple[str, int]]:
        """The key events (name, 1 down / 0 up) a scanner sends to type ``text``; ValueError if it cannot."""
        index = self._reverse
        events: list[tuple[str, int]] = []
        for c in text:
            events += _strokes(c, index, self)
        if terminator:
            events += [(terminator, 1), (terminator, 0)]
        return events

    @cached_property
    def _reverse(self) -> dict[str, tuple[str, str, bool]]:
        """char -> (key, level, dead), preferring plain over shifted, main keys over keypad."""
        index: dict[str, tuple[str, str, bool]] = {}
        for dead_pass in (False, True):
            for keypad in (False, True):
                for level in LEVELS:
                    for key, levels in self.keys.items():
                        c = levels.get(level)
                        if c is None or key.startswith("KEY_KP") != keypad or self.is_dead(key, level) != dead_pass:
                            continue
                        if key in ("KEY_ENTER", "KEY_KPENTER", "KEY_TAB"):
                            continue
                        index.setdefault(c, (key, level, dead_pass))
        return index


def _strokes(c: str, index: Mapping[str, tuple[str, str, bool]], keymap: Keymap) -> list[tuple[str, int]]:
    if c in index:
        key, level, dead = index[c]
        # A dead key alone types its accent when followed by a space.
        return _press(key, level) + (_press("KEY_SPACE", "plain") if dead else [])
    if ord(c) < 0x20:
        # Ctrl + the key of the character 0x40 above it: Ctrl+] is GS (0x1d).
        target = next((t for t in (chr(ord(c) + 0x40), chr(ord(c) + 0x40).lower()) if t in index), None)
        if target is not None:
            key, level, _ = index[target]
            return [("KEY_LEFTCTRL", 1)] + _press(key, level) + [("KEY_LEFTCTRL", 0)]
    base, *marks = unicodedata.normalize("NFD", c)
    accent = {v: k for k, v in COMBINING.items()}.get(marks[0]) if len(marks) == 1 else None
    dead = next(((k, lv) for k, levels in keymap.dead.items() for lv in levels
                 if keymap.keys[k][lv] == accent), None)
    if dead is not None and base in index and not index[base][2]:
        return _press(*dead) + _press(*index[base][:2])
    raise ValueError(f"layout {keymap.name!r} cannot type {c!r}")


def _press(key: str, level: str) -> list[tuple[str, int]]:
    mods = {"plain": [], "shift": ["KEY_LEFTSHIFT"], "altgr": [ALTGR_KEY],
            "shift_altgr": ["KEY_LEFTSHIFT", ALTGR_KEY]}[level]
    return [(m, 1) for m in mods] + [(key, 1), (key, 0)] + [(m, 0) for m in reversed(mods)]


class KeyDecoder:
    """Turns evdev key events (code, value) into characters and ends a code on KEY_ENTER /
    KEY_KPENTER / KEY_TAB (configurable)."""

    def __init__(self, keymap: Keymap, *, terminators: Iterable[str] = ("KEY_ENTER", "KEY_KPENTER"),
                 max_length: int = 512):
        self.keymap = keymap
        self.terminators = frozenset(terminators)
        self.max_length = max_length
        self.unknown: Counter[str] = Counter()  # keys the layout does not map, by name
        self.reset()

    def reset(self) -> None:
        """Forget any half-typed code and held modifiers (after reopening the device)."""
        self._text: list[str] = []
        self._held: set[str] = set()
        self._caps = False
        self._dead: str | None = None
        self._alt_digits = ""

    def feed(self, key: str, value: int) -> str | None:
        """One key event (value 1 down, 0 up, 2 repeat); the code's text when a terminator goes down."""
        if value == 0:
            self._held.discard(key)
            if key == ALT_KEY and self._alt_digits:
                self._alt_code()
            return None
        if value != 1:
            # Autorepeat: a scanner never holds a key on purpose, so a repeat is
            # the host's timer firing during a slow scan, not a second character.
            return None
        self._held.add(key)
        if key in self.terminators:
            return self.flush()
        if key == "KEY_CAPSLOCK":
            self._caps = not self._caps
        if key in _SILENT or key in SHIFT_KEYS or key in CTRL_KEYS or key in (ALT_KEY, ALTGR_KEY):
            return None
        if ALT_KEY in self._held and key.startswith("KEY_KP") and key[6:].isdigit():
            self._alt_digits += key[6:]
            return None
        self._key(key)
        return None

    def flush(self) -> str | None:
        """The text typed since the last code, without waiting for a terminator (None if none)."""
        self._add(self._undead())
        text = "".join(self._text)
        self._text = []
        return text or None

    def _key(self, key: str) -> None:
        shift = bool(self._held & SHIFT_KEYS)
        level = ("shift_altgr" if shift else "altgr") if ALTGR_KEY in self._held else ("shift" if shift else "plain")
        plain = self.keymap.char(key, "plain")
        if self._caps and plain and plain.isalpha() and self.keymap.char(key, "shift") == plain.upper():
            # Caps Lock shifts letters only (and Shift with Caps Lock un-shifts them).
            level = {"plain": "shift", "shift": "plain"}.get(level, level)
        c = self.keymap.char(key, level)
        if c is None:
            self.unknown[key] += 1
            self._add(self._undead() + REPLACEMENT)
            return
        if self._held & CTRL_KEYS:
            upper = c.upper()
            if upper in _CTRL_CHARS:
                self._add(self._undead() + chr(ord(upper) & 0x1F))
            else:
                self.unknown[f"CTRL+{key}"] += 1
                self._add(self._undead() + REPLACEMENT)
            return
        if self.keymap.is_dead(key, level):
            self._add(self._undead())
            self._dead = c
            return
        self._add(self._compose(c))

    def _undead(self) -> str:
        """A pending dead key's accent, on its own (nothing to put it on)."""
        dead, self._dead = self._dead, None
        return dead or ""

    def _compose(self, c: str) -> str:
        dead = self._undead()
        if not dead:
            return c
        if c == " ":
            return dead
        composed = unicodedata.normalize("NFC", c + COMBINING[dead])
        return composed if len(composed) == 1 else dead + c

    def _alt_code(self) -> None:
        # Alt + keypad digits, released: the character with that number. A
        # leading 0 means the Windows ANSI code page, none the OEM one (437),
        # which is how "Alt mode" scanners send GS as Alt+0029.
        digits, self._alt_digits = self._alt_digits, ""
        n = int(digits)
        if n > 255:
            self.unknown[f"ALT+{digits}"] += 1
            self._add(self._undead() + REPLACEMENT)
            return
        codec = "cp1252" if digits.startswith("0") else "cp437"
        self._add(self._undead() + bytes([n]).decode(codec, errors="replace"))

    def _add(self, chars: str) -> None:
        # Keep one character past the limit so protocol.parse reports the code as overlong.
        for c in chars:
            if len(self._text) <= self.max_length:
                self._text.append(c)
