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


# Request bodies: limits before work, a clear 4xx for what cannot be parsed ------------------------


def raw_request(ap: ApEmulator, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Status and body of one request written byte for byte on a socket (what httpx would not send)."""
    import socket

    with socket.create_connection((ap.host, ap.port), timeout=30) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        answer = b""
        while chunk := s.recv(65536):  # the emulator closes after an error answer
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def form(parts: list[bytes], boundary: bytes = b"b0undary", close: bool = True) -> bytes:
    out = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


MAC_PART = b'Content-Disposition: form-data; name="mac"\r\n\r\n' + MAC.encode()


def upload_head(length: int, ctype: bytes = b"multipart/form-data; boundary=b0undary") -> bytes:
    return (b"POST /imgupload HTTP/1.1\r\nHost: ap\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(length).encode())


def test_a_body_over_the_limit_is_refused_before_it_is_read(ap):
    from drivers.shelf_label.ap_emulator import MAX_BODY

    # Only the head is sent: the 413 comes without waiting for the megabyte announced.
    status, text = raw_request(ap, upload_head(MAX_BODY + 1))
    assert (status, text) == (413, f"body of {MAX_BODY + 1} bytes is over the limit of {MAX_BODY}".encode())
    assert ap.uploads == []


def test_a_whole_upload_of_the_limit_is_accepted_over_a_socket(ap):
    from drivers.shelf_label.ap_emulator import MAX_BODY

    file_part = b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    pad = b'Content-Disposition: form-data; name="pad"\r\n\r\n'
    room = MAX_BODY - len(form([MAC_PART, pad, file_part + jpeg()]))
    body = form([MAC_PART, pad + b"x" * room, file_part + jpeg()])
    assert len(body) == MAX_BODY
    status, text = raw_request(ap, upload_head(len(body)) + b"\r\nConnection: close", body)
    assert (status, text) == (200, b"Ok, saved")
    assert ap.last_upload(MAC).data == jpeg() and ap.last_upload(MAC).error is None


@pytest.mark.parametrize("head, reason", [
    (upload_head(0).replace(b"Content-Length: 0", b"Content-Length: 12x"),
     b"Content-Length must be a number of bytes, got '12x'"),
    (upload_head(0).replace(b"Content-Length: 0", b"Content-Length: -5"),
     b"Content-Length must be a number of bytes, got '-5'"),
])
def test_a_bad_content_length_is_400(ap, head, reason):
    assert raw_request(ap, head) == (400, reason)


def test_a_chunked_body_is_411(ap):
    head = b"POST /imgupload HTTP/1.1\r\nHost: ap\r\nTransfer-Encoding: chunked\r\nContent-Type: multipart/form-data"
    assert raw_request(ap, head, b"0\r\n\r\n")[0] == 411


FILE_PART = b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nJPEG'


@pytest.mark.parametrize("ctype, body, reason", [
    (b"multipart/form-data", form([MAC_PART]), "Content-Type must be multipart/form-data with a boundary"),
    (b"multipart/form-data; boundary=b0undary", form([MAC_PART, FILE_PART], close=False),
     "it ends before its closing boundary"),
    (b"multipart/form-data; boundary=b0undary", form([MAC_PART], boundary=b"other"), "malformed multipart body"),
    (b"multipart/form-data; boundary=b0undary", form([b"Content-Disposition: attachment\r\n\r\nx"]),
     "a part has no Content-Disposition: form-data; name=..."),
    (b"multipart/form-data; boundary=b0undary", form([b"X-Nothing: here\r\n\r\nx"]),
     "a part has no Content-Disposition: form-data; name=..."),
    (b"multipart/form-data; boundary=b0undary", form([MAC_PART] * 17), "more than 16 parts"),
    (b"multipart/form-data; boundary=b0undary",
     form([b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + MAC_PART]), "malformed multipart body"),
    (b"multipart/form-data; boundary=b0undary", b"\x00\xff garbage \r\n\r\n", "malformed multipart body"),
])
def test_a_malformed_multipart_upload_is_400_with_the_reason(ap, ctype, body, reason):
    status, text = raw_request(ap, upload_head(len(body), ctype), body)
    assert status == 400 and reason in text.decode(), text
    assert ap.uploads == []
    # ... and the emulator still serves the next client.
    r = httpx.post(ap.url + "/imgupload", data={"mac": MAC}, files={"file": ("a.jpg", jpeg(), "image/jpeg")})
    assert r.text == "Ok, saved"


def test_multipart_parts_keep_their_order_names_and_bytes():
    from drivers.shelf_label.ap_emulator import _multipart

    binary = bytes(range(256)) + b"\r\n--b0undar"  # a near-boundary inside the data
    body = form([MAC_PART, b'Content-Disposition: form-data; name="file"; filename="x y.jpg"\r\n'
                 b"Content-Type: image/jpeg\r\n\r\n" + binary,
                 b'Content-Disposition: form-data; name="alias"\r\n\r\n'])
    assert _multipart('multipart/form-data; boundary="b0undary"', body) == [
        ("mac", None, MAC.encode()), ("file", "x y.jpg", binary), ("alias", None, b"")]
