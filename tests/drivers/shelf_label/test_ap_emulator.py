"""The emulated access point keeps the firmware's quirks, and runs standalone."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from drivers.shelf_label.ap_emulator import ApEmulator, convert
from drivers.shelf_label.models import PALETTES
from support.agent import free_port

MAC = "0000021D4E83B4A1"


@pytest.fixture
def ap() -> Iterator[ApEmulator]:
    emulator = ApEmulator()
    emulator.add_tag(MAC, 0x01)
    emulator.start()
    yield emulator
    emulator.stop()


def jpeg(size=(296, 128), color=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def test_mac_after_the_file_is_refused_as_by_the_firmware(ap):
    files = [("file", ("a.jpg", jpeg(), "image/jpeg")), ("mac", (None, MAC))]
    r = httpx.post(ap.url + "/imgupload", files=files)
    assert (r.status_code, r.text) == (400, "parameters incomplete")


def test_a_malformed_mac_gets_the_firmwares_bare_200(ap):
    r = httpx.post(ap.url + "/imgupload", data={"mac": "nonsense"}, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert (r.status_code, r.text) == (200, "")
    assert ap.uploads == []


@pytest.mark.parametrize("data, error", [(b"\x89PNG not a jpeg", "invalid jpg"),
                                         (jpeg((128, 296)), "the tag is 296x128")])
def test_an_image_the_tag_cannot_show_is_accepted_and_logged(ap, data, error):
    r = httpx.post(ap.url + "/imgupload", data={"mac": MAC}, files={"file": ("a.jpg", data, "image/jpeg")})
    assert r.text == "Ok, saved"
    assert error in ap.last_upload(MAC).error
    assert not ap.checkin(MAC)


def test_the_same_image_again_is_not_sent_to_the_tag(ap):
    for _ in range(2):
        httpx.post(ap.url + "/imgupload", data={"mac": MAC}, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        ap.checkin(MAC)
    assert ap.tags[MAC].update_count == 1 and len(ap.uploads) == 2


def test_pos_is_a_uint8_as_in_the_firmware(ap):
    first = httpx.get(ap.url + "/get_db", params={"pos": 0}).json()
    wrapped = httpx.get(ap.url + "/get_db", params={"pos": 256}).json()
    assert first == wrapped and first["tags"][0]["mac"] == MAC
    assert httpx.get(ap.url + "/get_db", params={"mac": "zz"}).json() == {"error": "malformatted parameter"}


def test_the_screen_can_be_seen_over_http(ap):
    assert httpx.get(ap.url + f"/emulator/{MAC}.png").status_code == 404
    httpx.post(ap.url + "/imgupload", data={"mac": MAC}, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    ap.checkin(MAC)
    r = httpx.get(ap.url + f"/emulator/{MAC}.png")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (296, 128)


def test_colour_mapping_follows_the_firmware():
    # makeimage.cpp colorDistance: a grey pixel never turns red; reddish pixels do.
    img = Image.new("RGB", (4, 1))
    img.putdata([(128, 128, 128), (200, 40, 40), (250, 10, 0), (30, 30, 30)])
    assert list(convert(img, PALETTES["bwr"]).tobytes()) == [0, 2, 2, 1]
    assert list(convert(img, PALETTES["bw"]).tobytes()) == [0, 1, 1, 1]


def test_it_runs_standalone():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "drivers.shelf_label.ap_emulator", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # printed once it listens
        assert f"http://127.0.0.1:{port}" in line
        tags = httpx.get(f"http://127.0.0.1:{port}/get_db", timeout=5).json()["tags"]
        assert {t["hwType"] for t in tags} >= {0x00, 0x01, 0x02}
        assert json.loads(httpx.get(f"http://127.0.0.1:{port}/sysinfo", timeout=5).text)["env"] == "emulator"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_the_fast_colour_mapping_is_the_firmwares_pixel_by_pixel():
    # convert() works on whole images; _distance is colorDistance for one pixel.
    from drivers.shelf_label.ap_emulator import _distance

    rng = random.Random(7)
    pixels = [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(20_000)]
    pixels += [(v, v + d, v) for v in range(19, 236, 7) for d in (-19, 0, 19)]  # the grey rule's edges
    img = Image.new("RGB", (len(pixels), 1))
    img.putdata(pixels)
    for palette in PALETTES.values():
        expected = [min(range(len(palette)), key=lambda i: (_distance(px, palette[i]), i)) for px in pixels]
        assert list(convert(img, palette).tobytes()) == expected


def test_with_a_checkin_interval_tags_wake_by_themselves_and_take_what_is_queued():
    import time

    from support.flows import poll

    ap = ApEmulator(checkin_interval=1.0)
    long_ago = int(time.time()) - 3600
    ap.add_tag(MAC, 0x01, last_seen=long_ago, next_checkin=long_ago + 600)
    ap.start()
    try:
        first = poll(lambda: ap.tags[MAC].last_seen, lambda t: t > long_ago, 15, "a check-in by itself")
        assert ap.tags[MAC].next_checkin == first + 1
        r = httpx.post(ap.url + "/imgupload", data={"mac": MAC}, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        assert r.text == "Ok, saved"  # queued: no auto_checkin, the tag takes it when it wakes
        poll(lambda: ap.shown(MAC), lambda shown: shown is not None, 15, "the picture taken at the next check-in")
        assert ap.tags[MAC].last_seen > first
    finally:
        ap.stop()
    assert ap._waking is None  # stopped with the AP: a tag is not heard while the AP is down


def test_a_checkin_interval_must_be_positive():
    with pytest.raises(ValueError, match="checkin_interval"):
        ApEmulator(checkin_interval=0)


def test_a_poll_during_a_checkin_sees_it_whole_or_not_at_all(ap, monkeypatch):
    """The tag's picture is converted outside the lock; a poll meanwhile must not see the tag heard
    from with nothing pending and its old hash (a client would confirm the old picture, then take
    the new hash for somebody else's)."""
    import threading

    from drivers.shelf_label import ap_emulator

    converting, release = threading.Event(), threading.Event()

    def slow_convert(image, palette):
        converting.set()
        assert release.wait(30)
        return convert(image, palette)

    monkeypatch.setattr(ap_emulator, "convert", slow_convert)

    def tag() -> dict:
        return httpx.get(f"{ap.url}/get_db", params={"mac": MAC}, timeout=10).json()["tags"][0]

    with httpx.Client(base_url=ap.url, timeout=10) as c:
        r = c.post("/imgupload", data={"mac": MAC}, files={"file": ("a.jpg", jpeg(color=(0, 0, 0)), "image/jpeg")})
        assert r.text == "Ok, saved"
    before = tag()
    assert before["pending"] == 1 and before["lastseen"] == 0
    checkin = threading.Thread(target=ap.checkin, args=(MAC, 1_800_000_000))
    checkin.start()
    try:
        assert converting.wait(30)
        during = tag()
        assert (during["pending"], during["hash"], during["lastseen"]) == (1, before["hash"], 0)
    finally:
        release.set()
        checkin.join(30)
    after = tag()
    assert after["pending"] == 0 and after["hash"] != before["hash"] and after["lastseen"] == 1_800_000_000
