"""Byte transports: how a driver's bytes reach a device, kept apart from the
protocol (what the bytes mean) and from the glue (when to send them).

Every transport type has a fake with the same interface (``fake.py``) so a
driver's tests assert exact bytes without hardware.
"""

from drivers.transport.base import Transport
from drivers.transport.fake import FakeTransport

__all__ = ["Transport", "FakeTransport"]
