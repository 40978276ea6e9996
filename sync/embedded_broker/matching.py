"""Topic names, topic filters and shared subscriptions (MQTT 5 section 4.7 and 4.8.2); pure."""

from __future__ import annotations

from functools import lru_cache

SHARE_PREFIX = "$share/"


def valid_topic_name(topic: str) -> bool:
    """A topic a PUBLISH (or a Will) may name: non-empty, no wildcards (4.7.3, 3.3.2-2)."""
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_filter(flt: str) -> bool:
    """``#`` only last and alone in its level, ``+`` alone in its level (4.7.1.2, 4.7.1.3)."""
    if not flt:
        return False  # 4.7.3-1: at least one character
    levels = flt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def parse_shared(flt: str) -> tuple[str, str] | None:
    """(group, filter) of ``$share/{group}/{filter}``; None for an ordinary filter.

    ValueError when it starts with ``$share/`` but is not a valid shared
    subscription (4.8.2: the group has no ``/``, ``+`` or ``#`` and is
    followed by ``/`` and a non-empty filter).
    """
    if not flt.startswith(SHARE_PREFIX):
        return None
    group, sep, inner = flt[len(SHARE_PREFIX):].partition("/")
    if not group or not sep or "+" in group or "#" in group or not valid_filter(inner):
        raise ValueError(f"bad shared subscription {flt!r}")
    return group, inner


@lru_cache(maxsize=4096)
def _levels(s: str) -> tuple[str, ...]:
    return tuple(s.split("/"))


def matches(flt: str, topic: str) -> bool:
    """Whether ``topic`` matches ``flt``; a leading wildcard never matches a ``$`` topic (4.7.2)."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    f, t = _levels(flt), _levels(topic)
    for i, level in enumerate(f):
        if level == "#":
            return True  # also matches the parent level: "a/#" matches "a" (4.7.1.2)
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)
