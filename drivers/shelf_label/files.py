"""The file back end: each label is ``<dir>/<key>.png``, for stores without
electronic labels (print them, show them on a screen) and for ``make run``.

A key is a tag MAC or a SKU. Files are replaced atomically (a temporary file
in the same directory, fsync, rename), so a reader never sees half a label,
and the content hash is kept inside the PNG (a text chunk) so that the driver
can tell what a file shows without keeping a table of its own. Next to it,
``facts`` say in words what the picture shows (``edge-agent:sku``,
``edge-agent:price``, ``edge-agent:currency``, or ``edge-agent:notice``), for
whoever checks the labels from outside. Files are readable by everyone
(0644 under the usual umask): store staff and a web server open them. The
methods block on the disk: from async code call them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, PngImagePlugin

HASH_KEY = "edge-agent:content-hash"
FACT_PREFIX = "edge-agent:"  # text chunks saying what a label shows: edge-agent:sku, edge-agent:price, ...
_FACT = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MODE = 0o644  # a label is a picture for people to look at; the umask still applies
# Keys become file names: no separators, no leading dot, no surprises.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class FileLabel:
    """One label file: its key, path, content hash (None if written without) and time."""

    key: str
    path: Path
    content_hash: str | None
    modified: datetime
    facts: dict[str, str] | None = None  # the edge-agent:* text chunks but the hash, by name without prefix


class FileLabels:
    """Label PNGs in one directory."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.mode = MODE & ~_umask()

    def path(self, key: str) -> Path:
        """Where the label ``key`` lives; ValueError for a key that is not a safe file name."""
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"label key {key!r} must be 1-64 of A-Z a-z 0-9 . _ - and start with a letter or digit")
        return self.directory / f"{key}.png"

    def write(self, key: str, image: Image.Image, content_hash: str | None = None,
              facts: Mapping[str, str] | None = None) -> Path:
        """Replace the label ``key`` with ``image`` atomically; returns its path. ``facts`` become
        ``edge-agent:<name>`` text chunks (names of a-z, 0-9 and -, values up to 1,000 characters)."""
        target = self.path(key)
        meta = PngImagePlugin.PngInfo()
        if content_hash is not None:
            meta.add_text(HASH_KEY, content_hash)
        for name, value in (facts or {}).items():
            if not _FACT.match(name) or name == "content-hash" or not isinstance(value, str) or len(value) > 1000:
                raise ValueError(f"label fact {name!r}: a name of a-z 0-9 - (not content-hash) and a short text")
            meta.add_itxt(FACT_PREFIX + name, value)  # iTXt: UTF-8, a notice is partly Chinese
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.directory)
        try:
            # mkstemp creates 0600, which only the agent's user could open.
            os.fchmod(fd, self.mode)
            with os.fdopen(fd, "wb") as f:
                image.save(f, "PNG", pnginfo=meta)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def read(self, key: str) -> Image.Image | None:
        """The picture the label ``key`` shows, or None if there is no such file (OSError if unreadable)."""
        try:
            with Image.open(self.path(key)) as img:
                img.load()
                return img
        except FileNotFoundError:
            return None

    def info(self, key: str) -> FileLabel | None:
        """Key, path, content hash and time of the label ``key``, or None if there is none."""
        path = self.path(key)
        try:
            mtime = path.stat().st_mtime
            with Image.open(path) as img:
                chunks = dict(img.info)
        except FileNotFoundError:
            return None
        except OSError:
            chunks = {}  # not a PNG (any more): no hash, so the driver writes it again
        digest = chunks.get(HASH_KEY)
        facts = {k[len(FACT_PREFIX):]: str(v) for k, v in chunks.items()
                 if isinstance(k, str) and k.startswith(FACT_PREFIX) and k != HASH_KEY}
        return FileLabel(key=key, path=path, content_hash=digest if isinstance(digest, str) else None,
                         modified=datetime.fromtimestamp(mtime, timezone.utc), facts=facts or None)

    def keys(self) -> list[str]:
        """Keys of every label file in the directory, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.png") if _KEY.fullmatch(p.stem))

    def remove(self, key: str) -> bool:
        """Delete the label ``key``; False if there was none."""
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, racing other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022  # the usual one, where /proc does not say
