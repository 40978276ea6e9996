"""DLE EOT real-time status: the queries, every bit of the four replies, and garbage."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.printer import status as st
from drivers.printer.status import PrinterStatus
from edge_core.errors import DeviceProtocolError

HEALTHY = bytes((0x12, 0x12, 0x12, 0x12))  # the fixed bits alone: all is well


def with_bit(n: int, mask: int) -> bytes:
    """The healthy replies with ``mask`` set in the reply to DLE EOT ``n``."""
    replies = bytearray(HEALTHY)
    replies[n - 1] |= mask
    return bytes(replies)


def test_queries_are_dle_eot_n():
    assert st.query(1) == b"\x10\x04\x01"
    assert st.query(4) == b"\x10\x04\x04"
    assert st.all_queries() == b"\x10\x04\x01\x10\x04\x02\x10\x04\x03\x10\x04\x04"
    with pytest.raises(ValueError):
        st.query(5)


def test_healthy_printer():
    s = st.parse_status(HEALTHY)
    assert s == PrinterStatus()
    assert s.online and st.problem(s) is None and st.warning(s) is None


# (query n, bit mask, the field it sets, the value it takes)
BITS = [
    (1, 0x04, "drawer_pin3_high", True),
    (1, 0x08, "online", False),
    (1, 0x20, "waiting_recovery", True),
    (1, 0x40, "feed_button", True),
    (2, 0x04, "cover_open", True),
    (2, 0x20, "paper_end", True),
    (2, 0x40, "error", True),
    (3, 0x08, "cutter_error", True),
    (3, 0x20, "unrecoverable_error", True),
    (3, 0x40, "auto_recoverable_error", True),
    (4, 0x0C, "paper_near_end", True),
    (4, 0x60, "paper_end", True),
]


@pytest.mark.parametrize("n, mask, name, value", BITS, ids=[f"n{b[0]}-0x{b[1]:02x}-{b[2]}" for b in BITS])
def test_each_bit_sets_its_field_and_no_other(n, mask, name, value):
    s = st.parse_status(with_bit(n, mask))
    assert getattr(s, name) is value
    assert dataclasses.replace(s, **{name: not value}) == PrinterStatus()


@pytest.mark.parametrize("n, mask", [(2, 0x08), (3, 0x04)])
def test_bits_we_do_not_read_change_nothing(n, mask):
    # n=2 bit 3 (paper fed by the button) and n=3 bit 2 (undefined on some models).
    assert st.parse_status(with_bit(n, mask)) == PrinterStatus()


@pytest.mark.parametrize("mask", [0x20, 0x40, 0x60])
def test_either_paper_end_sensor_bit_counts(mask):
    # Epson sets bits 5 and 6 together; some clones set one of them.
    assert st.parse_status(with_bit(4, mask)).paper_end


@pytest.mark.parametrize("mask", [0x04, 0x08, 0x0C])
def test_either_near_end_sensor_bit_counts(mask):
    assert st.parse_status(with_bit(4, mask)).paper_near_end


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(PrinterStatus)])
def test_reply_round_trips_every_field(field):
    flipped = dataclasses.replace(PrinterStatus(), **{field: not getattr(PrinterStatus(), field)})
    replies = bytes(st.reply(n, flipped) for n in st.STATUS_QUERIES)
    parsed = st.parse_status(replies)
    assert getattr(parsed, field) == getattr(flipped, field)
    if field != "paper_end":  # paper end also sets the near-end bits, as the sensors do
        assert parsed == flipped


def test_paper_out_reply_bytes_match_python_escpos_masks():
    from escpos.constants import RT_MASK_LOWPAPER, RT_MASK_NOPAPER

    out = PrinterStatus(online=False, paper_end=True)
    assert st.reply(4, out) & RT_MASK_NOPAPER == RT_MASK_NOPAPER
    assert st.reply(4, PrinterStatus(paper_near_end=True)) == RT_MASK_LOWPAPER


@pytest.mark.parametrize(
    "status, reason",
    [
        (PrinterStatus(online=False, paper_end=True), "paper out"),
        (PrinterStatus(online=False, cover_open=True), "cover open"),
        (PrinterStatus(online=False, cover_open=True, paper_end=True), "cover open"),
        (PrinterStatus(online=False, error=True, cutter_error=True), "cutter error"),
        (PrinterStatus(online=False, error=True, unrecoverable_error=True), "unrecoverable error"),
        (PrinterStatus(online=False, error=True, auto_recoverable_error=True), "recoverable error (print head too hot?)"),
        (PrinterStatus(online=False, error=True), "printer error"),
        (PrinterStatus(online=False), "offline"),
    ],
)
def test_problem_names_the_reason(status, reason):
    assert st.problem(status) == reason


def test_paper_near_end_is_a_warning_not_a_problem():
    s = st.parse_status(with_bit(4, 0x0C))
    assert st.problem(s) is None
    assert st.warning(s) == "paper near end"
    assert st.warning(PrinterStatus(online=False, paper_end=True, paper_near_end=True)) is None


@pytest.mark.parametrize(
    "replies",
    [
        b"",  # silence
        b"\x12\x12\x12",  # one reply missing
        b"\x12\x12\x12\x12\x12",  # one too many
        b"\x00\x12\x12\x12",  # bits 1 and 4 clear
        b"\x12\x12\x12\x13",  # bit 0 set
        b"\x92\x12\x12\x12",  # bit 7 set
        b"\x10\x12\x12\x12",  # bit 1 clear
        b"\x02\x12\x12\x12",  # bit 4 clear
        b"\xff\xff\xff\xff",
        b"PONG",
    ],
)
def test_garbage_is_a_protocol_error(replies):
    with pytest.raises(DeviceProtocolError):
        st.parse_status(replies)


def test_every_byte_with_the_fixed_bits_parses_and_no_other_does():
    good = [b for b in range(256) if b & 0x93 == 0x12]
    assert len(good) == 16
    for b in range(256):
        for n in st.STATUS_QUERIES:
            if b in good:
                assert st.check_reply(n, b) == b
            else:
                with pytest.raises(DeviceProtocolError):
                    st.check_reply(n, b)
