"""The file back end: each label is ``<dir>/<key>.png``, for stores without
electronic labels (print them, show them on a screen) and for ``make run``.

A key is a tag MAC or a SKU. Files are replaced atomically (a temporary file
in the same directory, fsync, rename), so a reader never sees half a label,
and the content hash is kept inside the PNG (a text chunk) so that the driver
can tell what a file shows without keeping a table of its own. The methods
block on the disk: from async code call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, PngImagePlugin

HASH_KEY = "edge-agent:content-hash"
# Keys become file names: no separators, no leading dot, no surprises.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class FileLabel:
    """One label file: its key, path, content hash (None if written without) and time."""

    key: str
    path: Path
    content_hash: str | None
    modified: datetime


class FileLabels:
    """Label PNGs in one directory."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        """Where the label ``key`` lives; ValueError for a key that is not a safe file name."""
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"label key {key!r} must be 1-64 of A-Z a-z 0-9 . _ - and start with a letter or digit")
        return self.directory / f"{key}.png"

    def write(self, key: str, image: Image.Image, content_hash: str | None = None) -> Path:
        """Replace the label ``key`` with ``image`` atomically; returns its path."""
        target = self.path(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = PngImagePlugin.PngInfo()
        if content_hash is not None:
            meta.add_text(HASH_KEY, content_hash)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.directory)
        try:
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
                digest = img.info.get(HASH_KEY)
        except FileNotFoundError:
            return None
        except OSError:
            digest = None  # not a PNG (any more): no hash, so the driver writes it again
        return FileLabel(key=key, path=path, content_hash=digest if isinstance(digest, str) else None,
                         modified=datetime.fromtimestamp(mtime, timezone.utc))

    def keys(self) -> list[str]:
        """Keys of every label file in the directory, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.png") if _KEY.match(p.stem))

    def remove(self, key: str) -> bool:
        """Delete the label ``key``; False if there was none."""
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False
