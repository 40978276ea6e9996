"""An emulated OpenEPaperLink access point, for tests and for ``make run``.

It serves the endpoints oepl.py uses with the firmware's JSON and quirks
(see oepl.py's docstring for the sources): /imgupload (mac before the file,
409 while not running, 400 "mac not found", the empty 200 for a malformed
MAC), /get_db with 5000-byte pages and the uint8_t ``pos``, /tag_cmd,
/sysinfo, /get_ap_config. It keeps every upload, converts it as the AP does
(nearest palette colour, makeimage.cpp colorDistance) and shows it on the
tag when the tag checks in: ``checkin(mac)``, at once with
``auto_checkin``, and, with ``checkin_interval``, every tag by itself that
often, as real tags wake every 40 to 600 s whether or not there is news
(without it, a tag nobody pushes to looks unheard of, hence stale, after a
while). ``GET /emulator/<MAC>.png`` shows a tag's screen.

One liberty: the firmware decodes and converts a picture when it is
uploaded, the emulator when the tag checks in (the header, hence the format
and size, is still checked at upload). An upload then costs the emulator
~1 ms instead of ~4, so that it keeps up with an agent pushing thousands of
labels on a 2-core machine (bench/bench_labels.py). The same picture again
is recognised by its bytes and not queued, as the firmware does by its
converted data ("new image is the same as current image", newproto.cpp).
Bodies over ``MAX_BODY`` are refused (413) before they are read, and a
multipart body python-multipart cannot parse whole gets a 400 that says why.

Faults, for tests: ``fault = Fault.ERROR_500 | HANG | GARBAGE | NOT_READY``,
and ``stop()`` then ``start()`` for an AP that is down and comes back on the
same port. It runs in a thread (http.server), so async tests can drive a
client against it over real HTTP from their own event loop.

    python -m drivers.shelf_label.ap_emulator --port 8090
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import io
import json
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageMath
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from drivers.shelf_label.models import PALETTES, Rgb, load_models
from drivers.shelf_label.oepl import normalize_mac

# The firmware's page limit for /get_db (tag_db.cpp:80).
PAGE_BYTES = 5000
# A hung request is released by stop() or by clearing the fault; this only
# bounds a thread that nobody releases.
HANG_LIMIT = 60.0
# Request bodies are refused above this before a byte of them is read (413).
# A label JPEG is tens of kB (the largest panel, 400x300, under 100 kB); the
# firmware's /imgupload writes into the ESP32's few-MB flash file system.
MAX_BODY = 1 << 20
# An upload has a handful of fields (mac, contentmode, alias, dither) and one file.
MAX_PARTS = 16


class Fault(str, enum.Enum):
    """How the emulated AP misbehaves."""

    NONE = "none"
    ERROR_500 = "500"  # every request answers 500
    HANG = "hang"  # every request is read and never answered
    GARBAGE = "garbage"  # every request answers 200 with bytes that are not the API
    NOT_READY = "not-ready"  # uploads answer 409 "Come back later", as while the AP starts


@dataclass
class EmulatedTag:
    """One tag in the AP's database; tests may change any field."""

    mac: str
    hw_type: int
    battery_mv: int = 2950
    rssi: int = -62
    lqi: int = 98
    temperature: int = 22
    last_seen: int = 0  # Unix seconds, 0 = never
    next_checkin: int = 0
    alias: str = ""
    content_mode: int = 0
    version: int = 0x001F
    update_count: int = 0
    update_last: int = 0
    md5: bytes = bytes(16)
    queue: list[bytes] = field(default_factory=list)  # uploaded JPEGs waiting for a check-in
    screen: Image.Image | None = None  # what the tag shows
    source: bytes = b""  # MD5 of the JPEG the screen was converted from

    def to_json(self) -> dict[str, Any]:
        """The tag as fillNode (tag_db.cpp:93-125) writes it, keys in the same order."""
        return {
            "mac": self.mac, "hash": self.md5.hex(), "lastseen": self.last_seen, "nextupdate": 0,
            "nextcheckin": self.next_checkin, "pending": len(self.queue), "alias": self.alias,
            "contentMode": self.content_mode, "LQI": self.lqi, "RSSI": self.rssi,
            "temperature": self.temperature, "batteryMv": self.battery_mv, "hwType": self.hw_type,
            "wakeupReason": 0, "capabilities": 0, "modecfgjson": "", "isexternal": False, "apip": "0.0.0.0",
            "rotate": 0, "lut": 0, "invert": 0, "updatecount": self.update_count, "updatelast": self.update_last,
            "ch": 11, "ver": self.version,
        }


