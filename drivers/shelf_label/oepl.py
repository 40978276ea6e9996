"""Async client of an OpenEPaperLink access point's HTTP API (httpx).

Facts from the AP firmware, github.com/OpenEPaperLink/OpenEPaperLink at
commit cdd1cfa9 (2026-08-18), ESP32_AP-Flasher/:

* ``POST /imgupload`` (src/web.cpp:310-314, handler doImageUpload 903-1021):
  multipart form; ``mac`` must come *before* the file part, because the
  handler looks for it when the first file bytes arrive (911: 400
  "parameters incomplete" otherwise). The file is stored as a .jpg and
  decoded by TJpgDec (src/makeimage.cpp:32 jpg2buffer): baseline JPEG only,
  no PNG, no progressive JPEG (wwwroot/content_cards.json: "non-progressive").
  The picture must be the tag type's width x height; the AP turns it for the
  panel itself (tagtype "rotatebuffer", makeimage.cpp:121-130).
  Optional fields: ``dither`` (974-977; default 1 = Burkes error diffusion,
  0 = nearest palette colour, 2 = ordered), ``rotate`` and ``invert``
  (981-989; *stored on the tag record and kept for later uploads*, so we send
  0 every time), ``alias``, ``ttl``, ``contentmode`` (default 24 "External
  image", 1008). Answers: 200 "Ok, saved"; 400 "mac not found" (1015) for a
  tag the AP does not know; 409 "Come back later" (907) while the AP is not
  running. A MAC that is not 12 or 16 hex digits gets neither: the outer
  handler's empty 200, so we check MACs before sending.
* Colour mapping with dither 0 (makeimage.cpp:78-86 colorDistance, 185-196):
  the nearest palette colour by 3*dR^2 + 5.47*dG^2 + 1.53*dB^2, and a greyish
  pixel (|R-G| < 20 and |B-G| < 20) never becomes red. Our pictures hold only
  palette colours, so with dither 0 the tag shows exactly what we rendered.
* ``GET /get_db`` (web.cpp:317-335; src/tag_db.cpp:69-91 tagDBtoJson):
  ``{"tags": [...]}``; when the JSON passes 5000 bytes it stops and adds
  ``"continu": <next index>``, to be passed back as ``?pos=``. ``pos`` is
  parsed into a uint8_t (web.cpp:328-330), so an AP with more than 256 tags
  cannot be paged past index 255: we stop when a page brings nothing new.
  ``?mac=`` returns that one tag (or no tag), ``{"error": ...}`` for a bad MAC.
* Tag fields (tag_db.cpp:93-125 fillNode; include/tag_db.h types): ``mac``
  16 upper-case hex digits (mac2hex, tag_db.cpp:47-50; a 12-digit MAC is the
  same tag with "0000" in front, hex2mac 53-67), ``lastseen`` uint32 Unix
  seconds (0 = never), ``nextcheckin`` (3216153600 = not expected), ``pending``
  uint16 queued updates, ``hash`` 32 hex digits: the first 8 bytes of the MD5
  of the data the tag last *confirmed* (src/newproto.cpp:468-476), rest zero,
  ``batteryMv`` uint16, ``RSSI`` int8, ``LQI`` uint8, ``hwType`` uint8
  (resources/tagtypes/<XX>.json), ``temperature``, ``alias``, ``contentMode``,
  ``wakeupReason``, ``ver``, ``updatecount``, ``updatelast``.
* ``POST /tag_cmd`` form ``mac``, ``cmd`` in refresh, clear, reboot, scan,
  reset, deepsleep, ledflash... (web.cpp:429-521): 200 "Ok, done", 400 "Error:
  mac not found", 500 "param error".
* ``GET /sysinfo`` (src/ota.cpp:38-70): JSON alias, env, buildtime,
  buildversion, sha, psramsize, flashsize, rollback, ap_version, hasC6, ...;
  small and cheap, so it is the health check.

Failures map onto edge_core.errors here and nowhere else: no answer in time
-> DeviceTimeout, refused or unreachable -> DeviceMissing, connection dropped
-> TransportClosed, an HTTP error status or a body that does not parse ->
DeviceProtocolError (``ApHttpError`` carries the status).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from PIL import Image

from edge_core.errors import DeviceMissing, DeviceProtocolError, DeviceTimeout, TransportClosed

log = logging.getLogger(__name__)

# "nextcheckin" = 3216153600 marks a tag the AP does not expect back (web.cpp:445, newproto.cpp:484).
NEVER = 3216153600
# /get_db pages are ~5 kB; a body far larger is not the AP talking.
MAX_BODY = 1 << 20
# Pages are at least one tag each; a 256-tag AP needs well under this many.
MAX_PAGES = 300
_HEX = re.compile(r"^[0-9A-F]+$")

TagCommand = Literal["refresh", "clear", "reboot", "scan", "reset", "deepsleep", "ledflash", "ledflash_long",
                     "ledflash_stop"]


class TagNotFound(DeviceMissing):
    """The access point answered, but does not know a tag with that MAC."""


class ApNotReady(DeviceTimeout):
    """The access point is starting or paused and refuses uploads for now (409)."""


class ApHttpError(DeviceProtocolError):
    """The access point answered with an HTTP error status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TagInfo:
    """One tag as the access point last heard it."""

    mac: str  # 16 upper-case hex digits
    hw_type: int
    last_seen: datetime | None  # UTC; None if never
    next_checkin: datetime | None
    battery_mv: int
    rssi: int  # dBm
    lqi: int
    temperature: int  # degrees C
    pending: int  # updates queued at the AP, not yet fetched by the tag
    shown_hash: str | None  # AP's hash of the image the tag confirmed; None if none yet
    alias: str
    content_mode: int
    version: int  # tag firmware
    update_count: int
    update_last: datetime | None


