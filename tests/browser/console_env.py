"""What the browser tests start and share: the hub's console, an agent with emulated devices, simulated stores.

Imported by tests/browser/conftest.py (the fixtures) and the tests (the names).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from drivers.heartbeat.emulator import HeartbeatEmulator

from support.agent import AgentProcess
from support.printer import EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("EDGE_CHROMIUM", "/usr/bin/chromium")
HUB_TOKEN = "browser-test-token"
COMMAND_TIMEOUT_S = 3
# The shipped rules, with waits short enough for a test: an unplugged device is
# offline at the agent within ~1 s, at the hub 1 s later, and raised 2 s after that.
RULES = """
evaluate_every_s: 0.5
stale_after_s: 120
rules:
  - {id: device-offline, kind: device_state, states: [offline], for_s: 2}
  - {id: device-error, kind: device_state, states: [error], for_s: 2}
  - {id: printer-paper-out, kind: device_alert, codes: [paper_out], severity: critical}
  - {id: labels-non-compliant, kind: labels_non_compliant}
  - {id: store-offline, kind: store_offline, for_s: 5, severity: critical, auto_resolve: true}
  - {id: clock-skew, kind: clock_skew, max_offset_s: 5, auto_resolve: true}
  - {id: print-queue, kind: print_queue, max_failed: 0, max_waiting: 10}
"""


class HeartbeatThread:
    """A TCP heartbeat device on its own loop; ``unplug()`` stops it, ``plug()`` brings it back on its port."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="heartbeat", daemon=True)
        self._thread.start()
        self.emu = HeartbeatEmulator()
        self.plug()
        self.port = self.emu.port

    def _run(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def plug(self) -> None:
        self._run(self.emu.start())

    def unplug(self) -> None:
        self._run(self.emu.stop())

    def close(self) -> None:
        self.unplug()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@dataclass
class ConsoleEnv:
    """Everything a browser test looks at."""

    hub_url: str
    agent: AgentProcess
    heartbeat: HeartbeatThread
    printer: EmulatorThread
    shots: Path
