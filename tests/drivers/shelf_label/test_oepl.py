"""The OpenEPaperLink client against the emulated access point over real HTTP,
and its error mapping with httpx's MockTransport where a real server cannot
misbehave on cue."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from drivers.shelf_label.ap_emulator import ApEmulator, Fault
from drivers.shelf_label.models import get_model
from drivers.shelf_label.oepl import (
    ApHttpError, ApNotReady, OeplClient, TagNotFound, normalize_mac, parse_db_page, parse_tag,
)
from drivers.shelf_label.render import LabelContent, PromoContent, render
from edge_core.errors import DeviceMissing, DeviceProtocolError, DeviceTimeout, TransportClosed

MAC = "0000021D4E83B4A1"
SEEN = 1_750_000_000
# Short enough that the fault tests take well under a second each.
TIMEOUT = 0.3


def run(coro, timeout: float = 5.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def ap() -> Iterator[ApEmulator]:
    emulator = ApEmulator()
    emulator.add_tag(MAC, 0x01, last_seen=SEEN, next_checkin=SEEN + 600, battery_mv=2710, rssi=-71, lqi=87)
    emulator.start()
    yield emulator
    emulator.stop()


async def call(ap: ApEmulator, method: str, *args, **kwargs):
    async with OeplClient(ap.url, timeout=TIMEOUT, upload_timeout=TIMEOUT) as client:
        return await getattr(client, method)(*args, **kwargs)


def label(model_name: str = "m2-2.9-bwr") -> Image.Image:
    c = LabelContent(sku="OIL-5L", name="金龙鱼 Peanut Oil 花生油 5L", price=Decimal("89.90"), currency="CNY",
                     promo=PromoContent(Decimal("69.90"), date(2025, 6, 30)), rating=4.0, reviews=5,
                     stock_online=2, url="https://shop.example.com/p/OIL-5L")
    return render(c, get_model(model_name))


# Upload ----------------------------------------------------------------------


@pytest.mark.parametrize("model_name, hw_type", [("m2-2.9-bwr", 0x01), ("m3-2.9-bw", 0x40),
                                                  ("m2-2.9-bwr-portrait", 0x01)])
def test_an_uploaded_label_is_what_the_tag_shows(ap, model_name, hw_type):
    ap.tags[MAC].hw_type = hw_type
    img = label(model_name)
    run(call(ap, "upload", MAC, img))
    upload = ap.last_upload(MAC)
    assert upload is not None and upload.error is None
    # dither 0 keeps text crisp; rotate and invert are sticky on the AP, so always sent.
    assert upload.fields == {"mac": MAC, "dither": "0", "rotate": "0", "invert": "0"}
    jpeg = Image.open(io.BytesIO(upload.data))
    assert jpeg.format == "JPEG" and jpeg.size == img.size and not jpeg.info.get("progressive")
    assert ap.shown(MAC) is None  # queued until the tag checks in
    assert ap.checkin(MAC)
    shown = ap.shown(MAC)
    assert shown.convert("RGB").tobytes() == img.convert("RGB").tobytes()


def test_upload_then_tag_list_shows_pending_then_the_confirmed_hash(ap):
    async def scenario():
        async with OeplClient(ap.url, timeout=TIMEOUT) as client:
            before = await client.tag(MAC)
            await client.upload(MAC, label(), alias="OIL-5L")
            queued = await client.tag(MAC)
            ap.checkin(MAC, at=SEEN + 1000)
            done = await client.tag(MAC)
            return before, queued, done

    before, queued, done = run(scenario())
    assert before.pending == 0 and before.shown_hash is None
    assert queued.pending == 1 and queued.alias == "OIL-5L" and queued.content_mode == 24
    assert done.pending == 0 and done.shown_hash is not None and done.shown_hash.endswith("0" * 16)
    assert done.last_seen == datetime.fromtimestamp(SEEN + 1000, timezone.utc)
    assert done.update_count == 1


def test_upload_to_a_tag_the_ap_does_not_know(ap):
    with pytest.raises(TagNotFound, match="no such tag"):
        run(call(ap, "upload", "00000000DEADBEEF", label()))


def test_upload_while_the_ap_starts_is_not_ready(ap):
    ap.fault = Fault.NOT_READY
    with pytest.raises(ApNotReady, match="409"):
        run(call(ap, "upload", MAC, label()))
    assert isinstance(ApNotReady("x"), DeviceTimeout)


@pytest.mark.parametrize("mac", ["", "xyz", "0000021D4E83B4", "00:00:02:1D:4E:83:B4:A1:00", "0000021D4E83B4G1"])
def test_a_malformed_mac_is_refused_before_any_request(ap, mac):
    with pytest.raises(ValueError, match="not a tag MAC"):
        run(call(ap, "upload", mac, label()))
    assert ap.requests == []


def test_macs_are_normalised_as_the_ap_prints_them():
    assert normalize_mac("00:00:02:1d:4e:83:b4:a1") == MAC
    assert normalize_mac("1D-4E-83-B4-A1-00") == "00001D4E83B4A100"  # 6 bytes: the AP pads with zeros


# Tag list --------------------------------------------------------------------


def test_the_tag_list_is_parsed(ap):
    tags = run(call(ap, "tags"))
    assert len(tags) == 1
    t = tags[0]
    assert (t.mac, t.hw_type, t.battery_mv, t.rssi, t.lqi, t.pending) == (MAC, 1, 2710, -71, 87, 0)
    assert t.last_seen == datetime.fromtimestamp(SEEN, timezone.utc)
    assert t.next_checkin == datetime.fromtimestamp(SEEN + 600, timezone.utc)
    assert t.shown_hash is None and t.update_last is None


def test_a_tag_never_seen_has_no_last_seen(ap):
    ap.tags[MAC].last_seen = 0
    ap.tags[MAC].next_checkin = 3216153600  # the AP's "not expected back"
    t = run(call(ap, "tag", MAC))
    assert t.last_seen is None and t.next_checkin is None


def test_tests_can_change_a_tag_between_reads(ap):
    ap.tags[MAC].battery_mv = 2150
    assert run(call(ap, "tag", MAC)).battery_mv == 2150
    assert run(call(ap, "tag", "00000000CAFEF00D")) is None


def test_a_long_tag_list_is_read_over_every_page(ap):
    for n in range(120):
        ap.add_tag(f"00000000AB{n:06X}", 0x00, last_seen=SEEN)
    tags = run(call(ap, "tags"))
    assert len(tags) == 121 and len({t.mac for t in tags}) == 121
    pages = [r for r in ap.requests if r.startswith("GET /get_db")]
    assert len(pages) > 5  # ~12 tags fit the AP's 5000-byte page


def test_past_256_tags_the_list_stops_where_the_ap_cannot_page(ap, caplog):
    for n in range(299):
        ap.add_tag(f"00000000AC{n:06X}", 0x00, last_seen=SEEN)
    with caplog.at_level(logging.WARNING):
        tags = run(call(ap, "tags"))
    assert 256 <= len(tags) < 300 and len({t.mac for t in tags}) == len(tags)
    assert "cannot page past index 255" in caplog.text


@pytest.mark.parametrize("body, match", [
    (b'{"tags": [{"mac": "zz"}]}', "no valid mac"),
    (b'{"tags": [{"mac": "0000021D4E83B4A1", "hwType": 1, "lastseen": -5}]}', "lastseen"),
    (b'{"tags": [{"mac": "0000021D4E83B4A1", "hwType": "1"}]}', "hwType"),
    (b'{"tags": {}}', "tags"),
    (b'{"error": "malformatted parameter"}', "malformatted"),
    (b'{"tags": [], "continu": "x"}', "continu"),
    (b"[1, 2]", "expected an object"),
    (b"\xff\xfe", "not JSON"),
])
def test_a_tag_list_that_does_not_parse_is_a_protocol_error(body, match):
    with pytest.raises(DeviceProtocolError, match=match):
        parse_db_page(body)


def test_a_tag_entry_has_defaults_for_fields_older_firmware_lacks():
    t = parse_tag({"mac": MAC, "hwType": 2, "lastseen": SEEN, "batteryMv": 3000, "RSSI": -50, "LQI": 100,
                   "pending": 0, "hash": "00000000000000000000000000000000"})
    assert t.hw_type == 2 and t.shown_hash is None and t.version == 0 and t.next_checkin is None


# Commands and health ---------------------------------------------------------


def test_clear_drops_queued_updates(ap):
    async def scenario():
        async with OeplClient(ap.url, timeout=TIMEOUT) as client:
            await client.upload(MAC, label())
            await client.command(MAC, "clear")
            return await client.tag(MAC)

    assert run(scenario()).pending == 0


def test_a_command_to_an_unknown_tag(ap):
    with pytest.raises(TagNotFound):
        run(call(ap, "command", "00000000DEADBEEF", "refresh"))


def test_sysinfo_is_the_health_check(ap):
    info = run(call(ap, "sysinfo"))
    assert info.alias == "ap-emulator" and info.raw["env"] == "emulator"


# Faults ----------------------------------------------------------------------

CALLS = [("tags", ()), ("sysinfo", ()), ("upload", (MAC, None)), ("command", (MAC, "refresh"))]


def _args(args):
    return tuple(label() if a is None else a for a in args)


@pytest.mark.parametrize("method, args", CALLS, ids=[c[0] for c in CALLS])
def test_an_ap_answering_500_is_a_protocol_error(ap, method, args):
    ap.fault = Fault.ERROR_500
    with pytest.raises(ApHttpError, match="HTTP 500") as err:
        run(call(ap, method, *_args(args)))
    assert err.value.status == 500 and isinstance(err.value, DeviceProtocolError)


@pytest.mark.parametrize("method, args", CALLS, ids=[c[0] for c in CALLS])
def test_an_ap_that_hangs_times_out_quickly(ap, method, args):
    ap.fault = Fault.HANG
    start = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no answer within"):
        run(call(ap, method, *_args(args)))
    assert time.monotonic() - start < 4 * TIMEOUT + 0.5
    ap.fault = Fault.NONE  # releases the hung handler
    assert run(call(ap, "sysinfo")).alias == "ap-emulator"


@pytest.mark.parametrize("method, args", CALLS, ids=[c[0] for c in CALLS])
def test_an_ap_answering_garbage_is_a_protocol_error(ap, method, args):
    ap.fault = Fault.GARBAGE
    with pytest.raises(DeviceProtocolError, match="not JSON|unexpected answer"):
        run(call(ap, method, *_args(args)))


def test_an_ap_that_is_down_is_missing_and_comes_back(ap):
    ap.stop()
    with pytest.raises(DeviceMissing, match="cannot connect"):
        run(call(ap, "tags"))
    ap.start()
    assert len(run(call(ap, "tags"))) == 1


def test_a_client_not_opened_says_so():
    with pytest.raises(RuntimeError, match="open"):
        run(OeplClient("http://127.0.0.1:9").tags())


# Error mapping at the httpx boundary -------------------------------------------


def _mock(handler) -> OeplClient:
    return OeplClient("http://ap.test", timeout=TIMEOUT, transport=httpx.MockTransport(handler))


async def _with(client: OeplClient, method: str):
    async with client:
        return await getattr(client, method)()


@pytest.mark.parametrize("exc, mapped", [
    (httpx.ConnectError("refused"), DeviceMissing),
    (httpx.ConnectTimeout("slow"), DeviceTimeout),
    (httpx.ReadTimeout("slow"), DeviceTimeout),
    (httpx.ReadError("reset"), TransportClosed),
    (httpx.RemoteProtocolError("illegal status line"), DeviceProtocolError),
])
def test_transport_failures_map_onto_the_error_tree(exc, mapped):
    def handler(request):
        raise exc

    with pytest.raises(mapped) as err:
        run(_with(_mock(handler), "tags"))
    assert err.value.__cause__ is exc


def test_an_endless_answer_is_cut_off():
    def handler(request):
        return httpx.Response(200, content=b"[" * (2 << 20))

    with pytest.raises(DeviceProtocolError, match="longer than"):
        run(_with(_mock(handler), "sysinfo"))


def test_a_page_that_does_not_advance_is_a_protocol_error():
    def handler(request):
        return httpx.Response(200, json={"tags": [], "continu": 0})

    with pytest.raises(DeviceProtocolError, match="does not move"):
        run(_with(_mock(handler), "tags"))
