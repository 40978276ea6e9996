"""Reading devices.yaml with the line of every node, and wording validation
errors for the people who fix the file (used by edge_agent/config.py)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from drivers.base import DEVICE_ID_PATTERN
from edge_core.config_types import CLIENT_NAME_PATTERN

STORE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")

# Common YAML mistakes: (words all found in PyYAML's problem and context, what to
# say, report the line where the construct opened rather than where it broke).
_YAML_HINTS: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (("'\\t'",), "a tab character; YAML indents with spaces only: replace the tab with spaces", False),
    (("cannot start any token",),
     "a value starts with a character YAML reserves (@, `, %); put the value in quotes", False),
    (("could not find expected ':'",),
     "a line that is neither 'key: value' nor '- item'; add the ':' or fix the indentation", True),
    (("end of stream", "quoted scalar"), "a quoted value is never closed; add the closing quote on this line", True),
    (("unknown escape character",), "a backslash in a \"double-quoted\" value; use 'single quotes' for paths", False),
    (("flow sequence",), "a '[...]' list is not closed or lacks a ','; fix it or write the list as '- ' lines", True),
    (("flow mapping",), "a '{...}' mapping is not closed or lacks a ','; fix it or write 'key: value' lines", True),
    (("another document",), "a second document ('---'); keep one document per file", False),
    (("undefined alias",),
     "an alias (*name) has no anchor (&name) above it; define the anchor or remove the alias", False),
    (("mapping values are not allowed",),
     "a ':' where none can go; quote a value that contains ': ', or fix the indentation", False),
    (("expected <block end>",),
     "this line's indentation does not line up with the lines above; indent keys of one mapping equally", False),
)


def yaml_problem(err: yaml.MarkedYAMLError, filename: str) -> str:
    """One YAML syntax error as ``FILE:LINE: what; how to fix``."""
    said = f"{err.problem or ''} {err.context or ''}"
    for needles, hint, at_context in _YAML_HINTS:
        if all(n in said for n in needles):
            mark = (err.context_mark if at_context else None) or err.problem_mark or err.context_mark
            return f"{filename}:{mark.line + 1 if mark else 1}: not valid YAML: {hint}"
    mark = err.problem_mark or err.context_mark
    what = "; ".join(p for p in (err.context, err.problem) if p) or str(err)
    return f"{filename}:{mark.line + 1 if mark else 1}: not valid YAML: {what}; check the quoting and indentation here"


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose nodes we walk ourselves to keep lines and catch duplicate keys."""


