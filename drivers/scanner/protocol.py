"""What a barcode scanner sends, parsed and checked: one decoded code as text. No I/O.

A scan is the text of one code, its suffix (CR, LF, Enter) already removed by
the framer or key decoder, optionally led by an AIM symbology identifier
(ISO/IEC 15424): "]" + code character + modifier, e.g. "]E0" for EAN-13.
GS1 data comes as element strings (GS1-128, GS1 DataMatrix, ...) or as a
GS1 Digital Link URI in a QR code ("https://id.gs1.org/01/<GTIN>/10/<lot>"),
both read by biip through ``gs1``; any other URL stays a plain code.

Besides GS1 codes the chain prints its own, all plain ASCII (``CHAIN_FORMS``):

    RM1:<member_id>              member card QR; member_id [A-Z0-9-]{4,32}
    RP1:<order_id>:<pickup_code> order pickup QR; order_id [A-Za-z0-9-]{1,64}, pickup_code 6 digits
    RS1:<sale_id>                sale receipt, printed as Code 128; sale_id a UUID

The digit after the letters is the form's version: a new form gets a new
prefix and a new row in ``CHAIN_FORMS``, and old cards keep scanning.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from biip.upc import Upc

from drivers.scanner import gs1
from drivers.scanner.gs1 import gtin_check_digit

__all__ = [
    "AIM", "CHAIN_FORMS", "BadScan", "ChainForm", "CodeKind", "Scan", "Symbology",
    "expand_upce", "gtin_check_digit", "parse", "shown",
]

MAX_LENGTH = 512


class Symbology(str, enum.Enum):
    """The barcode symbology a code came from (as far as it can be told)."""

    EAN13 = "ean13"
    EAN8 = "ean8"
    UPCA = "upca"
    UPCE = "upce"
    CODE128 = "code128"
    GS1_128 = "gs1-128"
    GS1_DATAMATRIX = "gs1-datamatrix"
    QR = "qr"
    UNKNOWN = "unknown"
    # Only ever set from an AIM identifier: without one they cannot be told apart.
    CODE39 = "code39"
    CODE93 = "code93"
    CODABAR = "codabar"
    ITF = "itf"
    DATAMATRIX = "datamatrix"
    PDF417 = "pdf417"
    AZTEC = "aztec"
    GS1_DATABAR = "gs1-databar"


class CodeKind(str, enum.Enum):
    """What a code is for at the till."""

    PRODUCT = "product"
    MEMBER = "member"
    PICKUP = "pickup"
    RECEIPT = "receipt"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Scan:
    """A good scan: ``code`` is the lookup key, ``raw`` the text as received."""

    code: str
    symbology: Symbology
    kind: CodeKind
    fields: dict[str, str] = field(default_factory=dict)
    raw: str = ""


@dataclass(frozen=True, slots=True)
class BadScan:
    """A scan that cannot be used; ``raw`` is printable and short, ``reason`` says why."""

    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class AimCode:
    """One AIM code character: the symbology, and which modifiers mean GS1 data (FNC1 first)."""

    name: str
    symbology: Symbology
    gs1_modifiers: str = ""
    gs1_symbology: Symbology | None = None


# ISO/IEC 15424 code characters. The GS1 modifiers (FNC1 in first position)
# are those of the GS1 General Specifications' symbology identifier table
# (]C1, ]e0, ]d2, ]Q3, ]J1) plus the ECI variants ]d5 and ]Q4. "E" (EAN/UPC) is handled by ``_EAN_MODIFIERS``.
AIM: dict[str, AimCode] = {
    "A": AimCode("Code 39", Symbology.CODE39),
    "B": AimCode("Telepen", Symbology.UNKNOWN),
    "C": AimCode("Code 128", Symbology.CODE128, "1", Symbology.GS1_128),
    "D": AimCode("Code One", Symbology.UNKNOWN),
    "E": AimCode("EAN/UPC", Symbology.EAN13),
    "F": AimCode("Codabar", Symbology.CODABAR),
    "G": AimCode("Code 93", Symbology.CODE93),
    "H": AimCode("Code 11", Symbology.UNKNOWN),
    "I": AimCode("Interleaved 2 of 5", Symbology.ITF),
    "J": AimCode("DotCode", Symbology.UNKNOWN, "1", Symbology.UNKNOWN),
    "K": AimCode("Code 16K", Symbology.UNKNOWN),
    "L": AimCode("PDF417", Symbology.PDF417),
    "M": AimCode("MSI", Symbology.UNKNOWN),
    "N": AimCode("Anker", Symbology.UNKNOWN),
    "O": AimCode("Codablock", Symbology.UNKNOWN),
    "P": AimCode("Plessey", Symbology.UNKNOWN),
    "Q": AimCode("QR Code", Symbology.QR, "34", Symbology.QR),
    "R": AimCode("Straight 2 of 5 (2-bar start/stop)", Symbology.UNKNOWN),
    "S": AimCode("Straight 2 of 5 (3-bar start/stop)", Symbology.UNKNOWN),
    "T": AimCode("Code 49", Symbology.UNKNOWN),
    "U": AimCode("MaxiCode", Symbology.UNKNOWN),
    "X": AimCode("other barcode", Symbology.UNKNOWN),
    "Y": AimCode("system expansion", Symbology.UNKNOWN),
    "Z": AimCode("non-barcode (keyed in)", Symbology.UNKNOWN),
    "c": AimCode("Channel Code", Symbology.UNKNOWN),
    "d": AimCode("Data Matrix", Symbology.DATAMATRIX, "25", Symbology.GS1_DATAMATRIX),
    "e": AimCode("GS1 DataBar", Symbology.GS1_DATABAR, "0", Symbology.GS1_DATABAR),
    "h": AimCode("Han Xin", Symbology.UNKNOWN),
    "o": AimCode("OCR", Symbology.UNKNOWN),
    "p": AimCode("Posicode", Symbology.UNKNOWN),
    "s": AimCode("SuperCode", Symbology.UNKNOWN),
    "z": AimCode("Aztec", Symbology.AZTEC),
}

# ]E modifiers (ISO/IEC 15424): what follows the prefix.
_EAN_MODIFIERS = {
    "0": "EAN-13, UPC-A or UPC-E",
    "1": "2-digit add-on alone",
    "2": "5-digit add-on alone",
    "3": "EAN/UPC with add-on",
    "4": "EAN-8",
}


@dataclass(frozen=True, slots=True)
class ChainForm:
    """One of the chain's own code formats: a prefix, then text matching ``pattern``."""

    prefix: str
    kind: CodeKind
    pattern: re.Pattern[str]   # named groups become ``Scan.fields``
    key: str                   # the group that is ``Scan.code``
    printed_as: Symbology      # what the chain prints it as, used when no AIM prefix says
    what: str                  # for reasons: "member id"
    fold: bool = False         # lower-case the fields (hex UUIDs: case carries no meaning)


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

