"""Scanner framing: codes out of a byte stream, whatever the chunking, and no good code lost after junk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.scanner.framing import Framer
from drivers.scanner.protocol import BadScan, Scan, parse

EAN = b"4006381333931"


def feed_all(framer: Framer, chunks, now: float = 0.0) -> list:
    out = []
    for chunk in chunks:
        out += framer.feed(chunk, now)
    return out


@pytest.mark.parametrize("suffix", [b"\r", b"\r\n", b"\n"])
@pytest.mark.parametrize("sent", [b"\r", b"\r\n", b"\n"])
def test_line_suffixes_are_interchangeable(suffix, sent):
    # A scanner set to CR LF by one technician and CR by the next keeps working.
    assert feed_all(Framer(suffix), [b"123" + sent + b"456" + sent]) == ["123", "456"]


def test_frames_split_across_feeds():
    f = Framer(b"\r")
    assert f.feed(b"40063", 0) == []
    assert f.feed(b"81333", 0) == []
    assert f.feed(b"931\r12", 0) == ["4006381333931"]
    assert f.feed(b"3\r", 0) == ["123"]


def test_several_frames_in_one_feed():
    assert Framer(b"\r\n").feed(b"a\r\nb\r\nc\r\n", 0) == ["a", "b", "c"]


def test_cr_lf_split_between_feeds_gives_no_empty_frame():
    f = Framer(b"\r\n")
    assert f.feed(b"123\r", 0) == ["123"]
    assert f.feed(b"\n456\r", 0) == ["456"]
    assert f.feed(b"\n", 0) == []
    assert f.pending == 0


def test_empty_frames_are_ignored():
    assert Framer(b"\r").feed(b"\r\r\n\n\r", 0) == []


def test_other_suffixes_split_exactly():
    f = Framer(b"\x03")  # ETX, some scanners' serial default
    assert f.feed(b"abc\r\x03de", 0) == ["abc\r"]
    assert f.feed(b"\x03", 0) == ["de"]
    g = Framer(b"<END>")
    assert feed_all(g, [b"ab<E", b"ND>cd<", b"END>"]) == ["ab", "cd"]


def test_overlong_frame_is_one_badscan_then_resync():
    f = Framer(b"\r", max_length=20)
    out = feed_all(f, [b"x" * 15, b"x" * 15, b"x" * 30, b"tail\r" + EAN + b"\r"])
    # Reported as soon as it passes the limit, showing what had arrived by then.
    assert out == [BadScan("x" * 30, "longer than 20 bytes"), EAN.decode()]


def test_overlong_frame_in_one_feed():
    out = Framer(b"\r", max_length=5).feed(b"123456\r12345\r", 0)
    assert out == [BadScan("123456", "longer than 5 bytes"), "12345"]


def test_bad_utf8_spoils_only_its_frame():
    out = Framer(b"\r").feed(b"ab\xff\xfe\r" + EAN + b"\r", 0)
    assert out == [BadScan("ab\\xff\\xfe", "not valid UTF-8: byte 0xff at 2"), EAN.decode()]


def test_other_encodings():
    assert Framer(b"\r", encoding="latin-1").feed(b"Gr\xfc\xdfe\r", 0) == ["Grüße"]
    assert Framer(b"\r", encoding="ascii").feed(b"\xc3\xa4\r", 0) == [
        BadScan("\\xc3\\xa4", "not valid ASCII: byte 0xc3 at 0")]


def test_nul_and_junk_pass_through_as_text_for_parse_to_reject():
    [text] = Framer(b"\r").feed(b"40\x0006\r", 0)
    assert text == "40\x0006"
    assert parse(text) == BadScan("40\\x0006", "control character 0x00 at 2")


def test_partial_frame_is_reported_stale_then_dropped():
    f = Framer(b"\r", stale=1.0)
    assert f.feed(b"4006", 10.0) == []
    assert f.flush(10.9) == []
    assert f.flush(11.0) == [BadScan("4006", "missing suffix b'\\r': no end after 1 s")]
    assert f.pending == 0
    assert f.flush(20.0) == []
    assert f.feed(EAN + b"\r", 20.0) == [EAN.decode()]


def test_a_stale_partial_is_reported_by_feed_too():
    # The driver may not have flushed in between: the next bytes still start a new frame.
    f = Framer(b"\r", stale=1.0)
    f.feed(b"4006", 0.0)
    assert f.feed(EAN + b"\r", 5.0) == [BadScan("4006", "missing suffix b'\\r': no end after 1 s"), EAN.decode()]


def test_a_slow_trickle_is_not_stale():
    f = Framer(b"\r", stale=1.0)
    for i, b in enumerate(EAN):
        assert f.feed(bytes([b]), i * 0.5) == []
    assert f.feed(b"\r", 6.9) == [EAN.decode()]  # 0.5 s between bytes, 13 bytes: 6 s in all


def test_overlong_then_pause_resyncs_without_a_suffix():
    f = Framer(b"\r", max_length=20, stale=1.0)
    assert len(f.feed(b"x" * 50, 0.0)) == 1
    # No CR after the junk, but a pause: the next code must not be swallowed.
    assert f.feed(EAN + b"\r", 2.0) == [EAN.decode()]


def test_no_suffix_frames_end_by_idle_gap():
    f = Framer(None, gap=0.05)
    assert f.feed(b"4006", 0.00) == []
    assert f.feed(b"381333931", 0.01) == []
    assert f.flush(0.04) == []
    assert f.flush(0.07) == [EAN.decode()]
    assert f.flush(1.00) == []
    assert f.feed(b"123", 2.00) == []
    assert f.feed(b"456", 2.10) == ["123"]  # the gap came before these bytes
    assert f.flush(2.20) == ["456"]


def test_no_suffix_overlong_skips_to_the_next_gap():
    f = Framer(None, gap=0.05, max_length=20)
    assert f.feed(b"x" * 21, 0.0) == [BadScan("x" * 21, "longer than 20 bytes")]
    assert f.feed(b"x" * 100, 0.01) == []
    assert f.flush(0.1) == []
    assert f.feed(EAN, 0.2) == []
    assert f.flush(0.3) == [EAN.decode()]


def test_empty_suffix_is_refused():
    with pytest.raises(ValueError):
        Framer(b"")


# Properties -----------------------------------------------------------------------


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


junk = st.binary(max_size=1200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=300, deadline=None)
@given(garbage=junk, cuts=st.lists(st.integers(min_value=0), max_size=12),
       suffix=st.sampled_from([b"\r", b"\r\n"]), max_length=st.sampled_from([16, 64, 512]))
def test_a_good_code_after_garbage_is_never_lost(garbage, cuts, suffix, max_length):
    """Garbage (maybe overlong, maybe undecodable), a suffix, then a good code: the code arrives."""
    stream = garbage + suffix + EAN + suffix
    out = feed_all(Framer(suffix, max_length=max_length), split(stream, cuts))
    assert out, "nothing came out"
    last = out[-1]
    assert isinstance(last, str) and parse(last) == Scan("4006381333931", parse(last).symbology,
                                                         parse(last).kind, {}, "4006381333931")
    # The garbage is at most one frame: one BadScan or one text, never several.
    assert len(out) <= 2


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(min_value=0), max_size=20),
       suffix=st.sampled_from([b"\r", b"\r\n", b"\n", b"\x03", b"<E>", None]),
       times=st.lists(st.floats(min_value=0, max_value=3), max_size=20))
def test_feed_and_flush_never_raise(data, cuts, suffix, times):
    f = Framer(suffix, max_length=64)
    now = 0.0
    for i, chunk in enumerate(split(data, cuts)):
        now += times[i] if i < len(times) else 0.01
        for item in f.feed(chunk, now) + f.flush(now + 0.02):
            assert isinstance(item, (str, BadScan))
            if isinstance(item, str):
                assert 0 < len(item.encode()) <= 64
    assert all(isinstance(x, (str, BadScan)) for x in f.flush(now + 10))
    assert f.pending == 0


@settings(max_examples=200, deadline=None)
@given(codes=st.lists(st.text(alphabet="0123456789ABCXYZ-äé", min_size=1, max_size=30), min_size=1, max_size=8),
       cuts=st.lists(st.integers(min_value=0), max_size=20), suffix=st.sampled_from([b"\r", b"\r\n", b"\n"]))
def test_any_chunking_gives_the_same_codes(codes, cuts, suffix):
    stream = b"".join(c.encode() + suffix for c in codes)
    assert feed_all(Framer(suffix), split(stream, cuts)) == codes
