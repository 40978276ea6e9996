"""GS1 element strings: application identifiers (AIs), check digits, dates. No I/O.

References are to the GS1 General Specifications: section 3 for the AIs
(one subsection each), 7.9 for the check digit, 7.11 for character set 82,
7.12 for the century of a YYMMDD date. An FNC1 that ends a variable-length
field reaches us as GS (0x1D), the ASCII character scanners send for it.
Section numbers move between releases; the titles do not.
"""

from __future__ import annotations

import calendar
import datetime
import enum
import re
from dataclasses import dataclass

GS = "\x1d"  # what a scanner sends for an FNC1 that ends a variable-length field

# GS1 AI encodable character set 82 (General Specifications 7.11).
CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


class Gs1Error(ValueError):
    """An element string that breaks the GS1 rules; the message is the reason."""


class Fmt(str, enum.Enum):
    """How an AI's data is checked and turned into a field value."""

    DIGITS = "digits"        # N..: digits only
    CHECKED = "checked"      # N18/N14 whose last digit is a GS1 check digit (7.9)
    TEXT = "text"            # X..: character set 82
    DATE = "date"            # N6 YYMMDD, day 00 = last day of the month (the date AIs in 3)
    DECIMAL = "decimal"      # N6/N..15 with the AI's last digit giving the decimals (310n, 392n)
    CURRENCY = "currency"    # ISO 4217 numeric code (3 digits), then a decimal (393n)


@dataclass(frozen=True, slots=True)
class Ai:
    """One row of the AI table: its title, the field it fills, its format and length."""

    title: str
    field: str
    fmt: Fmt
    length: int            # the fixed length, or the maximum when variable
    fixed: bool = False
    decimals: bool = False  # a 4-digit AI "xxxn" whose last digit n is the number of decimals


# The AIs a store sees on goods, keyed by AI, or by the first three digits for
# the "n" families (310n, 320n, 392n, 393n). GS1 keeps AIs prefix-free, so a
# 2-, 3- or 4-digit lookup is never ambiguous. Add rows here, not code.
AIS: dict[str, Ai] = {
    "00": Ai("SSCC", "sscc", Fmt.CHECKED, 18, fixed=True),
    "01": Ai("GTIN", "gtin", Fmt.CHECKED, 14, fixed=True),
    "02": Ai("CONTENT", "content", Fmt.CHECKED, 14, fixed=True),
    "10": Ai("BATCH/LOT", "batch", Fmt.TEXT, 20),
    "11": Ai("PROD DATE", "prod_date", Fmt.DATE, 6, fixed=True),
    "13": Ai("PACK DATE", "pack_date", Fmt.DATE, 6, fixed=True),
    "15": Ai("BEST BEFORE", "best_before", Fmt.DATE, 6, fixed=True),
    "17": Ai("USE BY", "expiry", Fmt.DATE, 6, fixed=True),
    "20": Ai("VARIANT", "variant", Fmt.DIGITS, 2, fixed=True),
    "21": Ai("SERIAL", "serial", Fmt.TEXT, 20),
    "30": Ai("VAR. COUNT", "var_count", Fmt.DIGITS, 8),
    "37": Ai("COUNT", "count", Fmt.DIGITS, 8),
    "310": Ai("NET WEIGHT (kg)", "net_weight_kg", Fmt.DECIMAL, 6, fixed=True, decimals=True),
    "320": Ai("NET WEIGHT (lb)", "net_weight_lb", Fmt.DECIMAL, 6, fixed=True, decimals=True),
    "392": Ai("PRICE", "price", Fmt.DECIMAL, 15, decimals=True),
    "393": Ai("PRICE", "price", Fmt.CURRENCY, 18, decimals=True),
    "400": Ai("ORDER NUMBER", "order_number", Fmt.TEXT, 30),
    "8200": Ai("PRODUCT URL", "product_url", Fmt.TEXT, 70),
}

# "(01)09501101530003(17)140704": the human-readable form, AI in parentheses (3.1).
_HRI_AI = re.compile(r"\(([0-9]{2,4})\)")


def gtin_check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit for ``digits`` (everything before the check digit)."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected digits, got {digits[:40]!r}")
    # 7.9: weights 3 and 1 alternate from the rightmost digit leftwards.
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


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


def lookup(text: str, at: int) -> tuple[str, Ai] | None:
    """The AI that starts ``text`` at ``at`` and its table row, or None if unknown."""
    for n in (2, 3, 4):
        row = AIS.get(text[at:at + n])
        if row is None:
            continue
        ai = text[at:at + n + 1] if row.decimals else text[at:at + n]
        if row.decimals and (len(ai) != n + 1 or ai[-1] not in "0123456789"):
            raise Gs1Error(f"AI {ai[:n]}n needs its last digit n, the number of decimals")
        return ai, row
    return None