CHAIN_FORMS: tuple[ChainForm, ...] = (
    ChainForm("RM1:", CodeKind.MEMBER, re.compile(r"(?P<member_id>[A-Z0-9-]{4,32})"),
              "member_id", Symbology.QR, "member id ([A-Z0-9-]{4,32})"),
    ChainForm("RP1:", CodeKind.PICKUP, re.compile(r"(?P<order_id>[A-Za-z0-9-]{1,64}):(?P<pickup_code>[0-9]{6})"),
              "order_id", Symbology.QR, "<order_id>:<6-digit pickup code>"),
    ChainForm("RS1:", CodeKind.RECEIPT, re.compile(rf"(?P<sale_id>{_UUID})"),
              "sale_id", Symbology.CODE128, "sale id (a UUID)", fold=True),
)

# Lengths of an all-digit code that make it a GTIN (GTIN-8, -12, -13, -14).
_GTIN_NAMES = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}


def parse(
    text: str,
    *,
    aim: bool = False,
    min_length: int = 1,
    max_length: int = MAX_LENGTH,
    forms: Sequence[ChainForm] = CHAIN_FORMS,
) -> Scan | BadScan:
    """Parse one scanned code; never raises, bad input gives a ``BadScan`` with the reason."""
    if len(text) > max_length:
        return BadScan(shown(text), f"longer than {max_length} characters")
    for i, c in enumerate(text):
        # GS is how scanners send FNC1 (GS1 separator); any other control
        # character is line noise or a misconfigured suffix.
        if c != gs1.GS and unicodedata.category(c) == "Cc":
            return BadScan(shown(text), f"control character 0x{ord(c):02x} at {i}")
        if c == "\ufffd":
            return BadScan(shown(text), f"unreadable character at {i} (undecodable byte or unmapped key)")
    if aim:
        if len(text) < 3 or text[0] != "]":
            return BadScan(shown(text), "missing AIM symbology identifier (expected ']' and 2 characters, e.g. ]E0)")
        ident, payload = text[:3], text[3:]
        code = AIM.get(ident[1])
        if code is None or not (ident[2].isascii() and ident[2].isalnum()):
            return BadScan(shown(text), f"unknown AIM symbology identifier {ident!r}")
    else:
        ident, payload, code = "", text, None
    if len(payload) < max(min_length, 1):
        return BadScan(shown(text), "empty code" if not payload else f"shorter than {min_length} characters")
    result = _by_aim(ident, code, payload, forms) if code else _inferred(payload, forms)
    if isinstance(result, str):
        return BadScan(shown(text), result)
    return Scan(result.code, result.symbology, result.kind, result.fields, text)


