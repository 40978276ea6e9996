"""``make run``: the demo store on one machine.

Loads the demo catalog, starts the device emulators the demo devices.yaml
points at, a hub (a local Mosquitto on a free port and the reference hub,
``edge-hub run``, with its database in the data dir), runs ``edge-agent
run`` linked to that hub, waits for its sd_notify READY=1, prints where to
look, and on Ctrl-C (or SIGTERM) stops everything in order and exits 0.

Without Mosquitto (or with ``EDGE_DEMO_BROKER=none``) there is no hub: the
agent runs alone on the config's ``hub.url`` (or ``EDGE_HUB_URL``), sells,
and keeps its events in the outbox until a hub is reachable; the banner says
so and how to get Mosquitto. A maintained broker is what stores run, so the
demo starts no broker of its own.

No two parts want one port: the hub's console takes 127.0.0.1:8090 unless
the API (``EDGE_API_LISTEN``), an emulator or another program has it, and
then a free port (``EDGE_DEMO_HUB_HTTP`` names one); an API port that an
emulator wants too is an error that says so before anything starts.

The API is served on HTTPS and WSS, as in a store: unless the config has its
own ``api.tls``, a demo CA and a certificate for the listen address and
localhost are made in ``.run/tls/`` next to the config (edge_agent/demo_tls.py,
kept while valid) and the agent runs a copy of the config with ``api.tls``
added, written to the data dir. The banner names the CA file to trust.

The banner also carries a fresh pairing code for an associate's PAD,
``pad-demo-<n>`` (edge_agent/pairing.py; written to the store before the
agent starts), valid until a time in the store's zone, with its URL and a QR
drawn in the terminal and written to ``pair-qr.png`` in the data dir
(edge_agent/demo_phone.py), and says how a phone on the same Wi-Fi reaches
the store: the API must listen on every address
(``EDGE_API_LISTEN=0.0.0.0:8443``), and then the URL and the demo's
certificate name this PC's LAN address, the demo serves its CA's certificate
on plain HTTP for the phone to install (the port after the API's, or a free
one), and the banner gives its SHA-256 fingerprint and how to trust it. The
commands and pages the banner gives for this PC dial 127.0.0.1, which the
certificate names, never 0.0.0.0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from pydantic import TypeAdapter

from drivers.base import DemoEmulator, DemoSite
from drivers.registry import drivers
from drivers.scanner.demo import scan_every
from edge_agent import catalog, config, pairing
from edge_agent.demo_phone import CaServer, ca_der, fingerprint
from edge_agent.qrcodes import terminal_qr, write_qr_png
from edge_agent.demo_tls import EVERY_ADDRESS, DemoTls, ensure_tls, lan_address
from edge_agent.store import Store
from edge_core.config_types import HostPort
from edge_core.errors import ConfigError
from sync.localbroker import LocalMosquitto, mosquitto_binary

ROOT = Path(__file__).resolve().parent.parent
DEMO_TOKENS = {"kiosk": "demo-kiosk", "associate": "demo-associate", "console": "demo-console", "admin": "demo-admin",
               "mirror": "demo-mirror"}


async def _load_catalog(data_dir: Path, path: Path) -> int:
    """Load the demo catalog (a product the store has keeps its count); the number of products it has."""
    items = TypeAdapter(list[catalog.CatalogItem]).validate_json(path.read_bytes())
    store = Store(data_dir / "store.db")
    await store.start()
    try:
        await store.write(lambda tx: catalog.upsert(tx.conn, items))
        return await store.read(lambda conn: conn.execute("SELECT count(*) FROM products").fetchone()[0])
    finally:
        await store.stop()


async def _pairing_code(data_dir: Path, cfg: config.AgentConfig) -> pairing.Code:
    """A fresh pairing code for the next ``pad-demo-<n>`` (no paired device has that name), in the store."""
    clients = [c.name for c in cfg.api.clients]
    store = Store(data_dir / "store.db")
    await store.start()
    try:
        def write(tx) -> pairing.Code:
            name = pairing.free_name(tx.conn, "pad-demo-", clients)
            return pairing.new_code(tx, name, [], "make run", clients)

        return await store.write(write)
    finally:
        await store.stop()


@dataclass(frozen=True)
class PhoneCa:
    """The demo CA as a phone gets it: the plain-HTTP URL of its certificate and its SHA-256 fingerprint."""

    url: str
    sha256: str


@dataclass(frozen=True)
class PadPairing:
    """What the banner says about pairing a PAD: the code, its URL, and the LAN address when the API is on it;
    ``qr_png``, the QR's image file; ``ca``, where a phone gets the demo CA (on the LAN, when the demo made it)."""

    code: pairing.Code
    url: str
    lan: str | None
    qr_png: Path | None = None
    ca: PhoneCa | None = None


