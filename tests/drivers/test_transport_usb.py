"""UsbTransport against a fake pyusb device at its boundary: endpoints, usblp, packets, unplug.

The fake stands where ``usb.core.find`` would hand back a ``usb.core.Device``:
the same methods (``is_kernel_driver_active``, ``detach_kernel_driver``,
``get_active_configuration``, ``write``, ``read``) and the same errors
(``usb.core.USBError``, ``USBTimeoutError``). Behind it an ESC/POS parser
plays the printer, so a whole job can be read back. The same transport
under umockdev, with the real pyusb and libusb, is in
tests/drivers/printer/test_usb_umockdev.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import dataclass, field

import pytest
import usb.core

from drivers.base import DriverContext
from drivers.printer import status as st
from drivers.printer.config import PrinterConfig
from drivers.printer.documents import render
from drivers.printer.driver import EscPosPrinter
from drivers.printer.parser import EscPosParser, split_documents
from drivers.transport.usb import WRITE_CHUNK, UsbTransport
from edge_agent.bus import EventBus
from edge_core.errors import DeviceMissing, DeviceTimeout, TransportClosed


def run(coro, timeout: float = 60.0):  # generous: a busy machine is no failure
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Endpoint:
    bEndpointAddress: int
    bmAttributes: int = 0x02  # bulk
    wMaxPacketSize: int = 64


@dataclass
class FakeUsbPrinter:
    """A usb.core.Device look-alike: one printer interface (class 7) with bulk OUT 0x01 and IN 0x82."""

    serial_number: str = "TM0001"
    kernel_driver: bool = True  # usblp has it, as on a fresh Linux box
    configured: bool = True
    endpoints: list[Endpoint] = field(default_factory=lambda: [Endpoint(0x01), Endpoint(0x82),
                                                                Endpoint(0x83, bmAttributes=0x03)])
    unplugged: bool = False
    stalled: bool = False
    writes: list[tuple[int, bytes, int]] = field(default_factory=list)
    reads: list[tuple[int, int, int]] = field(default_factory=list)
    replies: bytes = b""
    disposed: int = 0

    def __post_init__(self) -> None:
        self.parser = EscPosParser(answer=lambda n: bytes((st.reply(n, st.PrinterStatus()),)))

    def is_kernel_driver_active(self, interface: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, interface: int) -> None:
        self.kernel_driver = False

    def set_configuration(self) -> None:
        self.configured = True

    def get_active_configuration(self):
        if not self.configured:
            raise usb.core.USBError("Configuration not set", errno=None)
        return {(0, 0): self.endpoints}

    def write(self, ep: int, data: bytes, timeout: int) -> int:
        self._gone()
        if self.stalled:
            raise usb.core.USBTimeoutError("Operation timed out", error_code=-7, errno=errno.ETIMEDOUT)
        self.writes.append((ep, bytes(data), timeout))
        self.replies += self.parser.feed(bytes(data))
        return len(data)

    def read(self, ep: int, size: int, timeout: int) -> bytes:
        self._gone()
        self.reads.append((ep, size, timeout))
        if not self.replies:
            raise usb.core.USBTimeoutError("Operation timed out", error_code=-7, errno=errno.ETIMEDOUT)
        got, self.replies = self.replies[:size], self.replies[size:]
        return got

    def _gone(self) -> None:
        if self.unplugged:
            raise usb.core.USBError("No such device (it may have been disconnected)", error_code=-4,
                                    errno=errno.ENODEV)

    def printed(self) -> list:
        return split_documents(self.parser.take())


def transport(devices: list[FakeUsbPrinter], **kwargs) -> UsbTransport:
    def dispose(device: FakeUsbPrinter) -> None:
        device.disposed += 1

    return UsbTransport(0x04B8, 0x0202, find=lambda vid, pid: list(devices), dispose=dispose, **kwargs)


def test_open_detaches_usblp_and_finds_the_bulk_endpoints():
    async def main():
        dev = FakeUsbPrinter()
        t = transport([dev])
        await t.open()
        assert t.is_open and not dev.kernel_driver
        assert (t.out_ep, t.in_ep) == (0x01, 0x82)  # the interrupt endpoint 0x83 is not taken
        await t.close()
        await t.close()
        assert dev.disposed == 1 and not t.is_open

    run(main())


def test_unconfigured_device_gets_configured():
    async def main():
        dev = FakeUsbPrinter(configured=False)
        t = transport([dev])
        await t.open()
        assert dev.configured

    run(main())


def test_serial_number_picks_one_of_two_printers():
    async def main():
        a, b = FakeUsbPrinter(serial_number="A1"), FakeUsbPrinter(serial_number="B2")
        t = transport([a, b], serial="B2")
        await t.open()
        await t.write(b"x")
        assert b.writes and not a.writes
        with pytest.raises(DeviceMissing, match=r"no USB printer usb://04b8:0202/C3 attached"):
            await transport([a, b], serial="C3").open()

    run(main())


def test_nothing_attached_is_missing():
    async def main():
        with pytest.raises(DeviceMissing, match="no USB printer usb://04b8:0202 attached"):
            await transport([]).open()
        no_out = FakeUsbPrinter(endpoints=[Endpoint(0x82)])
        with pytest.raises(DeviceMissing, match="no bulk OUT endpoint"):
            await transport([no_out]).open()

    run(main())


def test_writes_go_in_chunks_and_reads_ask_for_whole_packets():
    async def main():
        dev = FakeUsbPrinter()
        t = transport([dev])
        await t.open()
        await t.write(b"\x1b@" + b"A" * (WRITE_CHUNK + 10) + b"\n")
        assert [len(d) for _, d, _ in dev.writes] == [WRITE_CHUNK, 13]
        assert {ep for ep, _, _ in dev.writes} == {0x01}
        await t.write(st.all_queries())
        assert await t.read(2, timeout=0.2) == b"\x12\x12"
        assert await t.read(2, timeout=0.2) == b"\x12\x12"  # from the same packet: no second transfer
        assert [(ep, size) for ep, size, _ in dev.reads] == [(0x82, 64)]
        assert await t.read(4, timeout=0.05) == b""  # nothing: a timeout is not an error
        assert dev.reads[-1][2] == 50

    run(main())


def test_unplug_is_transport_closed_and_a_stall_is_a_timeout():
    async def main():
        dev = FakeUsbPrinter()
        t = transport([dev])
        await t.open()
        dev.stalled = True
        with pytest.raises(DeviceTimeout, match="takes no data"):
            await t.write(b"x")
        dev.stalled, dev.unplugged = False, True
        with pytest.raises(TransportClosed, match="the printer is gone"):
            await t.write(b"x")
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.read(4)

    run(main())


class ListSpool:
    """The least Spool that prints one job: enough to drive the driver over the fake USB device."""

    def __init__(self, job):
        self.jobs = [job]
        self.finished: list = []

    async def next_job(self, device, timeout):
        if self.jobs:
            return self.jobs[0], len(self.jobs)
        await asyncio.sleep(timeout)
        return None, 0

    async def started(self, job):
        self.jobs.remove(job)
        return job

    async def done(self, job, replaced):
        self.finished.append(job)

    async def interrupted(self, device, reason):
        return 0

    async def alert(self, *args, **kwargs):
        pass


def test_the_driver_prints_a_receipt_over_usb():
    from drivers.printer.spool import Job, JobState

    async def main():
        dev = FakeUsbPrinter()
        cfg = PrinterConfig.model_validate({"id": "printer-1", "kind": "printer.escpos", "connection": "usb",
                                            "usb": "04b8:0202", "status_timeout": 0.2})
        job = Job(id="j1", device="printer-1", kind="test_page", data={"time": "2025-03-01T14:05:00+08:00",
                                                                         "device_id": "printer-1"},
                  state=JobState.QUEUED)
        spool = ListSpool(job)
        driver = EscPosPrinter(cfg, DriverContext("printer-1", EventBus(), logging.getLogger("t")),
                               transport=transport([dev]), spool=spool)
        await driver.open()
        task = asyncio.create_task(driver.run())
        while not spool.finished:
            await asyncio.sleep(0.01)
        task.cancel()
        await driver.close()
        (page,) = dev.printed()
        assert "PRINTER TEST PAGE" in page.lines and page.end == "cut"
        expected = render("test_page", job.data, "epson-tm-t88").data
        sent = b"".join(d for _, d, _ in dev.writes).replace(st.all_queries(), b"")
        assert sent == expected  # exactly the document's bytes, around the status queries

    run(main())
