"""A job printed over USB with the real pyusb and libusb-1.0, against a USB printer umockdev replays.

umockdev-run (Debian package ``umockdev``) makes /sys and /dev/bus/usb/001/002
show an Epson TM-T88V (tests/fixtures/printer/usb/tm-t88.umockdev, hand-written:
device descriptor 04b8:0202, interface 0 of class 7 "printer", protocol 2
"bidirectional", bulk OUT 0x01 and bulk IN 0x82 of 64 bytes) and answers the
usbdevfs ioctls libusb makes from a recorded session (an ``.ioctl`` file):
enumeration, descriptors, claiming the interface, and each bulk transfer. An
OUT transfer is accepted only if its bytes are exactly the recorded ones; an
IN transfer returns the recorded reply.

The session is recorded first, in a plain process, by the same script
driving the same job through the same driver and UsbTransport against a
pyusb-shaped device whose printer is the ESC/POS parser (status replies
included): no machine here has a USB printer to record from. The replay then
runs the driver in a process under umockdev-run, where ``usb.core.find``
finds the mocked printer through libusb: if the driver sent one byte
differently from the recording, or read at the wrong time, the transfer fails
and the job does not finish.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.printer.parser import EscPosParser, split_documents

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "fixtures" / "printer" / "usb" / "tm-t88.umockdev"
NODE = "/dev/bus/usb/001/002"

pytestmark = [
    pytest.mark.skipif(shutil.which("umockdev-run") is None,
                       reason="umockdev-run not installed (Debian: apt-get install umockdev)"),
    pytest.mark.skipif(ctypes.util.find_library("usb-1.0") is None,
                       reason="libusb-1.0 not installed (Debian: apt-get install libusb-1.0-0)"),
]

# Prints one test page through EscPosPrinter + UsbTransport, then prints JSON.
# "record": against a recording pyusb-shaped device, and writes the .ioctl session.
# "replay": against whatever usb.core.find finds (umockdev's printer).
SCRIPT = r'''
import asyncio, json, logging, sys
sys.path.insert(0, sys.argv[3])
from drivers.base import DriverContext
from drivers.printer import status as st
from drivers.printer.config import PrinterConfig
from drivers.printer.driver import EscPosPrinter
from drivers.printer.parser import EscPosParser
from drivers.printer.spool import Job, JobState
from drivers.transport.usb import UsbTransport
from edge_agent.bus import EventBus

JOB = Job(id="j1", device="printer-1", kind="test_page", state=JobState.QUEUED,
          data={"time": "2025-03-01T14:05:00+08:00", "device_id": "printer-1", "store_name": "USB Store"})


class Endpoint:
    def __init__(self, address):
        self.bEndpointAddress, self.bmAttributes, self.wMaxPacketSize = address, 2, 64


class Recorder:
    """Plays the printer behind pyusb's Device methods and records each bulk transfer."""

    def __init__(self):
        self.parser = EscPosParser(answer=lambda n: bytes((st.reply(n, st.PrinterStatus()),)))
        self.replies, self.transfers, self.sent = b"", [], b""

    def is_kernel_driver_active(self, i): return False
    def get_active_configuration(self): return {(0, 0): [Endpoint(0x01), Endpoint(0x82)]}

    def write(self, ep, data, timeout):
        self.transfers.append(("out", ep, bytes(data).hex()))
        self.sent += bytes(data)
        self.replies += self.parser.feed(bytes(data))
        return len(data)

    def read(self, ep, size, timeout):
        got, self.replies = self.replies[:size], self.replies[size:]
        self.transfers.append(("in", ep, got.hex(), size))
        return got


class OneJob:
    def __init__(self): self.jobs, self.finished = [JOB], []
    async def next_job(self, device, timeout):
        if self.jobs:
            return self.jobs[0], 1
        await asyncio.sleep(timeout)
        return None, 0
    async def started(self, job): self.jobs.remove(job); return job
    async def done(self, job, replaced): self.finished.append(job)
    async def failed(self, job, reason): raise AssertionError(reason)
    async def interrupted(self, device, reason): return 0
    async def alert(self, *args, **kwargs): pass