def dial(listen: HostPort) -> HostPort:
    """Where a client on this PC reaches an API listening at ``listen``: 127.0.0.1 for every address."""
    return HostPort(host="127.0.0.1", port=listen.port) if listen.host in EVERY_ADDRESS else listen


def pad_pairing(cfg: config.AgentConfig, code: pairing.Code, lan: str | None) -> PadPairing:
    """The code's URL: on the LAN address when the API listens on every address (and one is known)."""
    listen = cfg.api.listen
    every = listen.host in EVERY_ADDRESS
    host = f"{lan}:{listen.port}" if every and lan else f"127.0.0.1:{listen.port}" if every else str(listen)
    scheme = "https" if cfg.api.tls is not None else "http"
    return PadPairing(code, f"{scheme}://{host}/pad#pair={code.code}", lan if every else None)


def _scan_every() -> float:
    """Seconds between demo scans (``EDGE_DEMO_SCAN_EVERY``, 15 by default)."""
    return scan_every(os.environ)


def _planned(cfg: config.AgentConfig, workdir: Path, data_dir: Path) -> list[tuple[str, DemoEmulator]]:
    """The emulator each demo device's driver asks for (drivers/base.py ``demo_emulator``), with the
    device's id; made, not started."""
    site = DemoSite(workdir=workdir, run_dir=data_dir, environ=dict(os.environ))
    registry = drivers()
    out = []
    for dev in cfg.devices:
        emu = registry[dev.kind].demo_emulator(dev, site)
        if emu is not None:
            out.append((dev.id, emu))
    return out


async def _emulators(cfg: config.AgentConfig, workdir: Path, data_dir: Path, started: list[DemoEmulator]) -> None:
    """Start the emulator of each demo device whose driver has one for it (a heartbeat or a network
    printer on loopback, a serial scanner whose port is a relative path, resolved from ``workdir``,
    the agent's). Each is added to ``started`` once running, so that the caller stops those that
    did start when a later one cannot (SystemExit saying why)."""
    for device_id, emu in _planned(cfg, workdir, data_dir):
        try:
            await emu.start()
        except OSError as err:
            dev = next(d for d in cfg.devices if d.id == device_id)
            address, port = getattr(dev, "address", None), getattr(dev, "port", None)
            where = f"on {address}" if address is not None else f"at {port}" if port is not None else "here"
            raise SystemExit(f"{device_id}'s emulator cannot listen {where}: {err.strerror or err}; stop what uses "
                             f"it or give {device_id} another address in the config") from err
        started.append(emu)


async def _wait_ready(sock: socket.socket, proc: asyncio.subprocess.Process, timeout: float,
                      stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if stop.is_set():
            raise SystemExit("stopped before the agent was ready")
        if proc.returncode is not None:
            raise SystemExit(f"the agent exited with {proc.returncode} during start-up; see its log above (its "
                             "port taken? EDGE_API_LISTEN=127.0.0.1:8081 make run picks another)")
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.5)
        except asyncio.TimeoutError:
            continue
        if b"READY=1" in data:
            return
    raise SystemExit(f"the agent did not become ready within {timeout:.0f} s")


