"""USB transport on pyusb (libusb-1.0): receipt printers that speak USB natively.

A USB printer (interface class 7) has one bulk OUT endpoint for the print
stream and, on ESC/POS printers, a bulk IN endpoint that carries the
replies to DLE EOT status queries. Linux binds its ``usblp`` driver to such
a printer (/dev/usb/lp0); it is detached here so the agent owns the device,
as python-escpos's ``Usb`` printer does. pyusb blocks, so every call runs in
a worker thread; ``usb.core.USBError`` is mapped to the agent's errors here.

Bulk IN reads always ask for whole packets (``wMaxPacketSize``): a read
shorter than the packet the printer sends overflows ("babble") on real
controllers. Bytes beyond what a caller asked for wait for its next read.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

from drivers.transport.base import Transport
from edge_core.errors import DeviceMissing, DeviceTimeout, TransportClosed

# A chunk per bulk OUT transfer: small enough that each finishes well within
# the write timeout on a full-speed printer, large enough to keep it busy.
WRITE_CHUNK = 4096
WRITE_TIMEOUT_MS = 5000
_BULK = 0x02  # bmAttributes transfer type
_GONE = {errno.ENODEV, errno.ENOENT, errno.EIO, errno.EPIPE, errno.ESHUTDOWN, errno.EPROTO}


def _find_devices(vendor: int, product: int) -> list[Any]:
    """Every attached device with this vendor and product id (pyusb, libusb-1.0 backend)."""
    import usb.core  # imported here: only USB printers need libusb

    try:
        return list(usb.core.find(find_all=True, idVendor=vendor, idProduct=product))
    except usb.core.NoBackendError as err:
        raise DeviceMissing("no libusb backend for pyusb: install libusb-1.0 (Debian: libusb-1.0-0)") from err


def _dispose(device: Any) -> None:
    import usb.util

    usb.util.dispose_resources(device)


class UsbTransport(Transport):
    """One USB printer, found by vendor and product id (and serial number, when several are attached)."""

    type = "usb"

    def __init__(self, vendor: int, product: int, *, serial: str | None = None, interface: int = 0,
                 in_ep: int | None = None, out_ep: int | None = None,
                 find: Callable[[int, int], list[Any]] = _find_devices,
                 dispose: Callable[[Any], None] = _dispose):
        self.vendor = vendor
        self.product = product
        self.serial = serial
        self.interface = interface
        self.in_ep = in_ep
        self.out_ep = out_ep
        self._find = find
        self._dispose = dispose
        self._device: Any = None
        self._packet = 64
        self._pending = b""

    @property
    def is_open(self) -> bool:
        return self._device is not None

    async def open(self) -> None:
        """Find, detach usblp, pick the bulk endpoints; DeviceMissing when no such printer is attached."""
        await self.close()
        self._device, self.out_ep, self.in_ep, self._packet = await asyncio.to_thread(self._open)
        self._pending = b""

    def _open(self) -> tuple[Any, int, int | None, int]:
        import usb.core

        try:
            found = self._find(self.vendor, self.product)
            if self.serial is not None:
                found = [d for d in found if _serial_number(d) == self.serial]
            if not found:
                raise DeviceMissing(f"no USB printer {self.describe()} attached")
            device = found[0]
            if _kernel_driver_active(device, self.interface):
                device.detach_kernel_driver(self.interface)  # usblp: /dev/usb/lp0 goes away while we print
            try:
                config = device.get_active_configuration()
            except usb.core.USBError:
                device.set_configuration()  # unconfigured: take the first configuration
                config = device.get_active_configuration()
            endpoints = list(config[(self.interface, 0)])
        except usb.core.USBError as err:
            raise DeviceMissing(f"cannot open USB printer {self.describe()}: {err}") from err
        out_ep = self.out_ep or _bulk(endpoints, into_host=False)
        in_ep = self.in_ep or _bulk(endpoints, into_host=True)
        if out_ep is None:
            raise DeviceMissing(f"USB device {self.describe()} has no bulk OUT endpoint on interface "
                                f"{self.interface}: not a printer interface")
        packet = next((e.wMaxPacketSize for e in endpoints if e.bEndpointAddress == in_ep), 64)
        return device, out_ep, in_ep, packet or 64

    async def close(self) -> None:
        """Release the device; never raises, safe to call twice."""
        device, self._device = self._device, None
        self._pending = b""
        if device is None:
            return
        try:
            await asyncio.to_thread(self._dispose, device)
        except Exception:  # noqa: BLE001 - the device may be gone; releasing it is all we want
            pass

    async def write(self, data: bytes) -> None:
        """Send all of ``data`` as bulk OUT transfers of at most WRITE_CHUNK bytes."""
        device = self._require()
        for start in range(0, len(data), WRITE_CHUNK):
            chunk = data[start:start + WRITE_CHUNK]
            await self._call(lambda c=chunk: device.write(self.out_ep, c, WRITE_TIMEOUT_MS), "write")

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """Up to ``max_bytes`` from the bulk IN endpoint; b"" after ``timeout`` s with nothing."""
        device = self._require()
        if self.in_ep is None:
            await asyncio.sleep(timeout)  # a write-only printer never answers
            return b""
        if not self._pending and timeout > 0:
            # timeout 0 asks what has arrived: on USB nothing arrives until an IN
            # transfer is made, so that is only what an earlier packet left over.
            ms = max(1, int(timeout * 1000))
            got = await self._call(lambda: device.read(self.in_ep, self._packet, ms), "read")
            self._pending = bytes(got) if got is not None else b""
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def _call(self, fn: Callable[[], Any], what: str) -> Any:
        import usb.core

        try:
            return await asyncio.to_thread(fn)
        except usb.core.USBTimeoutError as err:
            if what == "read":
                return b""
            raise DeviceTimeout(f"{self.describe()}: {what} did not finish within {WRITE_TIMEOUT_MS} ms: "
                                "the printer takes no data (paper out? cover open?)") from err
        except usb.core.USBError as err:
            if err.errno in _GONE or err.errno is None:
                await self.close()
                raise TransportClosed(f"{self.describe()}: {what} failed, the printer is gone: {err}") from err
            raise DeviceTimeout(f"{self.describe()}: {what} failed: {err}") from err

    def _require(self) -> Any:
        if self._device is None:
            raise TransportClosed(f"{self.describe()} is not open")
        return self._device

    def describe(self) -> str:
        serial = f"/{self.serial}" if self.serial else ""
        return f"usb://{self.vendor:04x}:{self.product:04x}{serial}"


def _bulk(endpoints: list[Any], *, into_host: bool) -> int | None:
    """The address of the first bulk endpoint in that direction (bit 7 set: IN, device to host)."""
    for e in endpoints:
        if e.bmAttributes & 0x03 == _BULK and bool(e.bEndpointAddress & 0x80) == into_host:
            return e.bEndpointAddress
    return None


def _kernel_driver_active(device: Any, interface: int) -> bool:
    try:
        return bool(device.is_kernel_driver_active(interface))
    except NotImplementedError:  # backends other than libusb-1.0 cannot tell
        return False


def _serial_number(device: Any) -> str | None:
    import usb.core

    try:
        return device.serial_number
    except (usb.core.USBError, ValueError):
        return None
