"""The evdev reader for keyboard-mode (USB HID) scanners: the only module here that touches /dev/input."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from drivers.scanner.keymap import Keymap, KeyDecoder
from edge_core.errors import DeviceMissing, TransportClosed

EV_KEY = 1  # linux/input-event-codes.h; the same as evdev.ecodes.EV_KEY
RULES = "systemd/99-edge-agent.rules"


def key_name(code: int) -> str:
    """The evdev name of a key code ("KEY_A" for 30); ``KEY_<n>`` for a code evdev does not name."""
    # Imported here, not at the top: evdev is Linux-only, and the rest of the
    # scanner package (and its tests) must import anywhere.
    from evdev import ecodes

    name = ecodes.KEY.get(code)
    if isinstance(name, (list, tuple)):
        # Aliases (KEY_MUTE is also KEY_MIN_INTERESTING): the layouts use the plain one.
        name = next((n for n in name if "INTERESTING" not in n), name[0])
    return name or f"KEY_{code}"


def _input_device(path: str) -> Any:
    import evdev

    return evdev.InputDevice(path)


class HidScannerReader:
    """Reads one USB HID scanner through evdev, grabbed exclusively so scans do not type into the focused window."""

    def __init__(
        self,
        path: str,
        keymap: Keymap,
        *,
        grab: bool = True,
        terminators: Iterable[str] = ("KEY_ENTER", "KEY_KPENTER"),
        open_device: Callable[[str], Any] = _input_device,
    ):
        self.path = path
        self.keymap = keymap
        self.grab = grab
        self.decoder = KeyDecoder(keymap, terminators=terminators)
        self._open_device = open_device  # tests pass a fake; anything with fd, read(), grab(), ungrab(), close()
        self._device: Any = None
        self._grabbed = False

    async def open(self) -> None:
        """Open and grab the event device; DeviceMissing when it is not there or not ours."""
        await self.close()  # a second open() starts afresh rather than leaking the first device
        # Opening an event node is an open() and a few ioctls: microseconds,
        # so it runs on the loop rather than in an executor.
        try:
            device = self._open_device(self.path)
        except FileNotFoundError as err:
            raise DeviceMissing(f"{self.path}: no such input device (unplugged, or not in keyboard mode?)") from err
        except PermissionError as err:
            raise DeviceMissing(
                f"{self.path}: permission denied; the agent's user needs the 'input' group, "
                f"or install the udev rule in {RULES}") from err
        except OSError as err:
            raise DeviceMissing(f"{self.path}: cannot open: {err.strerror or err}") from err
        if self.grab:
            try:
                device.grab()
            except OSError as err:
                _close_quietly(device)
                # EBUSY: someone else (X, a second agent) holds the grab already.
                raise DeviceMissing(f"{self.path}: cannot grab it exclusively: {err.strerror or err}") from err
        self._device, self._grabbed = device, self.grab
        self.decoder.reset()

    async def read_codes(self) -> AsyncIterator[str]:
        """Each completed code's text; TransportClosed when the device goes away."""
        device = self._device
        if device is None:
            raise TransportClosed(f"{self.path}: not open")
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        fd = device.fd
        # An unplugged device's fd turns readable (POLLHUP|POLLERR) and read()
        # fails with ENODEV, so removal is noticed at once, without polling.
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                for code, value in self._read_keys(device):
                    text = self.decoder.feed(key_name(code), value)
                    if text is not None:
                        yield text
        finally:
            loop.remove_reader(fd)

    def _read_keys(self, device: Any) -> list[tuple[int, int]]:
        try:
            events = list(device.read())
        except BlockingIOError:
            return []  # woken with nothing to read: wait again
        except OSError as err:
            if err.errno == errno.ENODEV:
                raise TransportClosed(f"{self.path}: scanner unplugged") from err
            raise TransportClosed(f"{self.path}: read failed: {err.strerror or err}") from err
        if not events:
            # A real evdev node never reads 0 bytes; only a closed pipe does.
            raise TransportClosed(f"{self.path}: end of file")
        return [(e.code, e.value) for e in events if e.type == EV_KEY]

    async def close(self) -> None:
        """Ungrab and close; never raises, safe to call twice."""
        device, self._device = self._device, None
        if device is None:
            return
        if self._grabbed:
            try:
                device.ungrab()
            except OSError:
                pass  # gone already (unplugged): the kernel dropped the grab with it
        _close_quietly(device)


def _close_quietly(device: Any) -> None:
    try:
        device.close()
    except OSError:
        pass  # nothing left to release
