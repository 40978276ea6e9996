"""Fixtures shared by the shelf-label tests: the access point emulator the use-case, zone and drift tests push to.

A module that uses ``ap`` names the tags the access point has in ``TAGS`` (their MACs) and may set
``NEXT_CHECKIN_S``: seconds from now to each tag's next check-in (600 unless set), or None for the emulator's
default (0: due at once). A module that needs another access point defines its own ``ap``, which wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from drivers.shelf_label.ap_emulator import ApEmulator


@pytest.fixture
def ap(request: pytest.FixtureRequest) -> Iterator[ApEmulator]:
    """An access point with the module's ``TAGS``, each seen now and due to check in ``NEXT_CHECKIN_S`` on; it
    answers an upload with the tag's check-in (``auto_checkin``: the tag takes its picture before the push returns)."""
    emulator = ApEmulator(auto_checkin=True)
    now = int(time.time())
    due = getattr(request.module, "NEXT_CHECKIN_S", 600)
    for mac in request.module.TAGS:
        if due is None:
            emulator.add_tag(mac, 0x01, last_seen=now)
        else:
            emulator.add_tag(mac, 0x01, last_seen=now, next_checkin=now + due)
    emulator.start()
    yield emulator
    emulator.stop()