@dataclass(frozen=True)
class Upload:
    """One accepted /imgupload: its form fields and the file's bytes."""

    mac: str
    fields: dict[str, str]
    data: bytes
    error: str | None  # what the AP would log: "invalid jpg", a size mismatch


def _distance(px: Rgb, pal: Rgb) -> float:
    """makeimage.cpp:78-86 colorDistance, without the dither error term (one pixel; the reference)."""
    r, g, b = px
    if abs(r - g) < 20 and abs(b - g) < 20 and (abs(pal[0] - pal[1]) > 20 or abs(pal[2] - pal[1]) > 20):
        return float(2**32 - 1)  # a grey pixel never becomes a colour
    return int(3 * (r - pal[0]) ** 2 + 5.47 * (g - pal[1]) ** 2 + 1.53 * (b - pal[2]) ** 2)


# Bigger than any distance (at most ~650,000), small enough for ImageMath's 32-bit integers.
_NEVER = 1 << 30


def convert(image: Image.Image, palette: tuple[Rgb, ...]) -> Image.Image:
    """What the AP sends the tag for ``image`` with dither 0: each pixel's nearest palette colour.

    ``_distance`` for every pixel at once, in ImageMath's integer arithmetic:
    3, 5.47 and 1.53 are scaled by 100 and the sum divided back, which is the
    firmware's truncation to an integer; ties go to the lower index, as its
    strict '<' does. A per-pixel Python loop costs ~10 ms a label, which would
    make the emulator, not the agent, the bottleneck of a 10,000-label run.
    """
    rgb = image.convert("RGB")
    r, g, b = (band.convert("I") for band in rgb.split())

    def nearest(a: dict) -> object:
        r, g, b = a["r"], a["g"], a["b"]
        grey = (abs(r - g) < 20) & (abs(b - g) < 20)
        best = index = None
        for i, (pr, pg, pb) in enumerate(palette):
            d = (300 * (r - pr) * (r - pr) + 547 * (g - pg) * (g - pg) + 153 * (b - pb) * (b - pb)) / 100
            if abs(pr - pg) > 20 or abs(pb - pg) > 20:  # a colour: grey pixels never become it
                d = d + grey * _NEVER
            if best is None:
                best, index = d, d * 0
            else:
                better = d < best
                index = better * i + (1 - better) * index
                best = a["min"](d, best)
        return index

    indices = ImageMath.lambda_eval(nearest, r=r, g=g, b=b)
    out = Image.frombytes("P", rgb.size, indices.convert("L").tobytes())
    out.putpalette([c for p in palette for c in p])
    return out


def _hw_types() -> dict[int, tuple[tuple[int, int], tuple[Rgb, ...]]]:
    """Panel size and palette per hwType, from the label models."""
    return {m.hw_type: ((m.width, m.height), m.palette) for m in load_models().values() if m.hw_type is not None}


