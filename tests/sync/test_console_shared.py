"""What the two consoles share (sync/console/): one allow-list for the hub, the agent's downlink and its
``/console``, and a package a store PC loads without the reference hub's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sync.console.commands import AGENT_ACTIONS, ActionRefused, check, check_args
from sync.console.page import STATIC, page, static_file
from sync.downlink import AGENT_COMMANDS, CommandError, Downlink, UnknownDevice

ROOT = Path(__file__).resolve().parents[2]


class Devices:
    """The part of a ``DownlinkHandler`` that commands use: one device, ``printer-1``, with ``test_page``."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, str, dict[str, Any]]] = []

    def device_actions(self, device: str) -> tuple[str, frozenset[str]] | None:
        return ("printer.escpos", frozenset({"test_page"})) if device == "printer-1" else None

    def reopen(self, device: str) -> None:
        self.ran.append((device, "reopen", {}))

    async def device_command(self, device: str, action: str, args: dict[str, Any]) -> Any:
        self.ran.append((device, action, args))
        return {"printed": True}


def downlink() -> tuple[Downlink, Devices]:
    devices = Devices()
    return Downlink("store-shared", devices, publish=lambda topic, payload: None), devices  # type: ignore[arg-type]


def test_the_agent_runs_exactly_the_actions_the_consoles_offer():
    assert set(AGENT_COMMANDS) == set(AGENT_ACTIONS)


@pytest.mark.parametrize("device, action, args", [
    ("printer-1", "format_disk", {}),
    ("agent", "shutdown", {}),
    ("agent", "set_log_level", {"level": "loud"}),
    ("agent", "set_log_level", {}),
    ("agent", "resend_from", {"seq": 0}),
    ("agent", "resend_from", {"seq": True}),
    ("agent", "resend_from", {"seq": 3, "stream": 7}),
    ("agent", "resend_from", {"seq": 3, "stream": "s" * 65}),
])
def test_the_downlink_refuses_what_a_console_refuses_in_the_same_words(device, action, args):
    d, devices = downlink()
    kind, offered = (None, None) if device == "agent" else ("printer.escpos", ["reopen", "test_page"])
    with pytest.raises(ActionRefused) as console:
        check(device, kind, action, args, offered)
    with pytest.raises(ActionRefused) as agent:
        d.check(device, action, args)
    assert str(agent.value) == str(console.value)
    with pytest.raises(CommandError) as ran:
        asyncio.run(d.run(device, action, args))
    assert str(ran.value) == str(console.value) and devices.ran == []


def test_the_downlink_runs_what_it_allows_and_knows_its_devices():
    d, devices = downlink()
    assert asyncio.run(d.run("printer-1", "test_page", {"copies": 1})) == {"printed": True}
    assert asyncio.run(d.run("printer-1", "reopen", {})) == {"device": "printer-1", "reopening": True}
    assert devices.ran == [("printer-1", "test_page", {"copies": 1}), ("printer-1", "reopen", {})]
    with pytest.raises(UnknownDevice, match="no device 'ghost' in this store"):
        d.check("ghost", "reopen", {})
    assert check_args("resend_from", {"seq": 2, "stream": "0b6c"}) == {"seq": 2, "stream": "0b6c"}


def test_the_page_and_its_files_are_the_shared_ones():
    shell = page("store", "/console/api", "/console/static", "<s1> console")
    assert "/console/static" in shell and "&lt;s1&gt; console" in shell and "{{" not in shell
    assert static_file("main.js") == STATIC / "main.js"
    for name in ("../rules.yaml", "", ".", "index.html/..", "static/main.js"):
        assert static_file(name) is None


def test_neither_the_shared_console_nor_the_agent_loads_the_reference_hub():
    code = ("import sys, sync.console.views, sync.console.page, sync.console.timeline, sync.downlink\n"
            "assert not [m for m in sys.modules if m.startswith(('sync.hub', 'edge_agent'))], sys.modules\n"
            "import edge_agent.api.app, edge_agent.api.routers.console, edge_agent.cli\n"
            "hub = sorted(m for m in sys.modules if m.startswith('sync.hub'))\n"
            "assert not hub, hub\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