def expand_upce(upce: str) -> str:
    """The 12-digit UPC-A for an 8-digit UPC-E (number system 0 or 1); ValueError if bad."""
    if len(upce) != 8 or not (upce.isascii() and upce.isdigit()):
        raise ValueError(f"UPC-E must be 8 digits, got {upce[:20]!r}")
    if upce[0] not in "01":
        raise ValueError(f"UPC-E number system must be 0 or 1, got {upce[0]}")
    # biip expands by the zero-suppression rules and, given 7 digits, works out the check digit,
    # so that a wrong one is refused with the reason in the till's words.
    upca = Upc.parse(upce[:7]).as_upc_a()
    if upce[7] != upca[-1]:
        raise ValueError(f"UPC-E check digit is {upce[7]}, expected {upca[-1]}")
    return upca


def shown(text: str | bytes, limit: int = 80) -> str:
    """A printable, one-line, at most ``limit``-character rendering of what was received."""
    if isinstance(text, bytes):
        out = repr(text)[2:-1]
    else:
        out = "".join(c if c.isprintable() else _escape(c) for c in text)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _inferred(payload: str, forms: Sequence[ChainForm]) -> Scan | str:
    """No AIM prefix: tell the symbology from the shape of the text."""
    chain = _chain(payload, forms, None)
    if chain is not None:
        return chain
    if payload.isascii() and payload.isdigit() and len(payload) in _GTIN_NAMES:
        if len(payload) == 8:
            return _eight_digits(payload)
        return _gtin(payload, None)
    if gs1.is_element_string(payload):
        return _gs1(payload, Symbology.GS1_128)
    if payload[:2] in ("00", "01", "02"):
        # GS1-128 read with AIM off arrives as bare digits ("0109501101530003...").
        # Take it as GS1 only when it parses cleanly, else it is plain Code 128.
        found = _gs1(payload, Symbology.GS1_128)
        if isinstance(found, Scan):
            return found
    if gs1.is_digital_link(payload):
        # A GS1 Digital Link is printed as a QR code (or a DataMatrix): QR is the likelier guess.
        link = _digital_link(payload, Symbology.QR)
        if link is not None:
            return link
    symbology = Symbology.CODE128 if payload.isascii() else Symbology.UNKNOWN
    return Scan(payload, symbology, CodeKind.OTHER)


def _by_aim(ident: str, code: AimCode, payload: str, forms: Sequence[ChainForm]) -> Scan | str:
    """An AIM prefix decides the symbology; the payload must fit it."""
    letter, modifier = ident[1], ident[2]
    if letter == "E":
        return _ean(modifier, payload)
    if modifier in code.gs1_modifiers:
        return _gs1(payload, code.gs1_symbology or code.symbology)
    if letter == "I" and modifier == "1" and len(payload) == 14 and payload.isascii() and payload.isdigit():
        return _gtin(payload, Symbology.ITF)  # ITF-14 on outer cases
    chain = _chain(payload, forms, code.symbology)
    if chain is not None:
        return chain
    if gs1.is_digital_link(payload):
        link = _digital_link(payload, code.symbology)
        if link is not None:
            return link
    return Scan(payload, code.symbology, CodeKind.OTHER)


