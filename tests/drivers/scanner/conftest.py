"""Key events for umockdev-run to replay into a mocked /dev/input node, within what its pty can hold.

umockdev makes the mocked character device a pty (umockdev.vala,
``create_node_for_device``: openpty, raw mode), and its script runner
writes the evemu events into the master end on its own clock
(``ScriptRunner``), whether the reader reads or not. The slave end's line
discipline holds 4,096 bytes; when a busy machine keeps the reader from
reading until more than that is queued, the buffer takes only part of the
next 24-byte ``input_event``, python-evdev drops the short tail of its
read, and every later event is read out of step (seen as a code that never
arrives, about one run in four on a loaded 2-core machine). A real evdev node only ever returns whole events.

So a replay stays below that buffer: the ``pty_safe`` fixture leaves out
the SYN_REPORT after each key event (the reader uses EV_KEY only) and fails
the test at once if what is left is still too long, rather than letting it
flake later under load.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

PTY_BUFFER = 4096  # N_TTY_BUF_SIZE, the line discipline's read buffer (drivers/tty/n_tty.c)
INPUT_EVENT = 24   # sizeof(struct input_event) on 64-bit Linux
_SYN = re.compile(r"^E: \S+ 0000 0000 0$")


def _key_events(text: str) -> str:
    """The evemu ``text`` without its SYN_REPORT lines; AssertionError if it would not fit the pty."""
    kept = [line for line in text.splitlines() if not _SYN.match(line)]
    size = sum(line.startswith("E:") for line in kept) * INPUT_EVENT
    assert size < PTY_BUFFER, (
        f"{size} bytes of key events do not fit umockdev's {PTY_BUFFER}-byte pty buffer: a slow reader "
        "would read them out of step; replay fewer codes at a time")
    return "\n".join(kept) + "\n"


@pytest.fixture
def pty_safe() -> Callable[[str], str]:
    """Turns an evemu events text into one umockdev replays whole: key events only, under 4 KiB."""
    return _key_events
