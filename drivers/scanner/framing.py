"""Cuts a serial scanner's byte stream into one text per code. No I/O.

Scanners end each code with a configurable suffix, usually CR, sometimes
CR LF or LF, or none, in which case the pause after a code ends it. The
rules here keep one promise: a good code that follows garbage is never
lost. Garbage is reported once as a ``BadScan`` and the framer
resynchronises at the next suffix or pause.
"""

from __future__ import annotations

import codecs

from drivers.scanner.protocol import BadScan, shown

CR, LF = b"\r", b"\n"
# Suffixes after which any of CR, LF or CR LF ends a code: a scanner set to CR
# by one technician and CR LF by the next must keep working.
_LINE_SUFFIXES = (CR, LF, CR + LF)


class Framer:
    """Splits a scanner's byte stream into codes by suffix (CR, CR LF, LF, or none = idle gap)."""

    def __init__(
        self,
        suffix: bytes | None,
        *,
        max_length: int = 512,
        encoding: str = "utf-8",
        gap: float = 0.05,
        stale: float = 1.0,
    ):
        if suffix == b"":
            raise ValueError("suffix must be None (idle gap) or at least one byte")
        self.suffix = suffix
        self.max_length = max_length
        self.encoding = encoding
        self._encoding_name = codecs.lookup(encoding).name.upper()
        self.gap = gap
        self.stale = stale
        self._buf = bytearray()
        self._last: float | None = None  # when the last byte of the pending frame came
        self._skipping = False           # dropping an overlong frame until the next end

    @property
    def pending(self) -> int:
        """Bytes of a frame received but not yet ended."""
        return len(self._buf)

    def feed(self, data: bytes, now: float) -> list[str | BadScan]:
        """The frames that ``data`` completes: decoded text, or BadScan for bad ones."""
        out = self._expire(now, self.gap if self.suffix is None else self.stale)
        if not data:
            return out
        self._buf += data
        self._last = now
        if self.suffix is not None:
            while (end := self._find_end()) is not None:
                start, stop = end
                frame = bytes(self._buf[:start])
                del self._buf[:stop]
                if self._skipping:
                    self._skipping = False  # the tail of an overlong frame: already reported
                elif len(frame) > self.max_length:
                    out.append(BadScan(shown(frame), f"longer than {self.max_length} bytes"))
                elif frame:
                    out.append(self._decode(frame))
        if len(self._buf) > self.max_length:
            if not self._skipping:
                out.append(BadScan(shown(bytes(self._buf)), f"longer than {self.max_length} bytes"))
                self._skipping = True
            # Keep only what could be the start of a multi-byte suffix.
            keep = len(self.suffix) - 1 if self.suffix else 0
            del self._buf[:len(self._buf) - keep]
        return out

    def flush(self, now: float) -> list[str | BadScan]:
        """End a frame by time: after ``gap`` without a suffix, or report it after ``stale`` with one."""
        return self._expire(now, self.gap if self.suffix is None else self.stale)

    def _expire(self, now: float, after: float) -> list[str | BadScan]:
        if self._last is None or now - self._last < after:
            return []
        frame, skipping = bytes(self._buf), self._skipping
        self._buf.clear()
        self._last = None
        self._skipping = False
        if skipping or not frame:
            return []
        if self.suffix is None:
            return [self._decode(frame)]
        return [BadScan(shown(frame), f"missing suffix {self.suffix!r}: no end after {after:g} s")]

    def _find_end(self) -> tuple[int, int] | None:
        """(start, stop) of the first suffix in the buffer, or None."""
        if self.suffix in _LINE_SUFFIXES:
            cr, lf = self._buf.find(CR), self._buf.find(LF)
            hits = [i for i in (cr, lf) if i >= 0]
            if not hits:
                return None
            # A CR LF pair counts as one end; a lone LF right after a CR that
            # ended the previous frame gives an empty frame, which is dropped.
            start = min(hits)
            stop = start + 2 if self._buf[start:start + 2] == CR + LF else start + 1
            return start, stop
        assert self.suffix is not None
        start = self._buf.find(self.suffix)
        return None if start < 0 else (start, start + len(self.suffix))

    def _decode(self, frame: bytes) -> str | BadScan:
        try:
            return frame.decode(self.encoding)
        except UnicodeDecodeError as err:
            reason = f"not valid {self._encoding_name}: byte 0x{frame[err.start]:02x} at {err.start}"
            return BadScan(shown(frame), reason)