@dataclass(frozen=True)
class ApInfo:
    """What /sysinfo says about the access point."""

    alias: str
    env: str
    build_version: str
    raw: dict[str, Any]


def normalize_mac(mac: str) -> str:
    """``mac`` as the AP prints it (16 upper-case hex digits); ValueError if it is not a MAC."""
    hexed = mac.replace(":", "").replace("-", "").strip().upper()
    if len(hexed) not in (12, 16) or not _HEX.match(hexed):
        raise ValueError(f"{mac!r} is not a tag MAC: 12 or 16 hex digits, ':' or '-' allowed")
    return hexed.rjust(16, "0")


def _excerpt(body: bytes) -> str:
    return repr(body[:60]) + ("..." if len(body) > 60 else "")


def _time(value: int) -> datetime | None:
    return None if value in (0, NEVER) else datetime.fromtimestamp(value, timezone.utc)


def parse_tag(obj: Any) -> TagInfo:
    """A TagInfo from one entry of /get_db's "tags"; DeviceProtocolError naming what is wrong."""
    if not isinstance(obj, dict):
        raise DeviceProtocolError(f"tag entry is {type(obj).__name__}, not an object")

    def num(key: str, lo: int, hi: int, default: int | None = None) -> int:
        value = obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise DeviceProtocolError(f"tag {obj.get('mac')!r}: {key} = {value!r} is not an integer "
                                      f"in {lo}..{hi}")
        return value

    try:
        mac = normalize_mac(obj.get("mac") if isinstance(obj.get("mac"), str) else "")
    except ValueError as err:
        raise DeviceProtocolError(f"tag entry has no valid mac: {obj.get('mac')!r}") from err
    digest = obj.get("hash", "")
    if not isinstance(digest, str) or (digest and not re.fullmatch(r"[0-9a-fA-F]{32}", digest)):
        raise DeviceProtocolError(f"tag {mac}: hash {digest!r} is not 32 hex digits")
    alias = obj.get("alias", "")
    return TagInfo(
        mac=mac,
        hw_type=num("hwType", 0, 255),
        last_seen=_time(num("lastseen", 0, 2**32 - 1)),
        next_checkin=_time(num("nextcheckin", 0, 2**32 - 1, 0)),
        battery_mv=num("batteryMv", 0, 65535),
        rssi=num("RSSI", -128, 127),
        lqi=num("LQI", 0, 255),
        temperature=num("temperature", -128, 127, 0),
        pending=num("pending", 0, 65535),
        shown_hash=None if not digest or set(digest) == {"0"} else digest.lower(),
        alias=alias if isinstance(alias, str) else "",
        content_mode=num("contentMode", 0, 255, 0),
        version=num("ver", 0, 65535, 0),
        update_count=num("updatecount", 0, 2**32 - 1, 0),
        update_last=_time(num("updatelast", 0, 2**32 - 1, 0)),
    )


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DeviceProtocolError(f"{what}: answer is not JSON: {_excerpt(body)}") from err