def _ean(modifier: str, payload: str) -> Scan | str:
    """]E data: digits whose count says EAN-13, UPC-A, UPC-E or EAN-8."""
    if modifier not in _EAN_MODIFIERS:
        return f"unknown EAN/UPC AIM modifier ']E{modifier}'"
    if not (payload.isascii() and payload.isdigit()):
        return f"]E{modifier} ({_EAN_MODIFIERS[modifier]}) data must be digits"
    n = len(payload)
    if modifier in "12":
        return f"EAN/UPC add-on sent alone (]E{modifier}); set the scanner to send add-ons with the main code (]E3)"
    if modifier == "4":
        return _ean8(payload) if n == 8 else f"]E4 (EAN-8) needs 8 digits, got {n}"
    if modifier == "3":
        # Main code then a 2- or 5-digit add-on (issue or price supplement).
        main_len = {15: 13, 18: 13, 14: 12, 17: 12}.get(n)
        if main_len is None:
            return f"]E3 (EAN/UPC with add-on) needs 14, 15, 17 or 18 digits, got {n}"
        main = _gtin(payload[:main_len], None)
        if isinstance(main, str):
            return main
        return Scan(main.code, main.symbology, main.kind, {**main.fields, "addon": payload[main_len:]})
    # ]E0: EAN-13 (ISO/IEC 15424 sends UPC-A and UPC-E as 13 digits too), but
    # many scanners send UPC-A as 12 and UPC-E as 8 digits.
    if n == 8:
        return _upce(payload)
    if n in (12, 13):
        return _gtin(payload, None)
    return f"]E0 (EAN-13, UPC-A or UPC-E) needs 8, 12 or 13 digits, got {n}"


def _eight_digits(payload: str) -> Scan | str:
    """8 digits without AIM: EAN-8 if its check digit fits, else UPC-E if that fits."""
    as_ean8 = _ean8(payload)
    if isinstance(as_ean8, Scan):
        return as_ean8
    as_upce = _upce(payload)
    return as_upce if isinstance(as_upce, Scan) else as_ean8


def _ean8(digits: str) -> Scan | str:
    problem = gs1.check_digit_problem(digits, "EAN-8")
    return problem or Scan(digits, Symbology.EAN8, CodeKind.PRODUCT)


def _upce(digits: str) -> Scan | str:
    try:
        upca = expand_upce(digits)
    except ValueError as err:
        return str(err)
    return Scan(upca, Symbology.UPCE, CodeKind.PRODUCT, {"upce": digits})


def _gtin(digits: str, symbology: Symbology | None) -> Scan | str:
    """A 12-, 13- or 14-digit GTIN: check digit, then the lookup key."""
    name = _GTIN_NAMES[len(digits)]
    problem = gs1.check_digit_problem(digits, name)
    if problem:
        return problem
    key = gs1.gtin_key(digits)
    if symbology is None:
        # An EAN-13 whose first digit is 0 is, bar for bar, the UPC-A symbol.
        symbology = {12: Symbology.UPCA, 13: Symbology.EAN13, 14: Symbology.ITF}[len(digits)]
        if len(digits) == 13 and len(key) == 12:
            symbology = Symbology.UPCA
    fields = {"gtin": digits} if len(digits) == 14 else {}
    return Scan(key, symbology, CodeKind.PRODUCT, fields)


def _gs1(payload: str, symbology: Symbology) -> Scan | str:
    """A GS1 element string in either form; the GTIN (AI 01), if any, is the key."""
    try:
        fields = gs1.parse(payload)
    except gs1.Gs1Error as err:
        return str(err)
    if "gtin" in fields:
        return Scan(gs1.gtin_key(fields["gtin"]), symbology, CodeKind.PRODUCT, fields)
    return Scan(payload, symbology, CodeKind.OTHER, fields)


def _digital_link(url: str, symbology: Symbology) -> Scan | str | None:
    """A GS1 Digital Link URI (a product's QR code: https://id.gs1.org/01/<GTIN>/...), a reason if
    its data is bad, None for any other web address (which stays a plain code)."""
    try:
        fields = gs1.parse_digital_link(url)
    except gs1.Gs1Error as err:
        return str(err)
    if fields is None:
        return None
    if "gtin" in fields:
        return Scan(gs1.gtin_key(fields["gtin"]), symbology, CodeKind.PRODUCT, fields)
    return Scan(url, symbology, CodeKind.OTHER, fields)


def _chain(payload: str, forms: Sequence[ChainForm], symbology: Symbology | None) -> Scan | str | None:
    """One of the chain's own codes, a reason if it has a chain prefix but a bad body, else None."""
    for form in forms:
        if payload.startswith(form.prefix):
            body = payload[len(form.prefix):]
            m = form.pattern.fullmatch(body)
            if m is None:
                return f"{form.prefix.rstrip(':')} code: {shown(body, 40)!r} is not a {form.what}"
            fields = {k: v.lower() if form.fold else v for k, v in m.groupdict().items() if v is not None}
            return Scan(fields[form.key], symbology or form.printed_as, form.kind, fields)
    return None
