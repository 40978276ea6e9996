"""The transport seam: an async byte pipe to one device."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar


class Transport(ABC):
    """An async byte pipe. ``read`` returns ``b""`` on timeout and raises
    ``TransportClosed`` when the link is gone; errors are ``DeviceError``s."""

    type: ClassVar[str]

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """True between a successful ``open`` and ``close`` or a dropped link."""

    @abstractmethod
    async def open(self) -> None:
        """Connect; raise ``DeviceMissing`` when there is nothing to connect to."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect; never raises, safe to call twice."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Send all of ``data`` or raise."""

    @abstractmethod
    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """Up to ``max_bytes`` that have arrived, waiting at most ``timeout`` s."""

    def describe(self) -> str:
        """Where this transport points, for logs and ``GET /v1/devices``."""
        return self.type