def parse_db_page(body: bytes) -> tuple[list[TagInfo], int | None]:
    """The tags of one /get_db answer and the ``pos`` of the next page (None on the last)."""
    doc = _json(body, "GET /get_db")
    if not isinstance(doc, dict):
        raise DeviceProtocolError(f"GET /get_db: expected an object, got {_excerpt(body)}")
    if "error" in doc:
        raise DeviceProtocolError(f"GET /get_db: the AP says {doc['error']!r}")
    tags = doc.get("tags")
    if not isinstance(tags, list):
        raise DeviceProtocolError(f"GET /get_db: no \"tags\" list in {_excerpt(body)}")
    more = doc.get("continu")
    if more is not None and (isinstance(more, bool) or not isinstance(more, int) or more < 0):
        raise DeviceProtocolError(f"GET /get_db: continu = {more!r} is not a position")
    return [parse_tag(t) for t in tags], more


def encode_jpeg(image: Image.Image) -> bytes:
    """``image`` as the AP's decoder takes it: baseline JPEG, no chroma subsampling."""
    buf = io.BytesIO()
    # Quality 95 and 4:4:4 keep a red edge red: with 4:2:0 the chroma of a
    # red stroke one pixel wide bleeds into its white neighbours.
    image.convert("RGB").save(buf, "JPEG", quality=95, subsampling=0, progressive=False, optimize=False)
    return buf.getvalue()


