"""Fixtures shared by the store-flow tests (orders placed and received, returns)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.flows import linked_agent
from support.printer import EmulatorThread, printer_device


@pytest.fixture(scope="module")
def printer() -> Iterator[EmulatorThread]:
    """An 80 mm GB18030 ESC/POS printer on TCP, one per test module (a module may define its own)."""
    with EmulatorThread(profile="generic-80-gb18030") as emu:
        yield emu


@pytest.fixture(scope="module")
def pickup_store(tmp_path_factory, printer):
    """(agent, hub): an agent linked to a hub, whose printer takes the pick tickets."""
    devices = [printer_device(printer.port, pick_tickets=True)]
    with linked_agent(tmp_path_factory.mktemp("pickup"), devices) as (agent, hub):
        yield agent, hub