class ApEmulator:
    """An OpenEPaperLink AP on ``host:port`` (0 = any free port) in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, alias: str = "ap-emulator",
                 auto_checkin: bool = False, checkin_interval: float | None = None):
        if checkin_interval is not None and checkin_interval <= 0:
            raise ValueError("checkin_interval must be a positive number of seconds (or None)")
        self.host = host
        self.port = port
        self.alias = alias
        self.auto_checkin = auto_checkin
        self.checkin_interval = checkin_interval
        self._waking: threading.Thread | None = None
        self._down = threading.Event()
        self.tags: dict[str, EmulatedTag] = {}
        self.uploads: list[Upload] = []
        self.requests: list[str] = []  # "GET /get_db?pos=0", for tests
        self.lock = threading.RLock()
        self._fault = Fault.NONE
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the emulated AP."""
        return f"http://{self.host}:{self.port}"

    @property
    def fault(self) -> Fault:
        """The current fault; setting NONE releases hung requests."""
        return self._fault

    @fault.setter
    def fault(self, value: Fault) -> None:
        self._fault = Fault(value)
        if self._fault is Fault.HANG:
            self._release.clear()
        else:
            self._release.set()

    def start(self) -> None:
        """Listen (again, on the same port after a stop); ``port`` holds the bound port."""
        if self._fault is Fault.HANG:
            self._release.clear()
        handler = type("Handler", (_Handler,), {"ap": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval makes stop() quick; serve_forever checks for shutdown that often.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name=f"ap-emulator:{self.port}", daemon=True)
        self._thread.start()
        if self.checkin_interval is not None:
            self._down.clear()
            self._waking = threading.Thread(target=self._wake_tags, name=f"ap-emulator-tags:{self.port}",
                                            daemon=True)
            self._waking.start()

    def _wake_tags(self) -> None:
        """Check each tag in when its ``next_checkin`` comes, until the AP goes down."""
        assert self.checkin_interval is not None
        while not self._down.wait(min(1.0, self.checkin_interval / 4)):
            now = time.time()
            with self.lock:
                due = [mac for mac, tag in self.tags.items() if tag.next_checkin <= now]
            for mac in due:
                self.checkin(mac, now)

    def stop(self) -> None:
        """Stop listening and release hung requests: the AP is down (and hears no tag)."""
        self._release.set()
        self._down.set()
        if self._waking is not None:
            self._waking.join()
            self._waking = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "ApEmulator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_tag(self, mac: str, hw_type: int, **fields: Any) -> EmulatedTag:
        """Register a tag (as if it had joined this AP); ``fields`` set EmulatedTag attributes."""
        tag = EmulatedTag(mac=normalize_mac(mac), hw_type=hw_type, **fields)
        with self.lock:
            self.tags[tag.mac] = tag
        return tag

    def last_upload(self, mac: str) -> Upload | None:
        """The latest upload for ``mac``, or None."""
        mac = normalize_mac(mac)
        with self.lock:
            return next((u for u in reversed(self.uploads) if u.mac == mac), None)

    def checkin(self, mac: str, at: float | None = None) -> bool:
        """The tag wakes up and takes its newest queued image; True if its screen changed.

        The picture is converted outside the lock (uploads and polls go on meanwhile), and the
        check-in, the queue taken and the new hash are then recorded at once: a poll never sees a
        tag heard from, nothing pending, and still the old hash. The firmware never shows that
        either (an update stays pending until the tag confirms it, and its hash changes then),
        and a client would take it for "the same picture again" and, once the hash changed, for
        a picture somebody else put there."""
        with self.lock:
            tag = self.tags[normalize_mac(mac)]
            seen = int(at if at is not None else time.time())
            taken = list(tag.queue)
            palette = _hw_types().get(tag.hw_type, (None, PALETTES["bwr"]))[1]
        shows: Image.Image | None = None
        if taken:
            try:
                with Image.open(io.BytesIO(taken[-1])) as img:
                    shows = convert(img, palette)
            except OSError:
                pass  # a JPEG broken past its header: the tag keeps its picture
        with self.lock:
            tag.last_seen = seen
            # What the tag says it will do; the emulator wakes it then with checkin_interval.
            tag.next_checkin = seen + (600 if self.checkin_interval is None else max(1, round(self.checkin_interval)))
            if not taken:
                return False
            # Uploads that came during the conversion stay queued for the next check-in; a "clear"
            # meanwhile emptied the queue already.
            if tag.queue[:len(taken)] == taken:
                del tag.queue[:len(taken)]
            if shows is None:
                return False
            tag.source = hashlib.md5(taken[-1]).digest()
            if tag.screen is not None and shows.tobytes() == tag.screen.tobytes():
                return False
            tag.screen = shows
            # The AP keeps the first 8 bytes of the data's MD5 (newproto.cpp:468-476).
            tag.md5 = hashlib.md5(shows.tobytes()).digest()[:8] + bytes(8)
            tag.update_count += 1
            tag.update_last = tag.last_seen
            return True

    def shown(self, mac: str) -> Image.Image | None:
        """What the tag's screen shows now (mode "P", the panel's palette), or None."""
        with self.lock:
            return self.tags[normalize_mac(mac)].screen

    # The request handlers; each returns (status, content type, body).

    def _get_db(self, query: dict[str, str]) -> tuple[int, str, bytes]:
        with self.lock:
            tags = list(self.tags.values())
        if "mac" in query:
            try:
                mac = normalize_mac(query["mac"])
            except ValueError:
                return _json({"error": "malformatted parameter"})
            return _json({"tags": [t.to_json() for t in tags if t.mac == mac][:1]})
        # atoi() into a uint8_t (web.cpp:328-330): 256 is 0 again.
        pos = _atoi(query.get("pos", "0")) & 0xFF
        doc: dict[str, Any] = {"tags": []}
        for c in range(pos, len(tags)):
            doc["tags"].append(tags[c].to_json())
            if len(json.dumps(doc, separators=(",", ":"))) > PAGE_BYTES:
                doc["continu"] = c + 1
                break
        return _json(doc)

    def _upload(self, parts: list[tuple[str, str | None, bytes]]) -> tuple[int, str, bytes]:
        if self._fault is Fault.NOT_READY:
            return 409, "text/plain", b"Come back later"
        fields: dict[str, str] = {}
        data: bytes | None = None
        for name, filename, payload in parts:
            if filename is not None:
                if "mac" not in fields:  # web.cpp:910-912: mac must come before the file
                    return 400, "text/plain", b"parameters incomplete"
                data = payload
            else:
                fields[name] = payload.decode("utf-8", "replace")
        if data is None or "mac" not in fields:
            return 200, "text/plain", b""  # the outer handler's bare 200 (web.cpp:312)
        try:
            mac = normalize_mac(fields["mac"])
        except ValueError:
            return 200, "text/plain", b""  # hex2mac failed: nothing but the outer 200
        with self.lock:
            tag = self.tags.get(mac)
            if tag is None:
                return 400, "text/plain", b"mac not found"
            error = None
            size = _hw_types().get(tag.hw_type, (None, None))[0]
            try:
                with Image.open(io.BytesIO(data)) as img:  # reads the header only
                    if img.format != "JPEG" or img.info.get("progressive"):
                        raise OSError(f"{img.format} is not a baseline JPEG")
                    got = img.size
                if size is not None and got != size:
                    error = f"image is {got[0]}x{got[1]}, the tag is {size[0]}x{size[1]}"
                else:
                    # "new image is the same as current image. not updating tag." (newproto.cpp:211-213)
                    same = tag.screen is not None and not tag.queue and hashlib.md5(data).digest() == tag.source
                    if not same:
                        tag.queue.append(data)
            except OSError as err:
                error = f"invalid jpg ({err})"
            tag.content_mode = _atoi(fields.get("contentmode", "24"))
            if "alias" in fields:
                tag.alias = fields["alias"]
            self.uploads.append(Upload(mac=mac, fields=fields, data=data, error=error))
        if self.auto_checkin:
            self.checkin(mac)
        return 200, "text/plain", b"Ok, saved"

    def _tag_cmd(self, form: dict[str, str]) -> tuple[int, str, bytes]:
        if "mac" not in form or "cmd" not in form:
            return 500, "text/plain", b"param error"
        try:
            mac = normalize_mac(form["mac"])
        except ValueError:
            return 500, "text/plain", b"param error"
        with self.lock:
            tag = self.tags.get(mac)
            if tag is None:
                return 400, "text/plain", b"Error: mac not found"
            if form["cmd"] == "clear":
                tag.queue.clear()
            elif form["cmd"] == "del":
                del self.tags[mac]
        return 200, "text/plain", b"Ok, done"

    def _sysinfo(self) -> tuple[int, str, bytes]:
        return _json({"alias": self.alias, "env": "emulator", "buildtime": "0", "buildversion": "emulated",
                      "sha": "0", "psramsize": 0, "flashsize": 4194304, "rollback": False, "ap_version": 0,
                      "hasC6": 0, "hasH2": 0, "hasTslr": 0, "hasFlasher": 0})

    def _ap_config(self) -> tuple[int, str, bytes]:
        return _json({"C6": "0", "H2": "0", "TLSR": "0", "savespace": "0", "hasFlasher": "0", "hasBLE": "0",
                      "hasSubGhz": "0", "apstate": "1", "channel": 11, "alias": self.alias})

    def _screen_png(self, mac: str) -> tuple[int, str, bytes]:
        try:
            img = self.shown(mac)
        except (KeyError, ValueError):
            img = None
        if img is None:
            return 404, "text/plain", b"no image"
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return 200, "image/png", buf.getvalue()


def _json(doc: Any) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(doc, separators=(",", ":")).encode()


def _atoi(text: str) -> int:
    m = re.match(r"\s*[+-]?\d+", text)
    return int(m.group()) if m else 0


class MalformedBody(ValueError):
    """A request body the emulator refuses with a 4xx; the message says why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """(name, filename or None, bytes) of each part of a multipart/form-data body, in order.

    python-multipart does the parsing (RFC 7578, streaming, its own header
    limits); what it cannot say, a body cut before its closing boundary and
    a part without a form-data name, is checked here. MalformedBody (400) on
    anything that is not a whole, well-formed body.
    """
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise MalformedBody(400, "Content-Type must be multipart/form-data with a boundary")
    parts: list[tuple[str, str | None, bytes]] = []
    head: dict[bytes, bytes] = {}
    name, value, data = bytearray(), bytearray(), bytearray()
    ended = False

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise MalformedBody(400, f"more than {MAX_PARTS} parts")
        head.clear()
        data.clear()

    def header_end() -> None:
        head[bytes(name).strip().lower()] = bytes(value).strip()
        name.clear()
        value.clear()

    def part_end() -> None:
        kind, opts = parse_options_header(head.get(b"content-disposition"))
        if kind != b"form-data" or b"name" not in opts:
            raise MalformedBody(400, "a part has no Content-Disposition: form-data; name=...")
        filename = opts.get(b"filename")
        parts.append((opts[b"name"].decode("utf-8", "replace"),
                      None if filename is None else filename.decode("utf-8", "replace"), bytes(data)))

    def end() -> None:
        nonlocal ended
        ended = True

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": lambda buf, start, stop: name.extend(buf[start:stop]),
        "on_header_value": lambda buf, start, stop: value.extend(buf[start:stop]),
        "on_header_end": header_end,
        "on_part_data": lambda buf, start, stop: data.extend(buf[start:stop]),
        "on_part_end": part_end,
        "on_end": end,
    }
    try:
        parser = MultipartParser(boundary, callbacks, max_size=max(len(body), 1))  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as err:
        raise MalformedBody(400, f"malformed multipart body: {err}") from err
    if not ended:
        raise MalformedBody(400, "malformed multipart body: it ends before its closing boundary")
    return parts


_GARBAGE = b"\x00\xff\xfeNOT-THE-API{{{\x89PNG\r\n" + bytes(range(32))


class _Handler(BaseHTTPRequestHandler):
    ap: ApEmulator
    server_version = "ESPAsyncWebServer-emulated"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read ap.requests instead of stderr

    def _answer(self, method: str) -> None:
        ap = self.ap
        with ap.lock:
            ap.requests.append(f"{method} {self.path}")
        try:
            body = self._body()
        except MalformedBody as err:
            self.close_connection = True  # the unread body is still on the socket
            return self._send(err.status, "text/plain", str(err).encode())
        fault = ap.fault
        if fault is Fault.HANG:
            ap._release.wait(HANG_LIMIT)
            self.close_connection = True
            return
        if fault is Fault.ERROR_500:
            return self._send(500, "text/plain", b"Internal Server Error")
        if fault is Fault.GARBAGE:
            return self._send(200, "application/json", _GARBAGE)
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        ctype = self.headers.get("Content-Type", "")
        match method, url.path:
            case "GET", "/get_db":
                answer = ap._get_db(query)
            case "GET", "/sysinfo":
                answer = ap._sysinfo()
            case "GET", "/get_ap_config":
                answer = ap._ap_config()
            case "POST", "/imgupload" if ctype.startswith("multipart/form-data"):
                try:
                    answer = ap._upload(_multipart(ctype, body))
                except MalformedBody as err:
                    answer = (err.status, "text/plain", str(err).encode())
            case "POST", "/tag_cmd":
                form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
                answer = ap._tag_cmd(form)
            case "GET", path if path.startswith("/emulator/") and path.endswith(".png"):
                answer = ap._screen_png(path[len("/emulator/"):-len(".png")])
            case _:
                answer = (404, "text/plain", b"Not found")
        self._send(*answer)

    def _body(self) -> bytes:
        """The request body, its length checked against MAX_BODY before any of it is read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise MalformedBody(411, "send a Content-Length (chunked bodies are not accepted)")
        text = (self.headers.get("Content-Length") or "0").strip()
        if not (text.isascii() and text.isdigit()):
            raise MalformedBody(400, f"Content-Length must be a number of bytes, got {text[:20]!r}")
        length = int(text)
        if length > MAX_BODY:
            raise MalformedBody(413, f"body of {length} bytes is over the limit of {MAX_BODY}")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


def demo_tags(ap: ApEmulator) -> None:
    """One tag per OEPL hardware type we have a model for, MACs 00000000DE000001 and on."""
    now = int(time.time())
    for n, hw in enumerate(sorted(_hw_types()), start=1):
        ap.add_tag(f"00000000DE{n:06X}", hw, last_seen=now, next_checkin=now + 600)


def main(argv: list[str] | None = None) -> None:
    """Run an emulated AP with demo tags until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--no-demo-tags", action="store_true", help="start with an empty tag database")
    parser.add_argument("--checkin-interval", type=float, default=None, metavar="S",
                        help="every tag checks in by itself every S seconds (default: only after an upload)")
    args = parser.parse_args(argv)
    # Ctrl-C or SIGTERM set an event the main thread checks: a stop that does not
    # depend on where in the main thread the signal lands.
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    if args.checkin_interval is not None and args.checkin_interval <= 0:
        parser.error("--checkin-interval must be a positive number of seconds")
    ap = ApEmulator(args.host, args.port, auto_checkin=True, checkin_interval=args.checkin_interval)
    if not args.no_demo_tags:
        demo_tags(ap)
    ap.start()
    print(f"OpenEPaperLink AP emulator on {ap.url} with {len(ap.tags)} tags: "
          f"{', '.join(f'{t.mac} (hwType 0x{t.hw_type:02X})' for t in ap.tags.values())}", flush=True)
    try:
        while not stopping.wait(0.2):
            pass
    finally:
        ap.stop()


if __name__ == "__main__":
    main()