def multipart(fields: dict[str, str], name: str, filename: str, data: bytes, ctype: str) -> tuple[bytes, str]:
    """A multipart/form-data body (fields first, then the file: the AP needs ``mac`` before the file)
    and its Content-Type. Built whole, so an upload leaves in one write rather than one per part."""
    boundary = os.urandom(16).hex()
    out = bytearray()
    for key, value in fields.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n').encode()
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n").encode()
    out += data
    out += f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class OeplClient:
    """One OpenEPaperLink access point. ``open()`` before use, ``close()`` after."""

    def __init__(self, base_url: str, *, timeout: float = 5.0, upload_timeout: float = 20.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._warned_paging = False

    async def open(self) -> None:
        """Create the HTTP client (no request is made)."""
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, transport=self._transport,
                                             timeout=self.timeout, follow_redirects=False)

    async def close(self) -> None:
        """Close the HTTP client; safe to call twice."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> "OeplClient":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> bytes:
        """One request; the body of a 200 answer, or the mapped DeviceError."""
        if self._client is None:
            raise RuntimeError("OeplClient.open() was not called")
        timeout = timeout or self.timeout
        what = f"{method} {self.base_url}{path}"
        try:
            # httpx's timeout is per read; the outer one bounds an AP that trickles bytes.
            async with asyncio.timeout(timeout * 2):
                async with self._client.stream(method, path, timeout=timeout, **kwargs) as resp:
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY:
                            raise DeviceProtocolError(f"{what}: answer longer than {MAX_BODY} bytes")
                    status = resp.status_code
        except (TimeoutError, httpx.TimeoutException) as err:
            raise DeviceTimeout(f"{what}: no answer within {timeout} s") from err
        except httpx.ConnectError as err:
            raise DeviceMissing(f"{what}: cannot connect ({err or 'refused'})") from err
        except httpx.RemoteProtocolError as err:
            raise DeviceProtocolError(f"{what}: not an HTTP answer ({err})") from err
        except httpx.NetworkError as err:
            raise TransportClosed(f"{what}: connection dropped ({err})") from err
        except httpx.HTTPError as err:
            raise DeviceProtocolError(f"{what}: {type(err).__name__}: {err}") from err
        body = bytes(body)
        if status == 200:
            return body
        text = body[:200].decode("utf-8", "replace").strip()
        if status == 409:
            raise ApNotReady(f"{what}: the access point is not running yet ({status} {text!r}); retry later")
        if status == 400 and "mac not found" in text:
            raise TagNotFound(f"{what}: the access point knows no such tag ({text!r})")
        raise ApHttpError(f"{what}: HTTP {status} {text[:80]!r}", status)

    async def sysinfo(self) -> ApInfo:
        """The AP's build and alias (GET /sysinfo); the cheap health check."""
        doc = _json(await self._call("GET", "/sysinfo"), "GET /sysinfo")
        if not isinstance(doc, dict):
            raise DeviceProtocolError(f"GET /sysinfo: expected an object, got {type(doc).__name__}")
        return ApInfo(alias=str(doc.get("alias", "")), env=str(doc.get("env", "")),
                      build_version=str(doc.get("buildversion", "")), raw=doc)

    async def tags(self) -> list[TagInfo]:
        """Every tag the AP knows, all pages of /get_db."""
        found: dict[str, TagInfo] = {}
        pos = 0
        for _ in range(MAX_PAGES):
            page, more = parse_db_page(await self._call("GET", "/get_db", params={"pos": pos}))
            new = [t for t in page if t.mac not in found]
            found.update((t.mac, t) for t in new)
            if more is None:
                return list(found.values())
            if not new and pos > 0:
                # pos is a uint8_t in the AP (web.cpp:328): past 255 it wraps to the first page.
                if not self._warned_paging:
                    log.warning("%s: tag list cut at %d tags: the AP cannot page past index 255",
                                self.base_url, len(found))
                    self._warned_paging = True
                return list(found.values())
            if more <= pos:
                raise DeviceProtocolError(f"GET /get_db: continu {more} does not move past pos {pos}")
            pos = more
        raise DeviceProtocolError(f"GET /get_db: more than {MAX_PAGES} pages")

    async def tag(self, mac: str) -> TagInfo | None:
        """One tag by MAC (GET /get_db?mac=), or None if the AP does not know it."""
        page, _ = parse_db_page(await self._call("GET", "/get_db", params={"mac": normalize_mac(mac)}))
        return page[0] if page else None

    async def upload(self, mac: str, image: Image.Image | bytes, *, dither: int = 0, alias: str | None = None) -> None:
        """Send ``image`` (the tag type's width x height; or bytes already made by ``encode_jpeg``) to the
        tag; the AP queues it for the tag's next check-in. TagNotFound if the AP does not know the tag,
        ApNotReady while it starts."""
        fields = {"mac": normalize_mac(mac), "dither": str(dither), "rotate": "0", "invert": "0"}
        if alias is not None:
            fields["alias"] = alias
        jpeg = image if isinstance(image, bytes) else encode_jpeg(image)
        content, content_type = multipart(fields, "file", "label.jpg", jpeg, "image/jpeg")
        body = await self._call("POST", "/imgupload", content=content, headers={"Content-Type": content_type},
                                timeout=self.upload_timeout)
        if not body.startswith(b"Ok"):
            raise DeviceProtocolError(f"POST /imgupload: unexpected answer {_excerpt(body)}")

    async def command(self, mac: str, cmd: TagCommand) -> None:
        """Ask the AP to send ``cmd`` to the tag at its next check-in (POST /tag_cmd)."""
        body = await self._call("POST", "/tag_cmd", data={"mac": normalize_mac(mac), "cmd": cmd})
        if not body.startswith(b"Ok"):
            raise DeviceProtocolError(f"POST /tag_cmd: unexpected answer {_excerpt(body)}")