def split_raw(text: str) -> list[tuple[str, str]]:
    """(AI, data) pairs of an element string as scanners send it, GS after variable fields."""
    pairs: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        if text[at] == GS:  # a leading FNC1, or one after a fixed-length field: both allowed
            at += 1
            continue
        found = lookup(text, at)
        if found is None:
            raise Gs1Error(f"unknown GS1 AI at position {at}: {text[at:at + 4]!r}")
        ai, row = found
        at += len(ai)
        if row.fixed:
            data = text[at:at + row.length]
            at += len(data)
        else:
            end = text.find(GS, at)
            end = len(text) if end < 0 else end
            data = text[at:end]
            at = end
        pairs.append((ai, data))
    return pairs


def split_hri(text: str) -> list[tuple[str, str]]:
    """(AI, data) pairs of the human-readable "(01)...(10)..." form."""
    marks = list(_HRI_AI.finditer(text))
    if not marks or marks[0].start() != 0:
        raise Gs1Error("GS1 data in parentheses must start with '(AI)'")
    pairs = []
    for mark, following in zip(marks, [*marks[1:], None]):
        end = following.start() if following else len(text)
        found = lookup(mark.group(1), 0)
        if found is None or found[0] != mark.group(1):
            raise Gs1Error(f"unknown GS1 AI ({mark.group(1)})")
        pairs.append((found[0], text[mark.end():end]))
    return pairs


def interpret(pairs: list[tuple[str, str]], *, today: datetime.date | None = None) -> dict[str, str]:
    """Check each AI's data and turn the pairs into named fields; Gs1Error on the first problem."""
    if not pairs:
        raise Gs1Error("GS1 data has no AI")
    fields: dict[str, str] = {}
    seen: dict[str, str] = {}
    for ai, data in pairs:
        found = lookup(ai, 0)
        if found is None:
            raise Gs1Error(f"unknown GS1 AI {ai}")
        row = found[1]
        if ai in seen:
            raise Gs1Error(f"AI {ai} appears twice")
        seen[ai] = data
        fields[row.field] = _value(ai, row, data, today or datetime.date.today())
        if row.fmt is Fmt.CURRENCY:
            fields["currency"] = data[:3]  # ISO 4217 numeric, e.g. 978 for EUR
    return fields


def _value(ai: str, row: Ai, data: str, today: datetime.date) -> str:
    where = f"AI {ai} ({row.title})"
    if row.fixed and len(data) != row.length:
        raise Gs1Error(f"{where} needs {row.length} characters, got {len(data)}")
    if not data:
        raise Gs1Error(f"{where} is empty")
    if len(data) > row.length:
        raise Gs1Error(f"{where} is longer than {row.length} characters")
    if row.fmt is Fmt.TEXT:
        bad = next((c for c in data if c not in CSET82), None)
        if bad is not None:
            raise Gs1Error(f"{where} has {bad!r}, which GS1 does not allow")
        return data
    if not (data.isascii() and data.isdigit()):
        raise Gs1Error(f"{where} must be digits, got {data[:20]!r}")
    if row.fmt is Fmt.CHECKED:
        problem = check_digit_problem(data, where)
        if problem:
            raise Gs1Error(problem)
        return data
    if row.fmt is Fmt.DATE:
        return _date(data, where, today)
    if row.fmt is Fmt.DECIMAL:
        return _decimal(data, int(ai[-1]), where)
    if row.fmt is Fmt.CURRENCY:
        if len(data) < 4:
            raise Gs1Error(f"{where} needs a 3-digit currency and an amount")
        return _decimal(data[3:], int(ai[-1]), where)
    return data


def _decimal(digits: str, places: int, where: str) -> str:
    # Measures and amounts (310n, 392n ...): the AI's last digit n says where the decimal point goes.
    if places > len(digits):
        raise Gs1Error(f"{where} has {places} decimals but only {len(digits)} digits")
    whole = digits[:len(digits) - places].lstrip("0") or "0"
    return f"{whole}.{digits[len(digits) - places:]}" if places else whole


def _date(yymmdd: str, where: str, today: datetime.date) -> str:
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    if not 1 <= mm <= 12:
        raise Gs1Error(f"{where} month {yymmdd[2:4]} is not 01-12")
    year = century_year(yy, today.year)
    last = calendar.monthrange(year, mm)[1]
    # Each date AI's section: day 00 means "the last day of the month".
    if dd == 0:
        dd = last
    elif dd > last:
        raise Gs1Error(f"{where} day {yymmdd[4:]} is past the end of {year}-{mm:02d}")
    return f"{year:04d}-{mm:02d}-{dd:02d}"


def century_year(yy: int, current_year: int) -> int:
    """The four-digit year for a two-digit one, by GS1's sliding window (7.12)."""
    century, now = divmod(current_year, 100)
    diff = yy - now
    if 51 <= diff <= 99:
        century -= 1
    elif -99 <= diff <= -50:
        century += 1
    return century * 100 + yy