HUB_HTTP_DEFAULT = HostPort(host="127.0.0.1", port=8090)
GET_MOSQUITTO = "sudo scripts/system-packages.sh run (or sudo apt install mosquitto), then make run again"


def why_no_hub(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the demo runs the agent alone, or None when it starts Mosquitto and the reference hub.

    ``EDGE_DEMO_BROKER``: ``mosquitto`` (the default: Mosquitto when it is
    installed, else the agent alone) or ``none`` (the agent alone even so).
    SystemExit for any other value."""
    choice = environ.get("EDGE_DEMO_BROKER", "") or "mosquitto"
    if choice not in ("mosquitto", "none"):
        raise SystemExit(f"EDGE_DEMO_BROKER={choice!r} is not mosquitto (the default) or none (the agent alone, "
                         "without a hub)")
    if choice == "none":
        return "EDGE_DEMO_BROKER=none"
    if mosquitto_binary() is None:
        return "mosquitto is not installed"
    return None


def _port_free(where: HostPort) -> bool:
    """True if a listening socket can be bound at ``where`` now (nothing else holds it)."""
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((where.host, where.port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _emulated_ports(cfg: config.AgentConfig) -> dict[int, str]:
    """The loopback TCP ports the demo's emulators will listen on, and whose they are."""
    return {emu.tcp_port: f"{device_id}'s emulator" for device_id, emu in _planned(cfg, ROOT, ROOT / ".run" / "demo")
            if emu.tcp_port is not None}


def plan_ports(cfg: config.AgentConfig, environ: Mapping[str, str] = os.environ) -> HostPort:
    """Where the demo hub's console listens, chosen so that no two parts of the demo want one port.

    ``EDGE_DEMO_HUB_HTTP`` if set (an error if the API or an emulator wants
    it too); otherwise 127.0.0.1:8090, unless the API (``EDGE_API_LISTEN``),
    an emulator or another program has it, then a free port. SystemExit
    with what collides and how to fix it when the API's own port is wanted
    by an emulator: the agent would fail to start, or the device would."""
    api = cfg.api.listen
    emulated = _emulated_ports(cfg)
    if api.port in emulated:
        raise SystemExit(f"the API ({api}, api.listen or EDGE_API_LISTEN) and {emulated[api.port]} both want port "
                         f"{api.port}; choose another port for the API, e.g. EDGE_API_LISTEN=127.0.0.1:8081")
    taken = {api.port: "the API (api.listen or EDGE_API_LISTEN)", **emulated}
    if wanted := environ.get("EDGE_DEMO_HUB_HTTP"):
        try:
            chosen = HostPort.model_validate(wanted)
        except ValueError as err:
            raise SystemExit(f"EDGE_DEMO_HUB_HTTP={wanted!r} is not host:port, e.g. 127.0.0.1:8090 ({err})") from err
        if chosen.port in taken:
            raise SystemExit(f"EDGE_DEMO_HUB_HTTP={wanted} and {taken[chosen.port]} both want port {chosen.port}; "
                             "give the hub console another port, or leave EDGE_DEMO_HUB_HTTP unset to get a free one")
        return chosen
    if HUB_HTTP_DEFAULT.port not in taken and _port_free(HUB_HTTP_DEFAULT):
        return HUB_HTTP_DEFAULT
    return HostPort(host=HUB_HTTP_DEFAULT.host, port=_free_port(HUB_HTTP_DEFAULT.host))


async def _start_hub(broker_url: str, data_dir: Path, http: HostPort) -> asyncio.subprocess.Process:
    """``edge-hub run`` on the demo broker, with its console at ``http``; returns once it says it is connected."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync.hub", "run", "--broker", broker_url, "--db", f"sqlite:///{data_dir}/hub.db",
        "--client-id", "demo-hub", "--http", str(http), stdout=asyncio.subprocess.PIPE, start_new_session=True,
        env={**os.environ, "EDGE_HUB_CONSOLE_TOKEN": DEMO_TOKENS["console"]},
    )
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise SystemExit(f"the demo hub exited with {await proc.wait()}; see its log above")
        if line.startswith(b"edge-hub: connected"):
            break
    # Keep its stdout flowing (a full pipe would stall it).
    asyncio.create_task(_forward(proc.stdout))
    return proc


async def _forward(stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        sys.stdout.write(line.decode(errors="replace"))


async def _stop(proc: asyncio.subprocess.Process | None, timeout: float = 12) -> bool:
    """SIGTERM, wait, SIGKILL if it will not go; True if it stopped by itself."""
    if proc is None or proc.returncode is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return False


def _with_tls(config_path: Path, made: DemoTls, data_dir: Path) -> Path:
    """A copy of the config with ``api.tls`` naming the demo's certificate, in the data dir; its path."""
    data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    api = data.get("api") or {}
    api["tls"] = {"cert_file": str(made.cert.resolve()), "key_file": str(made.key.resolve())}
    data["api"] = api
    out = data_dir / "devices.https.yaml"
    out.write_text(f"# Written by make run: {config_path.resolve()} with api.tls added (the demo's certificate, "
                   f"{made.cert.parent}).\n# Edit that file, not this one.\n"
                   + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


async def _ca_server(cfg: config.AgentConfig, trust: Path, hub_http: HostPort) -> CaServer:
    """The demo CA's certificate on plain HTTP on the API's address: the port after the API's if nothing wants
    it, else a free one; started."""
    taken = {cfg.api.listen.port, hub_http.port, *_emulated_ports(cfg)}
    port = cfg.api.listen.port + 1
    wanted = HostPort(host=cfg.api.listen.host, port=port)
    server = CaServer(ca_der(trust), cfg.api.listen.host, port if port not in taken and _port_free(wanted) else 0)
    await server.start()
    return server


async def main(config_path: Path, data_dir: Path) -> int:
    """Run the demo store until interrupted."""
    try:
        cfg = config.load(config_path)
        hub_http = plan_ports(cfg)
        no_hub = why_no_hub()
    except ConfigError as err:
        print("\n".join(err.problems), file=sys.stderr)
        return 2
    except SystemExit as err:
        print(f"make run: {err}", file=sys.stderr)
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    n = await _load_catalog(data_dir, ROOT / "demo" / "catalog.json")
    # The agent runs in the config's folder, so relative device paths there name the emulators'.
    workdir = config_path.resolve().parent
    agent_config, trust = config_path.resolve(), None
    lan = lan_address() if cfg.api.listen.host in EVERY_ADDRESS else None
    if cfg.api.tls is None:
        try:
            made = ensure_tls(workdir / ".run" / "tls", cfg.api.listen, lan)
        except SystemExit as err:
            print(f"make run: {err}", file=sys.stderr)
            return 1
        agent_config, trust = _with_tls(config_path, made, data_dir), made.ca
        cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"tls": made.api_tls()})})
    pad = pad_pairing(cfg, await _pairing_code(data_dir, cfg), lan)
    pad = PadPairing(pad.code, pad.url, pad.lan, write_qr_png(pad.url, data_dir / "pair-qr.png"))
    stop = asyncio.Event()
    stopped_by: list[str] = []
    loop = asyncio.get_running_loop()
    for sig, name in ((signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")):
        loop.add_signal_handler(sig, lambda name=name: (stopped_by.append(name), stop.set()))

    emulators: list[DemoEmulator] = []
    ca_server: CaServer | None = None
    broker: LocalMosquitto | None = None
    hub: asyncio.subprocess.Process | None = None
    proc: asyncio.subprocess.Process | None = None
    sockdir = tempfile.mkdtemp(prefix="edge-demo-")
    notify_path = os.path.join(sockdir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setblocking(False)
    code = 0
    try:
        # The emulators first: a port another program holds stops the demo before anything else started.
        await _emulators(cfg, workdir, data_dir, emulators)
        if trust is not None and pad.lan is not None:
            # A phone must trust the demo's CA before the PAD's camera works: the certificate at a plain URL.
            ca_server = await _ca_server(cfg, trust, hub_http)
            pad = PadPairing(pad.code, pad.url, pad.lan, pad.qr_png,
                             PhoneCa(f"http://{pad.lan}:{ca_server.port}{CaServer.PATH}",
                                     fingerprint(ca_server.der)))
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        if no_hub is None:
            broker = LocalMosquitto(data_dir / "broker")  # kept first: stopped by its PID below even if it hangs
            try:
                broker.start()
            except RuntimeError as err:
                raise SystemExit(f"{err.args[0].rstrip()}\n(its config: {broker.conf_path}; "
                                 "EDGE_DEMO_BROKER=none make run runs the store without a hub)") from err
            hub = await _start_hub(broker.url, data_dir, hub_http)
            env["EDGE_HUB_URL"] = broker.url
        else:
            # The agent alone, on the config's hub.url (or EDGE_HUB_URL): it sells and queues.
            print(f"make run: {no_hub}: running the agent alone, without a hub", file=sys.stderr, flush=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "run", "--config", str(agent_config),
            "--data-dir", str(data_dir.resolve()), env=env,
            cwd=workdir,
            start_new_session=True,  # Ctrl-C reaches us; we stop the agent in order
        )
        await _wait_ready(sock, proc, 60, stop)
        hub_url = broker.url if broker is not None else None
        print(banner(cfg, n, data_dir, workdir, emulators, hub_url, hub_http, trust, no_hub, pad), flush=True)
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            print(f"the agent exited with {proc.returncode}", file=sys.stderr)
            code = 1
        else:
            # The agent logs the SIGTERM it is sent next: say who sent it and why.
            print(f"\n{stopped_by[0] if stopped_by else 'Stop'}: stopping the demo store: the agent (sent SIGTERM, "
                  f"as systemd stops it){', then the hub and the broker' if broker is not None else ''}", flush=True)
        stopper.cancel()
    except SystemExit as err:
        print(f"make run: {err}", file=sys.stderr)
        code = 1
    except OSError as err:
        print(f"make run: {err}", file=sys.stderr)
        code = 1
    finally:
        # The agent first (it says goodbye to the hub), then the hub, then the broker.
        if not await _stop(proc):
            code = 1
        await _stop(hub)
        if broker is not None:
            broker.stop()
        for emu in emulators:
            await emu.stop()
        if ca_server is not None:
            await ca_server.stop()
        sock.close()
        os.unlink(notify_path)
        os.rmdir(sockdir)
    print("demo store stopped", flush=True)
    return code


def banner(cfg: config.AgentConfig, products: int, data_dir: Path, workdir: Path, emulators: list[DemoEmulator],
           hub_url: str | None, hub_http: HostPort, trust: Path | None = None, no_hub: str | None = None,
           pad: PadPairing | None = None) -> str:
    """What ``make run`` prints once the store is up: where to look and what to try.

    ``trust`` is the CA file that issued the API's certificate (the demo's own), when known;
    ``no_hub`` says why there is no hub (``why_no_hub``), and then ``hub_url`` is None;
    ``pad`` is a pairing code for a PAD, with its URL."""
    secure = cfg.api.tls is not None
    here = dial(cfg.api.listen)  # commands and pages on this PC: an address the certificate names
    base = f"{'https' if secure else 'http'}://{here}"
    ws = f"{'wss' if secure else 'ws'}://{here}"
    curl = f"curl --cacert {trust}" if trust is not None else "curl"
    cafile = f" --cafile {trust}" if trust is not None else ""
    return (
        f"\nDemo store {cfg.store.id} is up ({products} products, {len(cfg.devices)} devices, data in {data_dir}).\n"
        + (f"  API docs      {base}/docs\n" if cfg.api.docs else "  API docs      off (api.docs: true serves /docs)\n")
        + (f"  Trust         {trust} (the demo's CA: curl --cacert, edge-agent devices --cafile; in a browser, "
           "import it as an authority for websites)\n" if trust is not None else "")
        + f"  Health        {curl} {base}/v1/health\n"
        f"  Devices       {curl} -H 'Authorization: Bearer {DEMO_TOKENS['associate']}' {base}/v1/devices\n"
        f"  A product     {curl} -H 'Authorization: Bearer {DEMO_TOKENS['kiosk']}' {base}/v1/products/6901234567892\n"
        f"  Device table  .venv/bin/edge-agent devices --url {base}{cafile} --token {DEMO_TOKENS['console']}\n"
        + "".join(f"  {label:<13} {text}\n" for e in emulators for label, text in e.banner())
        + "".join(f"  Shelf labels  {workdir / d.dir}/*.png\n" for d in cfg.devices if d.kind == "shelf_label.files")
        + (f"  Mirror        {base}/mirror?device=mirror-1#token={DEMO_TOKENS['mirror']}\n"
           if any(d.kind == "mirror.camera" for d in cfg.devices) else "")
        + "".join(f"  Kiosk basket  {curl} -H 'Authorization: Bearer {DEMO_TOKENS['kiosk']}' "
                  f"{base}/v1/sessions/{kiosk} (what {d.id}'s \"Add to basket\" put there)\n"
                  for d in cfg.devices if (kiosk := getattr(d, "kiosk", None)))
        + f"  Live feed     {ws}/v1/events (token in the Authorization header, or a one-use ticket: README, "
        f"Local API); scanner-1 scans a demo code every {_scan_every():g} s\n"
        + f"  Store console {base}/console (token {DEMO_TOKENS['console']})\n"
        + (_hub_lines(cfg, data_dir, hub_url, hub_http) if hub_url is not None
           else _no_hub_lines(cfg, no_hub or "no hub"))
        + "  Tokens        " + ", ".join(f"{r}: {t}" for r, t in DEMO_TOKENS.items()) + "\n"
        + (_pad_lines(cfg, pad, trust) if pad is not None else "")
        + "Press Ctrl-C to stop."
    )


ANDROID_CA = "Settings > Security > Encryption & credentials > Install a certificate > CA certificate"
IOS_CA = ("open the file, install the profile, then Settings > General > About > Certificate Trust Settings, "
          "turn on full trust")


def _pad_lines(cfg: config.AgentConfig, pad: PadPairing, trust: Path | None) -> str:
    """The banner's lines on pairing a PAD: the code, how a phone reaches the store, and the QR."""
    code = pad.code
    zone = cfg.store.timezone
    until = code.expires_at.astimezone(ZoneInfo(zone)).strftime("%H:%M")
    port = cfg.api.listen.port
    lan = cfg.api.listen.host in EVERY_ADDRESS
    opens = "a phone's camera opens it" if lan and pad.lan else "opens in a browser on this PC"
    lines = (f"  Pair a PAD    {code.name}: code {code.code} (one use, until {until} {zone}; edge-agent pair makes "
             "another)\n"
             f"                {pad.url} ({opens}; or type the code at /pad)\n")
    if not lan:
        lines += (f"  From a phone  the API listens on {cfg.api.listen.host} only; for a phone on this Wi-Fi: "
                  f"EDGE_API_LISTEN=0.0.0.0:{port} make run (the demo's tokens are public: a network you trust)\n")
    else:
        where = f"https://{pad.lan}:{port}/pad" if pad.lan else f"https://THIS-PC'S-ADDRESS:{port}/pad"
        lines += (f"  From a phone  on this Wi-Fi: {where} (the demo's tokens are public: a network you trust); "
                  "a camera needs HTTPS: trust the demo's CA on the phone first\n")
        if pad.ca is not None:
            lines += (f"  Phone CA      {pad.ca.url} (open it on the phone; SHA-256 {pad.ca.sha256})\n"
                      f"                Android: {ANDROID_CA}; iOS: {IOS_CA}\n")
        else:
            lines += f"  Phone CA      install {trust or 'the CA of api.tls'} on the phone as a CA certificate\n"
    lines += terminal_qr(pad.url)
    if pad.qr_png is not None:
        lines += f"  QR image      {pad.qr_png}\n"
    return lines


def _hub_lines(cfg: config.AgentConfig, data_dir: Path, hub_url: str, hub_http: HostPort) -> str:
    """The banner's lines about the demo hub: its console, its database and what to publish from it."""
    hub_cli = f".venv/bin/edge-hub publish %s --broker {hub_url} --store {cfg.store.id}"
    # A remote action to try: redraw the shelf labels if the store has some, else reopen its first device.
    labels = next((d.id for d in cfg.devices if d.kind.startswith("shelf_label.")), None)
    first = cfg.devices[0].id if cfg.devices else "DEVICE"
    command = f"--device {labels} --action refresh_labels" if labels else f"--device {first} --action reopen"
    return (
        f"  Hub console   http://{hub_http}/ (token {DEMO_TOKENS['console']})\n"
        f"  Hub           broker {hub_url}, database {data_dir}/hub.db\n"
        f"  Hub stores    .venv/bin/edge-hub stores --db sqlite:///{data_dir}/hub.db\n"
        f"  Remote cmd    .venv/bin/edge-hub cmd --broker {hub_url} --db sqlite:///{data_dir}/hub.db "
        f"--store {cfg.store.id} {command} (shown on the hub console)\n"
        f"  New price     .venv/bin/edge-hub publish catalog demo/price-change.json --broker {hub_url} --store all\n"
        f"  Pickup order  {hub_cli % 'order demo/order.json'} (its pick ticket prints on printer-1)\n"
        f"  Member card   {hub_cli % 'member demo/member.json'} (M-0042, 2000 points; scanner-1's demo scans "
        "attach her to kiosk-1)\n"
    )


def _no_hub_lines(cfg: config.AgentConfig, why: str) -> str:
    """The banner's lines when the agent runs alone: what that means and how to get a hub."""
    if why == "mosquitto is not installed":
        get = f"install Mosquitto: {GET_MOSQUITTO}"
    else:
        get = "make run without EDGE_DEMO_BROKER=none"
    # The agent keeps trying the config's hub.url: a hub there (not merely a broker) would drain it too.
    return (
        f"  Hub           none ({why}): the store sells as usual and keeps every event in its outbox until a hub "
        "takes it (/v1/health: hub offline and outbox_depth; if a broker without a hub answers at hub.url, "
        "hub online and, 30 s after an event waits, degraded with hub_not_acknowledging)\n"
        f"  Get a hub     {get}; it starts Mosquitto and the reference hub, and the outbox drains to them "
        f"(meanwhile the agent tries hub.url, {cfg.hub.url})\n"
    )


def cli() -> int:
    """Entry point of ``python -m edge_agent.demo``."""
    parser = argparse.ArgumentParser(description="Run the demo store")
    parser.add_argument("--config", default=os.environ.get("EDGE_CONFIG", str(ROOT / "devices.yaml")))
    parser.add_argument("--data-dir", default=os.environ.get("EDGE_DATA_DIR", str(ROOT / ".run" / "demo")))
    args = parser.parse_args()
    return asyncio.run(main(Path(args.config), Path(args.data_dir)))


if __name__ == "__main__":
    sys.exit(cli())