def compose(text: str, filename: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """Parse YAML into plain data, a map from path to 1-based line, and key problems."""
    problems: list[str] = []
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}
    walking: set[int] = set()
    # Per mapping node, the keys written in it rather than brought in by ``<<: *anchor``;
    # kept because flatten_mapping rewrites a node that an alias may show again.
    own_keys: dict[int, set[int]] = {}

    def dotted(path: tuple) -> str:
        return ".".join(str(p) for p in path)

    def build(n: yaml.Node, path: tuple) -> Any:
        lines[path] = n.start_mark.line + 1
        if id(n) in walking:
            problems.append(f"{filename}:{lines[path]}: {dotted(path)} refers to itself through an alias; "
                            "remove the alias")
            return None
        if isinstance(n, yaml.CollectionNode) and n.tag not in _PLAIN_TAGS:
            problems.append(f"{filename}:{lines[path]}: the YAML tag {n.tag!r} is not allowed; remove it")
        if isinstance(n, yaml.MappingNode):
            walking.add(id(n))
            if id(n) not in own_keys:
                own_keys[id(n)] = {id(k) for k, _ in n.value if k.tag != _MERGE_TAG}
                if len(own_keys[id(n)]) != len(n.value):
                    loader.flatten_mapping(n)  # merged pairs first, so a key written here wins
            own = own_keys[id(n)]
            out: dict[Any, Any] = {}
            owner: dict[Any, yaml.Node] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append(f"{filename}:{key_node.start_mark.line + 1}: a key must be a plain name, "
                                    "not a list or a mapping; write 'name: value'")
                    continue
                key = key_node.value
                if key in out and id(key_node) in own and id(owner[key]) in own:
                    problems.append(
                        f"{filename}:{key_node.start_mark.line + 1}: {dotted(path + (key,))} appears twice "
                        f"(first at line {owner[key].start_mark.line + 1}); keep one and delete the other"
                    )
                    continue
                owner[key] = key_node
                out[key] = build(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            walking.discard(id(n))
            return out
        if isinstance(n, yaml.SequenceNode):
            walking.add(id(n))
            items = [build(item, path + (i,)) for i, item in enumerate(n.value)]
            walking.discard(id(n))
            return items
        return loader.construct_object(n, deep=True)

    data = None if node is None else build(node, ())
    return data, lines, problems


def line_of(lines: Mapping[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` present in the file."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


# Pydantic errors as sentences -----------------------------------------------

# What a value of each type must be, and how to write one.
_MAPPING = ("a mapping", "indent its 'key: value' lines under it")
_TYPES: dict[str, tuple[str, str]] = {
    "string_type": ("text", "put the value in quotes"),
    "int_type": ("a whole number", "write it without quotes, e.g. 30"),
    "int_parsing": ("a whole number", "write it without quotes, e.g. 30"),
    "int_from_float": ("a whole number", "drop the decimals"),
    "float_type": ("a number", "write it without quotes or units, e.g. 5 or 0.5"),
    "float_parsing": ("a number", "write it without quotes or units, e.g. 5 or 0.5"),
    "bool_type": ("true or false", "write true or false"),
    "bool_parsing": ("true or false", "write true or false"),
    "dict_type": _MAPPING,
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "list_type": ("a list", "start each entry on its own line with '- '"),
    "path_type": ("a file path", "write it as text, e.g. /etc/edge-agent/ca.pem"),
}

# Patterns in plain words: what a value must be, and the fine print.
_PATTERNS: dict[str, tuple[str, str]] = {
    STORE_ID_PATTERN: ("lowercase letters, digits and '-', e.g. store-001",
                       "at most 64 characters, not starting or ending with '-'"),
    DEVICE_ID_PATTERN: ("lowercase letters, digits, '-' and '_', e.g. scanner-1",
                        "at most 64 characters, starting with a letter or digit"),
    CLIENT_NAME_PATTERN: ("letters, digits, '.', '_' and '-', e.g. kiosk-1",
                          "at most 64 characters, starting with a letter or digit"),
    CURRENCY_PATTERN: ("a three-letter ISO 4217 code in capitals", "e.g. CNY, USD or EUR"),
}

_BOUNDS = {"greater_than": ("gt", "small", "greater than"), "greater_than_equal": ("ge", "small", "at least"),
           "less_than": ("lt", "large", "less than"), "less_than_equal": ("le", "large", "at most")}


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` below ``model``, if known."""

    def model_in(tp: Any) -> type[BaseModel] | None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        return next((m for m in map(model_in, get_args(tp)) if m), None)

    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = model_in(field.annotation) if field else None
    return model


def shown_value(value: Any, loc: tuple) -> str:
    """`` (got X)`` for a scalar input, nothing for secrets and containers."""
    if isinstance(value, (dict, list)) or any("token" in str(p) or "password" in str(p) for p in loc):
        return ""
    if value is None:
        return " (it is empty)"
    if isinstance(value, str) and "://" in value:
        value = redact_url(value)
    return f" (got {value!r})"


def describe(err: Mapping[str, Any], loc: tuple, model: type[BaseModel] | None, rel: tuple) -> str:
    """One pydantic error at ``loc`` as ``what is wrong; how to fix it``.

    ``model`` and ``rel`` (``loc`` relative to ``model``) let an unknown key
    be answered with the keys that are allowed there.
    """
    name = ".".join(str(p) for p in loc)
    kind, ctx, got = err["type"], err.get("ctx") or {}, shown_value(err.get("input"), loc)
    if kind == "extra_forbidden":
        key, parent = str(loc[-1]), ".".join(str(p) for p in loc[:-1])
        where = f"in {parent}" if parent else "at the top level"
        here = _model_at(model, rel[:-1])
        allowed = list(here.model_fields) if here else []
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"unknown key {key!r} {where}; did you mean {close[0]!r}?"
        keys = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {key!r} {where}; remove it or check its spelling{keys}"
    if kind == "missing":
        return f"{name} is required; add it"
    if kind in _TYPES:
        what, fix = _TYPES[kind]
        if err.get("input") is None:
            fix = "write a value after the ':'"
        return f"{name} must be {what}{got}; {fix}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        what, fine_print = _PATTERNS[ctx["pattern"]]
        return f"{name} must be {what}{got}; {fine_print}"
    if kind in _BOUNDS:
        key, size, words = _BOUNDS[kind]
        bound = ctx[key]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{name} is too {size}{got}; use a number {words} {bound}"
    if kind in ("enum", "literal_error"):
        return f"{name} is not a valid choice{got}; use one of {ctx.get('expected', '?')}"
    if kind == "string_too_short":
        return f"{name} must not be empty; write a value after the ':'"
    if kind == "string_too_long":
        return f"{name} is too long; keep it to {ctx.get('max_length')} characters"
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx["error"]) if "error" in ctx else err["msg"].split(", ", 1)[-1]
        return f"{name}: {msg}" if name else msg
    return f"{name}: {err['msg']}{got}" if name else f"{err['msg']}{got}"


# Loading --------------------------------------------------------------------

