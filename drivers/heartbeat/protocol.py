"""Heartbeat wire protocol: ``PING\\n`` is answered by ``PONG <n>\\n``. No I/O here."""

from __future__ import annotations

from edge_core.errors import DeviceProtocolError

PING = b"PING\n"
# Longest reply a device may send, newline included: "PONG " and a 64-bit counter.
MAX_LINE = 32


def parse_pong(line: bytes) -> int:
    """The beat counter in a ``PONG <n>`` reply; DeviceProtocolError on anything else."""
    if len(line) > MAX_LINE:
        raise DeviceProtocolError(f"reply of {len(line)} bytes is longer than {MAX_LINE}: {line[:40]!r}")
    text = line.strip()
    parts = text.split(b" ")
    # bytes.isdigit() is true for ASCII digits only, so non-ASCII is rejected too.
    if len(parts) != 2 or parts[0] != b"PONG" or not parts[1].isdigit():
        raise DeviceProtocolError(f"expected 'PONG <n>', got {text[:40]!r}")
    return int(parts[1])


def pong(n: int) -> bytes:
    """What a heartbeat device answers to its n-th ping (used by the emulators)."""
    return b"PONG %d\n" % n
