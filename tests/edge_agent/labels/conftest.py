"""Fixtures shared by the shelf-label tests: the access point emulator the use-case, zone and drift tests push to.

A module that uses ``ap`` names the tags the access point has in ``TAGS`` (their MACs); a module that needs
another access point (tags that never check in, faults from the start) defines its own ``ap``, which wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from drivers.shelf_label.ap_emulator import ApEmulator


@pytest.fixture
def ap(request: pytest.FixtureRequest) -> Iterator[ApEmulator]:
    """An access point with the module's ``TAGS``, each seen now and due to check in ten minutes on; it answers an
    upload with the tag's check-in (``auto_checkin``: the tag takes its picture before the push returns)."""
    emulator = ApEmulator(auto_checkin=True)
    now = int(time.time())
    for mac in request.module.TAGS:
        emulator.add_tag(mac, 0x01, last_seen=now, next_checkin=now + 600)
    emulator.start()
    yield emulator
    emulator.stop()
