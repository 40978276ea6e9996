"""GS1 element strings, check digits and GTIN keys, on biip. No I/O.

biip (a maintained GS1 library) knows every application identifier (AI)
of the GS1 General Specifications with its format, which AIs end with an
FNC1, the date rules (day 00 = last day of the month, the century by the
sliding window of section 7.12), the decimals of 310n/392n/393n, and the
check digits of GTINs, SSCCs and GLNs. What stays here is the store's side:
the names a scan's fields have on the live feed (``FIELDS``), the reasons a
bad scan gives (naming the AI and its title, not a regular expression),
refusing a wrong check digit where biip only notes it, and the GTIN lookup
key. An FNC1 that ends a variable-length field reaches us as GS (0x1D), the
ASCII character scanners send for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString

GS = "\x1d"  # what a scanner sends for an FNC1 that ends a variable-length field


class Gs1Error(ValueError):
    """An element string that breaks the GS1 rules; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Field:
    """The name an AI's value has in ``Scan.fields``."""

    name: str
    currency: bool = False  # 391n/393n: an ISO 4217 numeric code before the amount goes in "currency"


# Names for the AIs a till cares about, keyed by AI or by its first three
# digits for the "n" families (310n: n decimals). Every other AI biip knows
# is kept under its own number ("7240": "..."), so nothing scanned is lost.
FIELDS: dict[str, Field] = {
    "00": Field("sscc"),
    "01": Field("gtin"),
    "02": Field("content"),
    "10": Field("batch"),
    "11": Field("prod_date"),
    "12": Field("due_date"),
    "13": Field("pack_date"),
    "15": Field("best_before"),
    "16": Field("sell_by"),
    "17": Field("expiry"),
    "20": Field("variant"),
    "21": Field("serial"),
    "30": Field("var_count"),
    "37": Field("count"),
    "310": Field("net_weight_kg"),
    "320": Field("net_weight_lb"),
    "392": Field("price"),
    "393": Field("price", currency=True),
    "400": Field("order_number"),
    "7003": Field("expiry_time"),
    "8200": Field("product_url"),
}

# GS1 AI encodable character set 82 (General Specifications 7.11), for the reason a text field is refused.
CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
# One component of an AI's data format: N6, N..15, X..20.
_ONE_FORMAT = re.compile(r"([NX])(\.\.)?([0-9]+)")

# "(01)09501101530003(17)140704": the human-readable form, AI in parentheses (3.1).
_HRI_AI = re.compile(r"\(([0-9]{2,4})\)")


def gtin_check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit for ``digits`` (everything before the check digit)."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected digits, got {digits[:40]!r}")
    return gs1_standard_check_digit(digits)


def check_digit_problem(digits: str, name: str) -> str | None:
    """None when the last digit of ``digits`` is right, else a reason naming ``name``."""
    want = gtin_check_digit(digits[:-1])
    if int(digits[-1]) != want:
        return f"{name} check digit is {digits[-1]}, expected {want}"
    return None


def gtin_key(gtin: str) -> str:
    """The lookup key for a GTIN: a GTIN-14 with a leading 0 as 13 digits, and a
    13-digit GTIN with a leading 0 as its 12-digit UPC-A (the same symbol)."""
    if len(gtin) == 14 and gtin[0] == "0":
        gtin = gtin[1:]
    if len(gtin) == 13 and gtin[0] == "0":
        gtin = gtin[1:]
    return gtin


def is_element_string(text: str) -> bool:
    """True when ``text`` is marked as GS1 data: a GS in it, or the "(01)..." form."""
    return GS in text or _HRI_AI.match(text) is not None


def parse(text: str) -> dict[str, str]:
    """The named fields of an element string, raw (GS after variable fields) or "(AI)..."; Gs1Error if bad."""
    elements = _split_hri(text) if text.startswith("(") else _split_raw(text)
    if not elements:
        raise Gs1Error("GS1 data has no AI")
    return _fields(elements)


def is_digital_link(text: str) -> bool:
    """True when ``text`` could be a GS1 Digital Link URI: an http(s) URL."""
    return text[:8].lower().startswith(("https://", "http://"))


def parse_digital_link(url: str) -> dict[str, str] | None:
    """The named fields of a GS1 Digital Link URI ("https://id.gs1.org/01/09506000134352/10/AB?17=261231"),
    None for a URL that is not one, Gs1Error for one whose data breaks the GS1 rules."""
    try:
        link = GS1DigitalLinkURI.parse(url)
    except (ParseError, ValueError):  # ValueError: urllib on a malformed host ("http://[")
        return None  # an ordinary web address: no GS1 primary key in its path
    for element in link.element_strings:
        _checked(element)
    return _fields(link.element_strings)


