"""How JSON and UUIDs are packed on disk, so that a week offline fits.

A stored document is one version byte and the document's compact JSON,
deflated with a preset dictionary of the words every sale and event repeats
(keys, payment methods, ISO timestamps). A preset dictionary matters here
because each document is small (a sale is about 600 bytes of JSON): plain
zlib has nothing to refer back to and saves little; with the dictionary a
sale shrinks to about a third (bench/bench_offline.py has the figures).

A dictionary that has shipped is never edited: documents on disk name the
version that packed them. A new dictionary gets a new version byte and
``unpack`` keeps reading the old ones.

UUIDs are stored as their 16 bytes instead of 36 characters of text.
"""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

# Version 1's dictionary. Deflate finds matches nearest the end of the
# dictionary cheapest, so the most frequent words come last.
_DICT_V1 = (
    b'"retail.device.alert""retail.stock.adjusted""retail.return.accepted""retail.order.status"'
    b'"device""state""since""last_error""reason""sku":"","qty":1},{"sku":"'
    b'"names":["","created_at":"2026-01-01T00:00:00.000000+00:00"}'
    b'{"event":{"sale_id":"","client_sale_id":"","store":"store-","client":"kiosk-",'
    b'"lines":[{"sku":"","qty":1,"unit_price":"0.00"}],"total":"0.00","currency":"CNY",'
    b'"member_id":null,"member_id":"M-","points_earned":0,"points_redeemed":0,'
    b'"payment":{"method":"card","reference":"T0"}},"payment":{"method":"cash","reference":null}},'
    b'"payment":{"method":"qr","reference":"'
)
_V1 = 1
# zlib's default. At 9 two of deflate's buffers are 128 KiB, which glibc's malloc
# maps fresh from the kernel for every document and unmaps after: a new
# compressor per document then costs more in page faults than in deflating
# (a third of the writer thread's time with 32 writers; bench/bench_outbox.py).
# At 8 every buffer is 64 KiB or less and comes from the heap; for documents
# of a few KiB the output is the same size.
_MEM_LEVEL = 8
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def pack(document: Any) -> bytes:
    """Compact JSON of ``document``, deflated with the current dictionary, behind its version byte."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, _DICT_V1)
    return bytes((_V1,)) + deflate.compress(_ENCODE(document).encode()) + deflate.flush()


def unpack(blob: bytes | str) -> Any:
    """The document ``pack`` stored; plain JSON text (rows from before packing) is read as is."""
    if isinstance(blob, str):
        return json.loads(blob)
    if not blob or blob[0] != _V1:
        raise ValueError(f"stored document has unknown packing version {blob[:1]!r}")
    inflate = zlib.decompressobj(-15, _DICT_V1)
    return json.loads(inflate.decompress(blob[1:]) + inflate.flush())


def uuid_bytes(value: str | uuid.UUID) -> bytes:
    """The 16 bytes of a UUID given as text or as a UUID."""
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(value)).bytes


def uuid_text(value: bytes | str) -> str:
    """The canonical text of a UUID stored as 16 bytes (text is returned as is)."""
    return value if isinstance(value, str) else str(uuid.UUID(bytes=value))
