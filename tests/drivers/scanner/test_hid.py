"""The HID reader: real python-evdev against a mocked /dev/input (umockdev), and fakes for unplug and errors.

umockdev-run (Debian package ``umockdev``) preloads a library that makes
/dev/input/event7 exist for one process: its ioctls are answered from
tests/fixtures/scanner/hid-scanner.ioctl, its reads replay an evemu events
file. So open, EVIOCGRAB, the event reads and the key decoding run for real,
only the kernel is pretend. The fixture files are hand-written, not recorded
(the container that made them had no /dev/input); the events are typed by
drivers/scanner/hid_emulator.py. A replay is key events only and shorter
than the 4 KiB a pty holds (conftest.py says why: otherwise a reader held up
by a busy machine reads the rest out of step).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from evdev.events import InputEvent

from drivers.scanner.hid import HidScannerReader, key_name
from drivers.scanner.hid_emulator import HidScannerEmulator, evemu_events, key_code
from drivers.scanner.keymap import Keymap
from drivers.scanner.protocol import CodeKind, Symbology, parse
from edge_core.errors import DeviceMissing, TransportClosed

FIXTURES = Path(__file__).parents[2] / "fixtures" / "scanner"
NODE = "/dev/input/event7"
US = Keymap.load("us")
# The ioctl number of EVIOCGRAB, as UMOCKDEV_DEBUG=ioctl prints it.
EVIOCGRAB = "40044590"

# Runs inside umockdev-run: opens the mocked node, reads n codes, prints them as JSON. With
# READER_HOLD_S it waits that long between opening and reading, as a busy machine might make it.
READER = """
import asyncio, json, os, sys
from drivers.scanner.hid import HidScannerReader
from drivers.scanner.keymap import Keymap

async def main(path, layout, n):
    reader = HidScannerReader(path, Keymap.load(layout))
    await reader.open()
    await asyncio.sleep(float(os.environ.get("READER_HOLD_S", "0")))
    codes = []
    async for text in reader.read_codes():
        codes.append(text)
        if len(codes) == n:
            break
    await reader.close()
    await reader.close()
    print(json.dumps(codes))

asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2], int(sys.argv[3])), 60))
"""


def run(coro, timeout: float = 60.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# Real evdev under umockdev ------------------------------------------------------------------

needs_umockdev = pytest.mark.skipif(shutil.which("umockdev-run") is None,
                                    reason="umockdev-run not installed (Debian: apt-get install umockdev)")


def replay(tmp_path: Path, events: Path, layout: str, n: int, env: dict[str, str] | None = None):
    script = tmp_path / "read_codes.py"
    script.write_text(READER)
    return subprocess.run(
        ["umockdev-run", "-d", str(FIXTURES / "hid-scanner.umockdev"),
         "-i", f"{NODE}={FIXTURES / 'hid-scanner.ioctl'}", "-e", f"{NODE}={events}",
         "--", sys.executable, str(script), NODE, layout, str(n)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


def in_parts(evemu: str, codes_per_part: int) -> list[str]:
    """An evemu file typed by hid_emulator split into files of ``codes_per_part`` codes (at its ``# '...'`` lines)."""
    head, *blocks = re.split(r"(?m)^(?=# ')", evemu)
    return [head + "".join(blocks[i:i + codes_per_part]) for i in range(0, len(blocks), codes_per_part)]


@needs_umockdev
def test_reads_codes_from_a_mocked_scanner(tmp_path, pty_safe):
    # The whole recording is more than a pty holds even without its SYN_REPORTs: two codes a replay.
    codes = []
    for i, part in enumerate(in_parts((FIXTURES / "hid-scanner-us.evemu").read_text(), 2)):
        events = tmp_path / f"us-{i}.evemu"
        events.write_text(pty_safe(part))
        done = replay(tmp_path, events, "us", 2)
        assert done.returncode == 0, done.stderr
        codes += json.loads(done.stdout)
    assert codes == ["4006381333931", "]C1010950110153000317140704\x1d10AB-123", "RM1:ABCD-1234", "hello World"]
    ean, gs1, member, text = (parse(c, aim=c.startswith("]")) for c in codes)
    assert (ean.code, ean.symbology) == ("4006381333931", Symbology.EAN13)
    assert (gs1.code, gs1.fields) == ("9501101530003", {"gtin": "09501101530003", "expiry": "2014-07-04",
                                                        "batch": "AB-123"})
    assert (member.kind, member.code) == (CodeKind.MEMBER, "ABCD-1234")
    assert text.code == "hello World"


@needs_umockdev
def test_grabs_and_releases_the_device(tmp_path):
    done = replay(tmp_path, FIXTURES / "hid-scanner-us.evemu", "us", 1, env={"UMOCKDEV_DEBUG": "ioctl"})
    assert done.returncode == 0, done.stderr
    grabs = [line for line in done.stderr.splitlines() if f"request {EVIOCGRAB}: emulated, result 0" in line]
    assert len(grabs) == 2  # grab on open, ungrab on close (once, though close ran twice)


@needs_umockdev
def test_german_scanner_through_evdev(tmp_path, pty_safe):
    codes = ["RM1:ZYX-1234", "Grüße@[]", "^1"]
    events = tmp_path / "de.evemu"
    events.write_text(pty_safe(evemu_events(Keymap.load("de"), codes)))
    done = replay(tmp_path, events, "de", 3)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == codes
    # The same key presses read as US: Z and Y swap, German ":" and "-" come out as ">" and "/".
    wrong = replay(tmp_path, events, "us", 3)
    assert json.loads(wrong.stdout)[0] == "RM1>YZX/1234"


@needs_umockdev
def test_a_reader_held_up_after_opening_still_reads_every_code(tmp_path, pty_safe):
    # What a loaded machine did to the agent: the replay is all queued before the first read. Within the
    # pty's buffer it is read whole; the full stream with its SYN_REPORTs (4,320 bytes), held up the same
    # way, lost its last code in two runs of three.
    codes = ["6901234567892", "RM1:YZ-0042", "6901234567908"]
    events = tmp_path / "held.evemu"
    events.write_text(pty_safe(evemu_events(Keymap.load("de"), codes)))
    done = replay(tmp_path, events, "de", 3, env={"READER_HOLD_S": "1.5"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == codes


def test_a_missing_node_is_device_missing():
    reader = HidScannerReader("/dev/input/event-that-is-not-there", US)
    with pytest.raises(DeviceMissing, match="no such input device"):
        run(reader.open())
    run(reader.close())


# Fakes: unplug, permissions, busy ------------------------------------------------------------


class FakeDevice:
    """Enough of evdev.InputDevice: a real fd (a socket) so the loop can wait on it."""

    def __init__(self):
        self.ours, self.theirs = socket.socketpair()
        self.fd = self.ours.fileno()
        self.batches: list = []
        self.calls: list[str] = []

    def push(self, batch) -> None:
        """Queue a list of (code, value) key events, or an exception, and wake the reader."""
        self.batches.append(batch)
        self.theirs.send(b"x")

    def read(self):
        self.ours.recv(1)
        batch = self.batches.pop(0)
        if isinstance(batch, BaseException):
            raise batch
        return iter([InputEvent(0, 0, 1, code, value) for code, value in batch])

    def grab(self):
        self.calls.append("grab")

    def ungrab(self):
        self.calls.append("ungrab")
        if "unplugged" in self.calls:
            raise OSError(errno.ENODEV, "No such device")

    def close(self):
        self.calls.append("close")
        self.ours.close()
        self.theirs.close()


def keys(text: str) -> list[tuple[int, int]]:
    return [(key_code(name), value) for name, value in US.keystrokes(text)]


def test_unplug_ends_the_read_with_transport_closed():
    device = FakeDevice()
    reader = HidScannerReader("/dev/input/event7", US, open_device=lambda path: device)

    async def go():
        await reader.open()
        got = []
        device.push(keys("123"))
        device.push(keys("456")[:4])  # half a code, then the cable is pulled
        device.push(OSError(errno.ENODEV, "No such device"))
        with pytest.raises(TransportClosed, match="scanner unplugged"):
            async for text in reader.read_codes():
                got.append(text)
        device.calls.append("unplugged")
        await reader.close()
        await reader.close()
        return got

    assert run(go()) == ["123"]
    assert device.calls == ["grab", "unplugged", "ungrab", "close"]


def test_spurious_wakeups_and_other_errors():
    device = FakeDevice()
    reader = HidScannerReader("/dev/input/event7", US, open_device=lambda path: device, grab=False)

    async def go():
        await reader.open()
        device.push(BlockingIOError(errno.EAGAIN, "try again"))
        device.push(keys("42"))
        device.push(OSError(errno.EIO, "Input/output error"))
        got = []
        with pytest.raises(TransportClosed, match="read failed: Input/output error"):
            async for text in reader.read_codes():
                got.append(text)
        await reader.close()
        return got

    assert run(go()) == ["42"]
    assert device.calls == ["close"]  # never grabbed, so never ungrabbed


def test_end_of_file_is_transport_closed():
    device = FakeDevice()
    reader = HidScannerReader("/dev/input/event7", US, open_device=lambda path: device)

    async def go():
        await reader.open()
        device.push([])
        async for _ in reader.read_codes():
            pass

    with pytest.raises(TransportClosed, match="end of file"):
        run(go())


def test_reading_before_open_is_transport_closed():
    async def go():
        async for _ in HidScannerReader("/dev/input/event7", US).read_codes():
            pass

    with pytest.raises(TransportClosed, match="not open"):
        run(go())


@pytest.mark.parametrize(
    "error, message",
    [
        (PermissionError(errno.EACCES, "Permission denied"),
         "permission denied; the agent's user needs the 'input' group, or install the udev rule in "
         "systemd/99-edge-agent.rules"),
        (FileNotFoundError(errno.ENOENT, "No such file"), "no such input device"),
        (OSError(errno.ENXIO, "No such device or address"), "cannot open: No such device or address"),
    ],
)
def test_open_errors_are_device_missing(error, message):
    def refuse(path):
        raise error

    reader = HidScannerReader("/dev/input/event7", US, open_device=refuse)
    with pytest.raises(DeviceMissing, match=message) as caught:
        run(reader.open())
    assert caught.value.__cause__ is error


def test_a_device_grabbed_by_someone_else_is_closed_and_device_missing():
    device = FakeDevice()

    def busy():
        raise OSError(errno.EBUSY, "Device or resource busy")

    device.grab = busy
    reader = HidScannerReader("/dev/input/event7", US, open_device=lambda path: device)
    with pytest.raises(DeviceMissing, match="cannot grab it exclusively: Device or resource busy"):
        run(reader.open())
    assert device.calls == ["close"]


# Helpers --------------------------------------------------------------------------------------


def test_key_names():
    assert key_name(30) == "KEY_A"
    assert key_name(28) == "KEY_ENTER"
    assert key_name(113) == "KEY_MUTE"  # not its alias KEY_MIN_INTERESTING
    assert key_name(0x2FE) == "KEY_766"


def test_evemu_events_format():
    lines = evemu_events(US, ["A"]).splitlines()
    assert lines[2:] == [
        "# 'A'",
        "E: 0.001000 0001 002a 1\t# KEY_LEFTSHIFT", "E: 0.001000 0000 0000 0",
        "E: 0.002000 0001 001e 1\t# KEY_A", "E: 0.002000 0000 0000 0",
        "E: 0.003000 0001 001e 0\t# KEY_A", "E: 0.003000 0000 0000 0",
        "E: 0.004000 0001 002a 0\t# KEY_LEFTSHIFT", "E: 0.004000 0000 0000 0",
        "E: 0.005000 0001 001c 1\t# KEY_ENTER", "E: 0.005000 0000 0000 0",
        "E: 0.006000 0001 001c 0\t# KEY_ENTER", "E: 0.006000 0000 0000 0",
    ]


def test_the_fixture_events_match_the_emulator():
    # Regenerate with: evemu_events(Keymap.load("us"), codes) as in this test.
    codes = ["4006381333931", "]C1010950110153000317140704\x1d10AB-123", "RM1:ABCD-1234", "hello World"]
    assert (FIXTURES / "hid-scanner-us.evemu").read_text() == evemu_events(US, codes)


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK), reason="/dev/uinput missing or not writable")
def test_uinput_emulator_types_into_the_reader():
    async def go():
        emulator = HidScannerEmulator(US)
        await emulator.start()
        await asyncio.sleep(0.2)  # udev makes the node
        reader = HidScannerReader(emulator.path, US)
        await reader.open()
        codes = reader.read_codes()
        await emulator.type("4006381333931")
        first = await anext(codes)
        await emulator.stop()
        with pytest.raises(TransportClosed):
            await anext(codes)
        await reader.close()
        return first

    assert run(go()) == "4006381333931"


def test_a_replay_longer_than_a_pty_holds_is_refused(pty_safe):
    # Its SYN_REPORTs out, the US recording is still 4,272 bytes: it would fail now and then, so it fails now.
    with pytest.raises(AssertionError, match="4096-byte pty buffer"):
        pty_safe((FIXTURES / "hid-scanner-us.evemu").read_text())