def _fields(elements: list[GS1ElementString]) -> dict[str, str]:
    """Checked elements as ``Scan.fields``: FIELDS' names, else the AI number."""
    fields: dict[str, str] = {}
    seen: set[str] = set()
    for element in elements:
        ai = element.ai.ai
        if ai in seen:
            raise Gs1Error(f"AI {ai} appears twice")
        seen.add(ai)
        field = FIELDS.get(ai) or FIELDS.get(ai[:3]) or Field(ai)
        fields[field.name] = _value(element)
        if field.currency:
            fields["currency"] = element.pattern_groups[0]  # ISO 4217 numeric, e.g. 978 for EUR
    return fields


def _split_raw(text: str) -> list[GS1ElementString]:
    """Element strings as scanners send them: GS after variable-length fields, allowed after any."""
    out: list[GS1ElementString] = []
    at = 0
    while at < len(text):
        if text[at] == GS:  # a leading FNC1, or one after a fixed-length field: both allowed (7.8.6)
            at += 1
            continue
        rest = text[at:]
        ai = _ai(rest)
        if ai is None:
            raise Gs1Error(f"unknown GS1 AI at position {at}: {rest[:4]!r}")
        data = rest[len(ai.ai):].split(GS, 1)[0]
        try:
            element = GS1ElementString.extract(rest)
        except ParseError as err:
            raise Gs1Error(_reason(ai, data)) from err
        at += len(element)
        # biip stops a variable-length field at its maximum or at a character it may not hold; GS1 wants
        # an FNC1 there (or the end), so what follows would be misread as the next AI: say what is wrong.
        if ".." in ai.format and at < len(text) and text[at] != GS:
            raise Gs1Error(_reason(ai, data))
        out.append(_checked(element))
    return out


def _split_hri(text: str) -> list[GS1ElementString]:
    """Element strings of the human-readable "(01)...(10)..." form."""
    marks = list(_HRI_AI.finditer(text))
    if not marks or marks[0].start() != 0:
        raise Gs1Error("GS1 data in parentheses must start with '(AI)'")
    out = []
    for mark, following in zip(marks, [*marks[1:], None]):
        number, data = mark.group(1), text[mark.end():following.start() if following else len(text)]
        ai = _ai(number)
        if ai is None or ai.ai != number:
            raise Gs1Error(f"unknown GS1 AI ({number})")
        try:
            element = GS1ElementString.parse(number + data)
        except ParseError as err:
            raise Gs1Error(_reason(ai, data)) from err
        out.append(_checked(element))
    return out


def _ai(text: str) -> GS1ApplicationIdentifier | None:
    try:
        return GS1ApplicationIdentifier.extract(text)
    except ParseError:
        return None


def _where(ai: GS1ApplicationIdentifier) -> str:
    return f"AI {ai.ai} ({ai.data_title})"


def _reason(ai: GS1ApplicationIdentifier, data: str) -> str:
    """What is wrong with ``data`` for ``ai``, in words a store can act on, from biip's format ("N2+X..20")."""
    where, fmt = _where(ai), ai.format.split("+", 1)[1]
    if not data:
        return f"{where} is empty"
    m = _ONE_FORMAT.fullmatch(fmt)
    if m is None:  # several components (393n: currency, then amount)
        return f"{where} {data[:20]!r} does not fit its format {fmt}"
    kind, variable, n = m.group(1), bool(m.group(2)), int(m.group(3))
    if kind == "N" and not (data.isascii() and data.isdigit()):
        return f"{where} must be digits, got {data[:20]!r}"
    if not variable and len(data) != n:
        return f"{where} needs {n} characters, got {len(data)}"
    if len(data) > n:
        return f"{where} is longer than {n} characters"
    bad = next((c for c in data if c not in CSET82), None)
    if kind == "X" and bad is not None:
        return f"{where} has {bad!r}, which GS1 does not allow"
    if "YYMMDD" in ai.description:  # month 13, or a day the month does not have (230229)
        return f"{where} {data!r} is not a date (YYMMDD)"
    return f"{where} {data[:20]!r} does not fit its format {fmt}"


def _checked(element: GS1ElementString) -> GS1ElementString:
    """The element, unless biip found a wrong check digit in it (it notes, we refuse)."""
    problem = element.gtin_error or element.sscc_error or element.gln_error
    if problem:
        raise Gs1Error(check_digit_problem(element.value, _where(element.ai)) or f"{_where(element.ai)}: {problem}")
    return element


def _value(element: GS1ElementString) -> str:
    """An element's value as the feed shows it: ISO dates, plain decimals, else the data as sent."""
    if element.datetime is not None:
        return element.datetime.isoformat(timespec="minutes")
    if element.date is not None:
        return element.date.isoformat()
    if element.decimal is not None:
        places, digits = int(element.ai.ai[3]), element.pattern_groups[-1]
        if places > len(digits):
            raise Gs1Error(f"{_where(element.ai)} has {places} decimals but only {len(digits)} digits")
        return f"{element.decimal:f}"
    return element.value