async def main(mode, out):
    recorder = Recorder()
    cfg = PrinterConfig.model_validate({"id": "printer-1", "kind": "printer.escpos", "connection": "usb",
                                        "usb": "04b8:0202", "status_timeout": 2})
    transport = cfg.transport()
    if mode == "record":
        transport = UsbTransport(0x04B8, 0x0202, find=lambda vid, pid: [recorder], dispose=lambda d: None)
    spool = OneJob()
    driver = EscPosPrinter(cfg, DriverContext("printer-1", EventBus(), logging.getLogger("usb")),
                           transport=transport, spool=spool)
    await driver.open()
    runner = asyncio.create_task(driver.run())
    while not spool.finished:
        if runner.done():
            runner.result()
        await asyncio.sleep(0.01)
    runner.cancel()
    await driver.close()
    result = {"counters": driver.ctx.counters, "describe": transport.describe(),
              "endpoints": [transport.out_ep, transport.in_ep]}
    if mode == "record":
        result["transfers"], result["sent"] = recorder.transfers, recorder.sent.hex()
    with open(out, "w") as f:
        json.dump(result, f)

asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 20))
'''


def ioctl_session(transfers: list) -> str:
    """The recorded transfers as umockdev's usbdevfs records: type 3 (bulk), endpoint, status 0,
    flags 0, buffer length, actual length, error count 0, data; an IN reply is a child of the
    OUT transfer before it (one more space of indent)."""
    lines = ["USBDEVFS_GET_CAPABILITIES 0 0F000000"]
    for t in transfers:
        if t[0] == "out":
            _, ep, data = t
            n = len(data) // 2
            lines.append(f"USBDEVFS_REAPURBNDELAY 0 3 {ep} 0 0 {n} {n} 0 {data.upper()}")
        else:
            _, ep, data, size = t
            lines.append(f" USBDEVFS_REAPURBNDELAY 0 3 {ep} 0 0 {size} {len(data) // 2} 0 {data.upper()}")
    return "\n".join(lines) + "\n"


def script(tmp_path: Path, mode: str, wrapper: list[str]) -> dict:
    path = tmp_path / "print_over_usb.py"
    path.write_text(SCRIPT)
    out = tmp_path / f"{mode}.json"
    done = subprocess.run([*wrapper, sys.executable, str(path), mode, str(out), str(REPO)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"{mode} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(out.read_text())


def test_a_recorded_usb_print_session_replays_through_pyusb_and_libusb(tmp_path):
    recorded = script(tmp_path, "record", [])
    transfers = recorded["transfers"]
    # open: status; before the job: status; the job; after it: status.
    assert [t[0] for t in transfers][:4] == ["out", "in", "out", "in"]
    assert all(t[3] == 64 for t in transfers if t[0] == "in")  # whole packets
    parser = EscPosParser()
    parser.feed(bytes.fromhex(recorded["sent"]))
    (page,) = split_documents(parser.take())
    assert "PRINTER TEST PAGE" in page.lines and page.end == "cut"

    session = tmp_path / "tm-t88.ioctl"
    session.write_text(ioctl_session(transfers))
    replayed = script(tmp_path, "replay", ["umockdev-run", "-d", str(FIXTURE), "-i", f"{NODE}={session}", "--"])
    assert replayed["counters"]["printed"] == 1
    assert replayed["endpoints"] == [0x01, 0x82]  # found in the mocked descriptors
    assert replayed["describe"] == "usb://04b8:0202"


def test_replay_fails_when_the_bytes_differ(tmp_path):
    """The replay is a real check: a session recorded for other bytes does not print."""
    recorded = script(tmp_path, "record", [])
    transfers = [list(t) for t in recorded["transfers"]]
    job_out = next(t for t in transfers if t[0] == "out" and len(t[2]) > 100)
    job_out[2] = job_out[2][:-2] + ("00" if job_out[2][-2:] != "00" else "01")
    session = tmp_path / "tm-t88.ioctl"
    session.write_text(ioctl_session(transfers))
    path = tmp_path / "print_over_usb.py"
    done = subprocess.run(["umockdev-run", "-d", str(FIXTURE), "-i", f"{NODE}={session}", "--", sys.executable,
                           str(path), "replay", str(tmp_path / "x.json"), str(REPO)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "TransportClosed" in done.stderr or "DeviceTimeout" in done.stderr, done.stderr
