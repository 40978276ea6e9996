"""The store the soak runs against: every part real or emulated at the wire, in one run dir.

``Rig.start()`` brings up, in order: a Mosquitto on a free port (restartable
on the same port), the reference hub ``edge-hub run --http`` with its console
and a console token (SQLite in the run dir), an OpenEPaperLink access-point
emulator with a tag per label, an asyncio thread holding two ESC/POS printer
emulators and a heartbeat emulator, two pty scanners, and ``edge-agent run``
with the demo catalog on HTTPS and WSS (``api.tls`` with a CA and server
certificate of the run's own, ``tls/``; every client trusts that CA and
nothing else), awaited by its sd_notify READY=1. Two kiosks
(kiosk-1, kiosk-2) each have a scanner and a receipt printer; pad-1 is the
associates' PAD, band-1 an associate's wristband, kiosk-3 a kiosk without
devices that calls for help while nobody is on duty (soak/assist.py). Every timer that matters runs short so a day fits the run,
the store-identity ones too (the hub's ``--duplicate-clear``, the agent's
``hub.trouble_hold`` and ``hub.takeover_backoff``: ``DUPLICATE_CLEAR``,
``TROUBLE_HOLD``, ``TAKEOVER_BACKOFF``), so that a second PC's alert clears
within the day.
``second_pc()`` makes (not starts) another ``edge-agent run`` with the
store's id: a copy of the devices.yaml with its own port and empty disk.

Emulator controls that belong to the emulators' event loop (printer state)
are called on it through ``on_loop``; everything else is thread-safe.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from support.agent import AgentProcess, free_port, make_tls
from support.hubprocess import HubProcess
from support.mosquitto import Mosquitto

from drivers.heartbeat.emulator import HeartbeatEmulator
from drivers.printer.emulator import PrinterEmulator
from drivers.printer.parser import Receipt
from drivers.scanner.emulator import SerialScannerEmulator
from drivers.shelf_label.ap_emulator import ApEmulator
from edge_agent.config import parse
from edge_core.errors import ConfigError

T = TypeVar("T")
ROOT_RUN = Path(__file__).resolve().parents[2] / ".run" / "soak"
STORE = "store-soak"
KIOSKS = ("kiosk-1", "kiosk-2")
# One token per api client; the agent's config holds only their hashes.
# kiosk-3, a kiosk without devices, calls for help while nobody is on duty. band-1, an associate's wristband, is
# no client here: it pairs with a one-time code (soak/assist.py).
TOKENS = {"kiosk-1": "soak-kiosk-1", "kiosk-2": "soak-kiosk-2", "pad-1": "soak-associate",
          "console-1": "soak-console", "admin": "soak-admin", "mirror-1": "soak-mirror", "kiosk-3": "soak-kiosk-3"}
ROLES = {"kiosk-1": "kiosk", "kiosk-2": "kiosk", "pad-1": "associate", "console-1": "console", "admin": "admin",
         "mirror-1": "mirror", "kiosk-3": "kiosk"}
HUB_CONSOLE_TOKEN = "soak-hub-console"
URL_TEMPLATE = "https://shop.example.com/p/{sku}"
FILE_MODEL = "m2-2.9-bwr"
# Seconds; the products' defaults are 180, 120 and 10.
DUPLICATE_CLEAR = 10.0   # edge-hub run --duplicate-clear: the two-agents alert clears after this quiet
TROUBLE_HOLD = 10.0      # hub.trouble_hold: a takeover or a refused ack stays on /v1/health this long
SECOND_PC_BACKOFF = 10.0  # the second PC's hub.takeover_backoff (the default)
TAKEOVER_BACKOFF = 3.0   # hub.takeover_backoff: an agent whose session was taken waits this long
FLEET_ROLLBACK = 6.0     # fleet.rollback_after_s (default 300): a bad hub version is rolled back within the day


@dataclass(frozen=True)
class LabelSpot:
    """One shelf label the rig set up: where its picture is, which product the config binds it to."""

    label: str       # a tag's MAC, or a file key
    device: str      # labels-ap or labels-files
    model: str
    sku: str | None  # bound by the config; None: a spare tag for associates' binds


# Tags on the access point: four bound by the config, two spare for binds at the shelf.
AP_LABELS = (
    LabelSpot("0000021D4E830001", "labels-ap", "m2-2.9-bwr", "LIP-RED-01"),
    LabelSpot("0000021D4E830002", "labels-ap", "m2-2.9-bwr", "LIP-NUDE-02"),
    LabelSpot("0000021D4E830003", "labels-ap", "m2-2.9-bwr", "GLS-ROUND-BLK"),
    LabelSpot("0000021D4E830004", "labels-ap", "m2-4.2-bwr", "TOTE-CANVAS"),
    LabelSpot("0000021D4E830005", "labels-ap", "m2-2.9-bwr", None),
    LabelSpot("0000021D4E830006", "labels-ap", "m2-2.9-bwr", None),
)
HW_TYPES = {"m2-2.9-bwr": 0x01, "m2-4.2-bwr": 0x02}
FILE_LABELS = tuple(LabelSpot(sku, "labels-files", FILE_MODEL, sku) for sku in
                    ("LIP-RED-01", "LIP-NUDE-02", "GLS-ROUND-BLK", "BLUSH-PEACH", "SHADOW-BRONZE", "TOTE-CANVAS"))


@dataclass(frozen=True)
class Timers:
    """The short timers of a compressed day (seconds)."""

    sweep_interval: float = 20.0
    compliance_grace: float = 5.0
    label_poll: float = 0.5
    card_ttl: float = 90.0
    idle_timeout: float | None = None  # sessions.idle_timeout; None: the key is left out
    paper_check: float = 0.5
    heartbeat: float = 1.0
    privacy_retention: float = 60.0  # privacy.retention_days, in seconds
    privacy_sweep: float = 5.0       # privacy.sweep_interval
    assist_remind: float = 2.0       # assist.remind_s
    assist_alert: float = 4.0        # assist.alert_after_s


class Rig:
    """The store: broker, hub, emulators and agent; ``start()``, the fault controls, ``close()``."""

    def __init__(self, run_dir: Path, timers: Timers, mirror: bool = False):
        self.run_dir = run_dir
        self.timers = timers
        self.mirror = mirror
        self.broker = Mosquitto(run_dir / "mosquitto")
        self.hub_http = f"127.0.0.1:{free_port()}"
        self.hub_db = run_dir / "hub.db"
        self.hub = HubProcess(self.broker.url, f"sqlite:///{self.hub_db}", run_dir / "hub.log", client_id="soak-hub",
                              env={"EDGE_HUB_CONSOLE_TOKEN": HUB_CONSOLE_TOKEN})
        self.hub.args += ["--http", self.hub_http, "--duplicate-clear", f"{DUPLICATE_CLEAR:g}"]
        self.ap = ApEmulator()
        self.labels_dir = run_dir / "labels"
        self.printers = {k: PrinterEmulator(profile="generic-80-gb18030") for k in KIOSKS}
        self.heartbeat = HeartbeatEmulator()
        # kiosk-3's receipt printer: nothing drives it until a version from the hub adds it (soak/fleet.py).
        self.fleet_printer = PrinterEmulator(profile="generic-80-gb18030")
        self.fleet_rollback = FLEET_ROLLBACK
        self.scanners = {k: SerialScannerEmulator(run_dir / "dev" / f"scanner-{k}") for k in KIOSKS}
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="soak-emulators", daemon=True)
        # The store's API on HTTPS, as a store runs it: the run's own CA, which every client trusts.
        self.tls = make_tls(self._tls_dir())
        self.ca_file: Path = self.tls.ca.cert
        self.agent: AgentProcess | None = None
        self.second: AgentProcess | None = None  # the identity fault's second PC, while it exists
        self.incarnation = 0
        self.idle_refused: str | None = None

    # Start and stop ------------------------------------------------------------------

    def _tls_dir(self) -> Path:
        path = self.run_dir / "tls"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self) -> "Rig":
        """Everything up, the agent last; returns once the agent is READY and online at the broker."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.broker.start()
        self.hub.start(timeout=60)
        for spot in AP_LABELS:
            self.ap.add_tag(spot.label, HW_TYPES[spot.model], last_seen=int(time.time()))
        self.ap.start()
        self._loop_thread.start()
        for printer in (*self.printers.values(), self.fleet_printer):
            self.on_loop(printer.start())
        self.on_loop(self.heartbeat.start())
        for scanner in self.scanners.values():
            scanner.plug()
        if self.timers.idle_timeout is not None and (why := self.refused(self.config())):
            # Refused: a violation (the runner reports it); left out so that the rest of the day still runs.
            self.idle_refused = why
            self.timers = dataclasses.replace(self.timers, idle_timeout=None)
        self.agent = AgentProcess(self.run_dir / "agent", self.config(), tls=self.tls)
        self.agent.data_dir.mkdir(parents=True, exist_ok=True)
        self.agent.import_catalog()
        self.agent.start(timeout=120)
        self.incarnation = 1
        return self

    def close(self) -> None:
        """Stop everything that is still running; safe to call twice."""
        if self.second is not None:
            self.second.close()
        if self.agent is not None:
            if self.agent.proc is not None and self.agent.proc.poll() is None:
                self.agent.stop(timeout=30)
            self.agent.close()
        self.hub.close()
        self.ap.stop()
        for scanner in self.scanners.values():
            scanner.close()
        if self._loop_thread.is_alive():
            for printer in (*self.printers.values(), self.fleet_printer):
                self.on_loop(printer.stop())
            self.on_loop(self.heartbeat.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._loop_thread.join(10)
        self.broker.stop()

    def on_loop(self, work: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine (or a plain callable) on the emulators' event loop and return its result."""
        if asyncio.iscoroutine(work):
            return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

        async def call() -> Any:
            return work()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    # The agent's config ------------------------------------------------------------------

    def config(self) -> dict:
        """The soak store's devices.yaml as a dict: two kiosks, a PAD, every demo device kind."""
        t = self.timers
        clients = [{"name": name, "role": ROLES[name], "token_sha256": hashlib.sha256(tok.encode()).hexdigest()}
                   for name, tok in TOKENS.items()]
        label_keys = {"url_template": URL_TEMPLATE, "poll_interval": t.label_poll,
                      "compliance_grace": t.compliance_grace, "sweep_interval": t.sweep_interval}
        devices: list[dict] = [
            {"id": "heartbeat-1", "kind": "sensor.heartbeat", "address": f"127.0.0.1:{self.heartbeat.port}",
             "interval": t.heartbeat},
            {"id": "labels-ap", "kind": "shelf_label.oepl", "url": self.ap.url, "model": "m2-2.9-bwr",
             "timeout": 2, "upload_timeout": 5, "retries": 2, **label_keys,
             "labels": [{"mac": s.label, "sku": s.sku, "model": s.model} for s in AP_LABELS if s.sku]},
            {"id": "labels-files", "kind": "shelf_label.files", "dir": str(self.labels_dir), "model": FILE_MODEL,
             **label_keys, "labels": [{"key": s.label, "sku": s.sku} for s in FILE_LABELS]},
        ]
        for n, kiosk in enumerate(KIOSKS, 1):
            devices.append({"id": f"scanner-{n}", "kind": "scanner.serial", "port": str(self.scanners[kiosk].path),
                            "baudrate": 115200, "suffix": "cr", "station": kiosk})
            devices.append({"id": f"printer-{n}", "kind": "printer.escpos", "connection": "tcp",
                            "address": f"127.0.0.1:{self.printers[kiosk].port}", "profile": "generic-80-gb18030",
                            "station": kiosk, "receipt_url": "https://shop.example.com/r/{store}/{sale_id}",
                            "pick_tickets": n == 1, "return_slips": n == 2, "paper_check_interval": t.paper_check})
        if self.mirror:
            # Small and slow frames: the mirror's face tracking shares two cores with everything else.
            # The customer stands back (synthetic-body): pose and person mask run, and a garment is drawn.
            devices.append({"id": "mirror-1", "kind": "mirror.camera", "source": "synthetic-body",
                            "station": "mirror-1", "kiosk": "kiosk-1", "width": 320, "height": 240, "fps": 5,
                            "start_timeout": 120})
        config: dict[str, Any] = {
            "store": {"id": STORE, "name": "Soak Store", "timezone": "Asia/Shanghai", "currency": "CNY"},
            "hub": {"url": self.broker.url, "trouble_hold": TROUBLE_HOLD, "takeover_backoff": TAKEOVER_BACKOFF},
            "api": {"listen": f"127.0.0.1:{free_port()}", "clients": clients},
            "loyalty": {"card_ttl": t.card_ttl},
            # A member leaves the store's sales a short retention after the hub has them (soak/privacy.py).
            "privacy": {"retention_days": t.privacy_retention / 86400, "sweep_interval": t.privacy_sweep},
            "assist": {"remind_s": t.assist_remind, "alert_after_s": t.assist_alert},
            "fleet": {"rollback_after_s": self.fleet_rollback},
            "devices": devices,
        }
        if t.idle_timeout is not None:
            config["sessions"] = {"idle_timeout": t.idle_timeout}
        return config

    def second_pc(self) -> AgentProcess:
        """Another store PC with this store's devices.yaml (its own API port, no devices) and an empty
        disk with the demo catalog imported, so that it can sell; not started."""
        assert self.agent is not None
        config = copy.deepcopy(self.agent.config)
        config["api"]["listen"] = f"127.0.0.1:{free_port()}"
        config["devices"] = []
        # It takes the session back after 10 s, the soak agent after TAKEOVER_BACKOFF: the version the hub
        # retains for the store reaches it at connect, and it holds it for 1.5 x 10 s, past the soak
        # agent's first turn (edge_agent/config_apply.py).
        config["hub"]["takeover_backoff"] = SECOND_PC_BACKOFF
        self.second = AgentProcess(self.run_dir / "second-pc", config, tls=self.tls)
        self.second.data_dir.mkdir(parents=True, exist_ok=True)
        self.second.import_catalog()
        return self.second

    @staticmethod
    def describe() -> list[str]:
        """The rig's settings a reader of the report must know to judge its timings."""
        return [f"hub --duplicate-clear {DUPLICATE_CLEAR:g} s, agents' hub.trouble_hold {TROUBLE_HOLD:g} s and "
                f"hub.takeover_backoff {TAKEOVER_BACKOFF:g} s (defaults 180, 120, 10): the second PC's alert "
                "clears within the day",
                f"agent's fleet.rollback_after_s {FLEET_ROLLBACK:g} s (default 300): a bad version from the hub is "
                "rolled back within the day"]

    @staticmethod
    def refused(config: dict) -> str | None:
        """Why this agent's config validation refuses ``config``, or None if it takes it."""
        try:
            parse(yaml.safe_dump(config, allow_unicode=True), environ={})
        except ConfigError as err:
            return "; ".join(err.problems)
        return None

    # Clients ---------------------------------------------------------------------------

    def client(self, name: str | None, timeout: float = 30.0, agent: AgentProcess | None = None) -> httpx.Client:
        """An HTTP client of the agent (or of ``agent``, the second PC) as the api client ``name`` (kiosk-1,
        pad-1, ...), or anonymous for None."""
        agent = agent or self.agent
        assert agent is not None
        headers = {"Authorization": f"Bearer {TOKENS[name]}"} if name else {}
        return httpx.Client(base_url=agent.url, headers=headers, timeout=timeout, verify=self.tls.context())

    def console(self, timeout: float = 15.0) -> httpx.Client:
        """An HTTP client of the hub's console API."""
        return httpx.Client(base_url=f"http://{self.hub_http}", timeout=timeout,
                            headers={"Authorization": f"Bearer {HUB_CONSOLE_TOKEN}"})

    # Faults and their repair -------------------------------------------------------------

    def printer_state(self, kiosk: str, **flags: bool) -> None:
        """Set a printer emulator's state flags (paper_end, cover_open, ...) on its loop."""
        printer = self.printers[kiosk]
        self.on_loop(lambda: printer.set_state(**flags))

    def receipts(self, kiosk: str) -> list[Receipt]:
        """Every document kiosk's printer printed so far (read on its loop)."""
        printer = self.printers[kiosk]
        return self.on_loop(lambda: list(printer.receipts()))

    def restart_broker(self, down: Callable[[], None] = lambda: None) -> None:
        """Stop the broker, call ``down`` while it is away, start it again on the same port."""
        self.broker.stop()
        down()
        self.broker.start(timeout=30)

    def kill_agent(self) -> None:
        """SIGKILL the agent: no clean-up of any kind."""
        assert self.agent is not None
        self.agent.kill()

    def restart_agent(self) -> None:
        """Start the agent again on the same config and data; returns at READY=1."""
        assert self.agent is not None
        self.agent.start(timeout=120)
        self.incarnation += 1

    def agent_pid(self) -> int | None:
        """The running agent's pid, or None."""
        proc = self.agent.proc if self.agent is not None else None
        return proc.pid if proc is not None and proc.poll() is None else None


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as err:
            last = err
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(every)  # a poll interval, not synchronisation


def env_flag(name: str) -> bool:
    """True if the environment variable ``name`` is set to 1/yes/true."""
    return os.environ.get(name, "").lower() in ("1", "yes", "true")
