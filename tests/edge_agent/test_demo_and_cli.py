"""``make run``'s launcher and the ``edge-agent`` commands, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from websockets.sync.client import connect

from support.agent import DEMO_CATALOG, ROOT, TOKENS, free_port
from support.flows import LIPSTICK, TOTE, sale


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """Read the process's stdout until a line contains ``marker``."""
    # Raw reads on the fd: a buffered readline would hide data from select().
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0 and proc.poll() is None, f"no {marker!r} in:\n{seen.decode()}"
        if sel.select(remaining):
            seen += os.read(fd, 65536)
    return seen.decode()


def _demo_config(tmp_path) -> None:
    """The demo's devices.yaml in ``tmp_path``, its emulators on free ports."""
    config = (ROOT / "devices.yaml").read_text().replace("127.0.0.1:9601", f"127.0.0.1:{free_port()}")
    (tmp_path / "devices.yaml").write_text(config.replace("127.0.0.1:9100", f"127.0.0.1:{free_port()}"))


def _start_demo(tmp_path, **environ: str) -> subprocess.Popen:
    """``make run`` on the config in ``tmp_path`` with its data in ``tmp_path/data``."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.demo", "--config", str(tmp_path / "devices.yaml"),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **environ},
    )


def _ctrl_c(proc: subprocess.Popen) -> str:
    """Ctrl-C at the launcher, so that it stops what it started; all it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_demo_store_starts_answers_and_stops_on_ctrl_c(tmp_path):
    """``make run`` with Mosquitto: the broker, the reference hub and the agent."""
    port = free_port()
    _demo_config(tmp_path)
    env = {"EDGE_API_LISTEN": f"127.0.0.1:{port}", "EDGE_DEMO_SCAN_EVERY": "0.2",
           "EDGE_DEMO_BROKER": "mosquitto", "EDGE_DEMO_HUB_HTTP": f"127.0.0.1:{free_port()}"}
    proc = _start_demo(tmp_path, **env)
    try:
        banner = _read_until(proc, "Press Ctrl-C", 60)
        # HTTPS and WSS, with the demo's own CA next to the config, which the banner names.
        ca = tmp_path / ".run" / "tls" / "ca.crt"
        assert f"https://127.0.0.1:{port}/docs" in banner
        assert f"Trust         {ca} " in banner
        assert f"Live feed     wss://127.0.0.1:{port}/v1/events (token in the Authorization header" in banner
        assert "?token=" not in banner  # (the mirror's #token= is a fragment: it never leaves the browser)
        api = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=ca),
                           timeout=30)
        products = len(json.loads(DEMO_CATALOG.read_text()))
        assert f"Demo store store-001 is up ({products} products, 7 devices, data in " in banner
        assert "Hub stores" in banner  # the demo brought up a broker and the reference hub
        hub_console = env["EDGE_DEMO_HUB_HTTP"]
        assert f"http://{hub_console}/" in banner
        assert f"Shelf labels  {tmp_path / '.run' / 'labels'}/*.png" in banner
        assert httpx.get(f"http://{hub_console}/").status_code == 200  # the hub's health console
        deadline = time.monotonic() + 20
        while (health := api.get("/v1/health").json())["hub"] != "online":
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
        assert health["store"] == "store-001"
        product = api.get("/v1/products/6901234567892", headers={"Authorization": "Bearer demo-kiosk"})
        assert product.status_code == 200
        # The banner's pairing code pairs a PAD once, over HTTPS; its URL and QR are the API's own.
        code = re.search(r"  Pair a PAD    pad-demo-1: code ([2-9A-Z]{4}-[2-9A-Z]{4}) \(one use, until", banner)
        assert code is not None, banner
        url = f"https://127.0.0.1:{port}/pad#pair={code.group(1)}"
        assert url in banner
        assert _read_terminal_qr(_qr_lines(banner)) == url
        assert f"  QR image      {tmp_path / 'data' / 'pair-qr.png'}" in banner
        assert "until " in banner and " Asia/Shanghai; edge-agent pair makes another" in banner
        assert f"EDGE_API_LISTEN=0.0.0.0:{port} make run" in banner
        paired = api.post("/v1/pair", json={"code": code.group(1)})
        assert paired.status_code == 201 and paired.json()["name"] == "pad-demo-1", paired.text
        assert api.get("/v1/orders", headers={"Authorization": f"Bearer {paired.json()['token']}"}).status_code == 200
        # The demo's scanner (a pty emulator next to the config) scans into the live feed.
        with connect(f"wss://127.0.0.1:{port}/v1/events", ssl=ssl.create_default_context(cafile=ca),
                     additional_headers={"Authorization": "Bearer demo-associate"}, open_timeout=10) as ws:
            while (event := json.loads(ws.recv(timeout=20)))["type"] != "scan":
                pass
        assert event["data"]["device"] == "scanner-1"
        # A checkout at kiosk-1 prints its receipt on the demo's emulated printer.
        sale = api.post("/v1/sales", headers={"Authorization": "Bearer demo-kiosk"},
                          json={"client_sale_id": "0b8e8a56-5d2c-4f7e-9a51-3d8f0e6c1a27", "payment": {"method": "cash"},
                                "lines": [{"code": "6901234567892", "qty": 1}]})
        assert sale.status_code == 201, sale.text
        receipts = tmp_path / "data" / "printer-1.txt"
        deadline = time.monotonic() + 20
        while " cut " not in (receipts.read_text() if receipts.exists() else ""):
            assert time.monotonic() < deadline, "no receipt came out of the demo printer"
            time.sleep(0.05)  # polling a file another process writes
        assert "丝绒哑光口红 Velvet Matte Lipstick" in receipts.read_text()  # GB18030 profile
        # The demo's shelf labels are PNG files next to the config.
        label = tmp_path / ".run" / "labels" / "LIP-RED-01.png"
        while not label.exists():
            assert time.monotonic() < deadline, "the demo's shelf label was not drawn"
            time.sleep(0.05)  # polling a file another process writes
        assert (tmp_path / ".run" / "dev" / "scanner-1").is_symlink()
        # The pole display's emulator, started through its driver's declaration, shows kiosk-1's scans.
        screen = tmp_path / "data" / "pole-1.screen.txt"
        assert f"Pole display  watch -n1 cat {screen}" in banner
        while "TOTAL" not in screen.read_text():
            assert time.monotonic() < deadline + 20, f"the pole display shows no total:\n{screen.read_text()}"
            time.sleep(0.05)  # polling a file another process writes
        # The sample order and member card, published with the commands the banner gives.
        for what in ("Pickup order", "Member card"):
            (line,) = [ln for ln in banner.splitlines() if ln.startswith(f"  {what}")]
            command = line.split(maxsplit=2)[2].split(" (")[0].split()
            sent = subprocess.run([sys.executable, "-m", "sync.hub", *command[1:]], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
            assert sent.returncode == 0 and "published to hub/store-001/" in sent.stdout, sent.stderr
        while "WEB-DEMO-1" not in receipts.read_text():  # the pick ticket's order number
            assert time.monotonic() < deadline + 20, "no pick ticket came out of the demo printer"
            time.sleep(0.05)  # polling a file another process writes
        assert "PICK TICKET" in receipts.read_text()
        assert "482913" not in receipts.read_text()  # the customer's pickup code stays off the back room's paper
        member = {}
        while member.get("points") != 2000:
            assert time.monotonic() < deadline + 20, member
            member = api.get("/v1/members/M-0042",
                               headers={"Authorization": "Bearer demo-associate"}).json()
            time.sleep(0.05)
    finally:
        out = _ctrl_c(proc)
    assert proc.returncode == 0, out
    assert "demo store stopped" in out
    assert "edge-hub: stopped" in out
    # What happened, in order: Ctrl-C at the launcher, which stopped the agent with SIGTERM.
    said = out.index("Ctrl-C: stopping the demo store: the agent (sent SIGTERM, as systemd stops it), then the hub")
    assert said < out.index("asked to stop (SIGTERM): finishing in-flight work")
    assert "received SIG" not in out


def test_demo_store_without_a_broker_sells_queues_and_drains_at_the_next_run_with_one(tmp_path):
    """``make run`` without Mosquitto runs the agent alone: it sells, keeps the sale's event in the
    outbox and says how to get a hub; the next ``make run`` with Mosquitto drains the outbox to its hub."""
    port = free_port()
    _demo_config(tmp_path)
    # A hub.url where nothing listens, so that a broker on this machine's 1883 cannot take the sale.
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    proc = _start_demo(tmp_path, EDGE_API_LISTEN=f"127.0.0.1:{port}", EDGE_DEMO_BROKER="none", EDGE_HUB_URL=nowhere,
                       EDGE_DEMO_HUB_HTTP=f"127.0.0.1:{free_port()}")
    ca = tmp_path / ".run" / "tls" / "ca.crt"
    try:
        banner = _read_until(proc, "Press Ctrl-C", 60)
        assert "make run: EDGE_DEMO_BROKER=none: running the agent alone, without a hub" in banner
        assert "  Hub           none (EDGE_DEMO_BROKER=none): the store sells as usual and keeps every event in its " \
               "outbox until a hub takes it (/v1/health: hub offline and outbox_depth; if a broker without a hub " \
               "answers at hub.url, hub online and, 30 s after an event waits, degraded with hub_not_acknowledging)" \
               in banner
        assert "  Get a hub     make run without EDGE_DEMO_BROKER=none; it starts Mosquitto and the reference hub, " \
               f"and the outbox drains to them (meanwhile the agent tries hub.url, {nowhere})" in banner
        # Nothing that needs a hub is offered.
        assert "edge-hub" not in banner and "Hub console" not in banner and "--broker" not in banner
        api = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=ca),
                           timeout=30)
        before = api.get("/v1/health").json()
        assert before["hub"] == "offline" and before["store"] == "store-001", before
        sold = api.post("/v1/sales", headers={"Authorization": "Bearer demo-kiosk"},
                        json={"client_sale_id": "5d7c3a8e-1f2b-4c6d-8e9f-0a1b2c3d4e5f", "payment": {"method": "cash"},
                              "lines": [{"code": "6901234567892", "qty": 1}]})
        assert sold.status_code == 201, sold.text
        after = api.get("/v1/health").json()
        assert after["hub"] == "offline" and after["outbox_depth"] > before["outbox_depth"], after
    finally:
        out = _ctrl_c(proc)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "demo store stopped" in out
    assert "Ctrl-C: stopping the demo store: the agent (sent SIGTERM, as systemd stops it)\n" in out

    # The next make run finds Mosquitto: its hub takes the queued sale and the outbox empties.
    proc = _start_demo(tmp_path, EDGE_API_LISTEN=f"127.0.0.1:{port}", EDGE_DEMO_BROKER="mosquitto",
                       EDGE_DEMO_HUB_HTTP=f"127.0.0.1:{free_port()}")
    try:
        _read_until(proc, "Press Ctrl-C", 60)
        api = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=ca),
                           timeout=30)
        deadline = time.monotonic() + 30
        while (health := api.get("/v1/health").json())["hub"] != "online" or health["outbox_depth"] != 0:
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
    finally:
        out = _ctrl_c(proc)
    assert proc.returncode == 0, out
    hub = sqlite3.connect(tmp_path / "data" / "hub.db")
    try:
        sales = [json.loads(e)["data"]["client_sale_id"]
                 for (e,) in hub.execute("SELECT event FROM events WHERE type = 'retail.sale.completed'")]
    finally:
        hub.close()
    assert sales == ["5d7c3a8e-1f2b-4c6d-8e9f-0a1b2c3d4e5f"]


def test_demo_store_on_a_machine_without_mosquitto_says_how_to_get_it(tmp_path):
    """``make run`` where no mosquitto binary exists: the PATH without it, and /usr/sbin (where
    Debian puts it) hidden by an empty tmpfs in a mount namespace of the demo's own."""
    hide = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /usr/sbin && exec "$@"', "sh"]
    probe = subprocess.run([*hide, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot hide /usr/sbin here (a mount namespace needs root): {probe.stderr.strip()}")
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(d, "mosquitto")))
    port = free_port()
    _demo_config(tmp_path)
    environ = {**os.environ, "PATH": path, "EDGE_API_LISTEN": f"127.0.0.1:{port}",
               "EDGE_HUB_URL": f"mqtt://127.0.0.1:{free_port()}", "EDGE_DEMO_HUB_HTTP": f"127.0.0.1:{free_port()}"}
    environ.pop("EDGE_DEMO_BROKER", None)
    proc = subprocess.Popen(
        [*hide, sys.executable, "-m", "edge_agent.demo", "--config", str(tmp_path / "devices.yaml"),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ,
    )
    try:
        banner = _read_until(proc, "Press Ctrl-C", 60)
        assert "make run: mosquitto is not installed: running the agent alone, without a hub" in banner
        assert "  Get a hub     install Mosquitto: sudo scripts/system-packages.sh run (or sudo apt install " \
               "mosquitto), then make run again" in banner
        ca = tmp_path / ".run" / "tls" / "ca.crt"
        health = httpx.get(f"https://127.0.0.1:{port}/v1/health", verify=ssl.create_default_context(cafile=ca),
                           timeout=30).json()
        assert health["hub"] == "offline", health
    finally:
        out = _ctrl_c(proc)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "demo store stopped" in out


def test_a_mosquitto_that_will_not_start_stops_the_demo_saying_so(tmp_path):
    """A broken mosquitto first on the PATH: make run says it exited and how to run without a hub, exit 1."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mosquitto").write_text("#!/bin/sh\nexit 3\n")
    (bindir / "mosquitto").chmod(0o755)
    _demo_config(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.demo", "--config", str(tmp_path / "devices.yaml"),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "EDGE_DEMO_BROKER": "mosquitto",
             "EDGE_API_LISTEN": f"127.0.0.1:{free_port()}", "EDGE_DEMO_HUB_HTTP": f"127.0.0.1:{free_port()}"})
    assert out.returncode == 1, out
    assert "make run: mosquitto exited with 3 (its log is empty)\n(its config: " in out.stderr
    assert "EDGE_DEMO_BROKER=none make run runs the store without a hub" in out.stderr
    assert "Traceback" not in out.stderr and "demo store stopped" in out.stdout


def test_the_demo_says_how_to_get_mosquitto_when_it_is_not_installed(monkeypatch):
    """Without the mosquitto binary the banner names the commands that install it."""
    from edge_agent import config, demo

    monkeypatch.delenv("EDGE_DEMO_BROKER", raising=False)
    monkeypatch.setattr(demo, "mosquitto_binary", lambda: None)  # this machine has it: a machine without it
    why = demo.why_no_hub()
    assert why == "mosquitto is not installed"
    cfg = config.load(ROOT / "devices.yaml")
    text = demo.banner(cfg, 6, ROOT / ".run" / "demo", ROOT, [], None, demo.HUB_HTTP_DEFAULT, None, why)
    assert "  Hub           none (mosquitto is not installed): the store sells as usual" in text
    assert "  Get a hub     install Mosquitto: sudo scripts/system-packages.sh run (or sudo apt install mosquitto), " \
           "then make run again; it starts Mosquitto and the reference hub, and the outbox drains to them" in text
    assert "edge-hub" not in text


_SGR = re.compile(r"\x1b\[([0-9;]*)m")
TERMINALS = {"dark": (255, 0), "light": (0, 255)}  # a terminal's own text and ground: light on dark, dark on light


def _qr_lines(text: str) -> list[str]:
    """The lines of a banner that draw its QR code (they set their own colours)."""
    return [ln for ln in text.splitlines() if ln.startswith("\x1b[")]


def _read_terminal_qr(lines: list[str], terminal: str = "dark") -> str:
    """The text of a QR code drawn in half blocks, as a terminal with the given default colours shows it: an
    escape sequence's colours where it sets them, the terminal's own elsewhere (around the code too)."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the mirror extra) reads the QR code back")
    np = pytest.importorskip("numpy")
    text_colour, ground = TERMINALS[terminal]
    cells: list[list[tuple[int, int]]] = []
    for line in lines:
        fg, bg, row, pos = text_colour, ground, [], 0
        for match in [*_SGR.finditer(line), None]:
            chunk = line[pos:match.start() if match else len(line)]
            row += [(fg if ch in "█▀" else bg, fg if ch in "█▄" else bg) for ch in chunk]
            if match is None:
                break
            pos = match.end()
            for param in (match.group(1) or "0").split(";"):
                n = int(param or 0)
                fg = {0: text_colour, 39: text_colour, 30: 0, 37: 255, 97: 255}.get(n, fg)
                bg = {0: ground, 49: ground, 40: 0, 47: 255, 107: 255}.get(n, bg)
        cells.append(row)
    modules = np.full((2 * len(cells), max(map(len, cells))), ground, np.uint8)
    for y, row in enumerate(cells):
        for x, (top, bottom) in enumerate(row):
            modules[2 * y, x], modules[2 * y + 1, x] = top, bottom
    image = np.pad(modules, 4, constant_values=ground)
    image = cv2.resize(image, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    return cv2.QRCodeDetector().detectAndDecode(image)[0]


def test_the_terminal_qr_reads_on_light_and_dark_terminals_and_as_a_png(tmp_path):
    """Black modules on white with their quiet zone, whatever the terminal's colours; the same code as a PNG."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the mirror extra) reads the QR code back")
    from edge_agent.qrcodes import terminal_qr, write_qr_png

    url = "https://192.168.1.23:8443/pad#pair=K7QP-M3XD"
    lines = _qr_lines(terminal_qr(url))
    assert lines and all(ln.startswith("\x1b[30;107m") and ln.endswith("\x1b[0m") for ln in lines)
    assert _read_terminal_qr(lines, "dark") == url
    assert _read_terminal_qr(lines, "light") == url
    image = cv2.imread(str(write_qr_png(url, tmp_path / "pair-qr.png")))
    assert cv2.QRCodeDetector().detectAndDecode(image)[0] == url


def test_the_banner_pairs_a_pad_and_says_how_a_phone_reaches_the_store(monkeypatch):
    """A fresh code for pad-demo-<n> until a time in the store's zone, its URL and a terminal QR; on loopback, that
    the URL opens on this PC and how to listen for a phone, before the QR; on every address, the URL on the LAN
    address, the CA to trust at a plain URL with its fingerprint and how, and 127.0.0.1 for this PC's commands."""
    from datetime import datetime, timezone

    from edge_agent import config, demo, pairing

    monkeypatch.delenv("EDGE_API_LISTEN", raising=False)
    cfg = config.load(ROOT / "devices.yaml")
    assert cfg.store.timezone == "Asia/Shanghai"
    code = pairing.Code("K7QP-M3XD", "pad-demo-2", (), datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc), 600)
    pad = demo.pad_pairing(cfg, code, None)
    assert pad.url == "http://127.0.0.1:8080/pad#pair=K7QP-M3XD"
    ca = ROOT / ".run" / "tls" / "ca.crt"
    text = demo.banner(cfg, 6, ROOT / ".run" / "demo", ROOT, [], None, demo.HUB_HTTP_DEFAULT, ca, "none", pad)
    assert "  Pair a PAD    pad-demo-2: code K7QP-M3XD (one use, until 17:30 Asia/Shanghai; " in text
    assert "                http://127.0.0.1:8080/pad#pair=K7QP-M3XD (opens in a browser on this PC; or type" in text
    qr = _qr_lines(text)
    assert _read_terminal_qr(qr) == pad.url  # what a phone's camera reads off the terminal
    phone = "  From a phone  the API listens on 127.0.0.1 only; for a phone on this Wi-Fi: " \
            "EDGE_API_LISTEN=0.0.0.0:8080 make run"
    assert phone in text
    assert text.index(phone) < text.index(qr[0])  # said before the QR, which only this PC can open
    assert "Phone CA" not in text
    assert text.endswith("Press Ctrl-C to stop.")

    monkeypatch.setenv("EDGE_API_LISTEN", "0.0.0.0:8443")
    tls = config.ApiTlsConfig(cert_file=ROOT / "devices.yaml", key_file=ROOT / "devices.yaml")
    cfg = config.load(ROOT / "devices.yaml")
    cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"tls": tls})})
    pad = demo.pad_pairing(cfg, code, "192.168.1.23")
    assert pad.url == "https://192.168.1.23:8443/pad#pair=K7QP-M3XD"
    sha = ":".join(["AB"] * 32)
    pad = demo.PadPairing(pad.code, pad.url, pad.lan, ROOT / ".run" / "demo" / "pair-qr.png",
                          demo.PhoneCa("http://192.168.1.23:8444/ca.crt", sha))
    text = demo.banner(cfg, 6, ROOT / ".run" / "demo", ROOT, [], None, demo.HUB_HTTP_DEFAULT, ca, "none", pad)
    assert "(a phone's camera opens it; or type the code at /pad)" in text
    assert "  From a phone  on this Wi-Fi: https://192.168.1.23:8443/pad " in text
    assert f"  Phone CA      http://192.168.1.23:8444/ca.crt (open it on the phone; SHA-256 {sha})" in text
    assert "Android: Settings > Security > Encryption & credentials > Install a certificate > CA certificate; " \
           "iOS: open the file, install the profile, then Settings > General > About > Certificate Trust " \
           "Settings, turn on full trust" in text
    assert text.index("Phone CA") < text.index(_qr_lines(text)[0])
    assert f"  QR image      {ROOT / '.run' / 'demo' / 'pair-qr.png'}" in text
    # This PC's commands and pages dial an address the certificate names, not 0.0.0.0.
    assert "0.0.0.0:8443" not in text.replace("EDGE_API_LISTEN=0.0.0.0:8443", "")
    for line in ("API docs      https://127.0.0.1:8443/docs", "/v1/health", "/v1/devices", "/v1/products/",
                 "devices --url https://127.0.0.1:8443", "Mirror        https://127.0.0.1:8443/mirror",
                 "Live feed     wss://127.0.0.1:8443/v1/events", "Store console https://127.0.0.1:8443/console"):
        assert line in text
    assert "curl --cacert " + str(ca) + " https://127.0.0.1:8443/v1/health" in text
    assert demo.pad_pairing(cfg, code, None).url == "https://127.0.0.1:8443/pad#pair=K7QP-M3XD"


def test_the_demo_on_every_address_gives_a_phone_its_ca_and_this_pc_an_address_the_certificate_names(tmp_path):
    """``EDGE_API_LISTEN=0.0.0.0:PORT make run``: the banner's commands dial 127.0.0.1 and work as printed; the
    pairing URL names the LAN address; the CA's certificate is at the banner's plain URL with the banner's
    fingerprint, and the port is closed again when the demo stops."""
    from edge_agent.demo_phone import fingerprint
    from edge_agent.demo_tls import lan_address

    lan = lan_address()
    if lan is None:
        pytest.skip("this machine has no address on a local network")
    port = free_port()
    _demo_config(tmp_path)
    proc = _start_demo(tmp_path, EDGE_API_LISTEN=f"0.0.0.0:{port}", EDGE_DEMO_BROKER="none")
    try:
        banner = _read_until(proc, "Press Ctrl-C", 60)
        banner = banner[banner.index("Demo store store-001 is up"):]  # (the agent's log before it says 0.0.0.0)
        assert f"0.0.0.0:{port}" not in banner
        (health,) = [ln for ln in banner.splitlines() if ln.startswith("  Health ")]
        command = health.split(maxsplit=1)[1].split()
        assert command[-1] == f"https://127.0.0.1:{port}/v1/health"
        got = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0 and json.loads(got.stdout)["store"] == "store-001", got.stderr
        assert re.search(rf"https://{re.escape(lan)}:{port}/pad#pair=[2-9A-Z]{{4}}-[2-9A-Z]{{4}} \(a phone's camera",
                         banner)
        found = re.search(r"  Phone CA      (http://\S+/ca\.crt) \(open it on the phone; SHA-256 ([0-9A-F:]{95})\)",
                          banner)
        assert found is not None, banner
        url, sha = found.groups()
        assert url.startswith(f"http://{lan}:")
        cert = httpx.get(url, timeout=30)
        assert cert.status_code == 200 and fingerprint(cert.content) == sha
        ca = ssl.PEM_cert_to_DER_cert((tmp_path / ".run" / "tls" / "ca.crt").read_text())
        assert cert.content == ca
        assert _read_terminal_qr(_qr_lines(banner), "light") == \
            re.search(r"https://\S+/pad#pair=\S+", banner).group(0)
    finally:
        out = _ctrl_c(proc)
    assert proc.returncode == 0, out
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=5)


def test_the_demo_serves_its_ca_certificate_on_plain_http_and_nothing_else(tmp_path):
    """GET /ca.crt gives the CA's DER (its fingerprint the banner's); another path, method or a flood of
    header bytes gets a short 4xx; the key is never served."""
    import asyncio

    from edge_agent.demo_phone import CaServer, ca_der, fingerprint
    from edge_agent.demo_tls import ensure_tls
    from edge_core.config_types import HostPort

    made = ensure_tls(tmp_path, HostPort(host="0.0.0.0", port=8443), "192.168.1.23")
    der = ca_der(made.ca)

    async def run() -> None:
        server = CaServer(der, "127.0.0.1", 0)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
                got = await client.get("/ca.crt")
                assert got.status_code == 200 and got.content == der
                assert got.headers["content-type"] == "application/x-x509-ca-cert"
                assert fingerprint(got.content) == fingerprint(der)
                assert (await client.head("/ca.crt")).content == b""
                assert (await client.get("/ca.key")).status_code == 404
                assert (await client.get("/../ca.key")).status_code == 404
                assert (await client.post("/ca.crt")).status_code == 405
                assert (await client.get("/ca.crt", headers={"X-Junk": "x" * 8000})).status_code == 431
        finally:
            await server.stop()

    asyncio.run(run())
    openssl = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-fingerprint", "-sha256"],
                             input=der, capture_output=True, check=True).stdout.decode()
    assert openssl.strip().split("=", 1)[1] == fingerprint(der)


def test_the_demo_certificate_names_the_lan_address_when_the_api_listens_on_every_address(tmp_path):
    """A phone on the Wi-Fi checks the certificate against the LAN address: named, and made again when it moves."""
    from edge_agent import tls
    from edge_agent.demo_tls import ensure_tls
    from edge_core.config_types import HostPort

    every = HostPort(host="0.0.0.0", port=8443)
    made = ensure_tls(tmp_path, every, "192.168.1.23")
    cert = tls.decode_cert(made.cert)
    assert tls.san_covers(cert, "192.168.1.23") and tls.san_covers(cert, "127.0.0.1")
    ensure_tls(tmp_path, every, "10.0.0.7")
    moved = tls.decode_cert(made.cert)
    assert tls.san_covers(moved, "10.0.0.7") and not tls.san_covers(moved, "192.168.1.23")
    ensure_tls(tmp_path, HostPort(host="127.0.0.1", port=8443), "10.0.0.7")  # loopback: no LAN name needed
    assert tls.decode_cert(made.cert) == moved


def test_the_demo_refuses_a_broker_it_does_not_know():
    """EDGE_DEMO_BROKER=embedded (the broker make run once had) is an error that names the choices."""
    from edge_agent.demo import why_no_hub

    with pytest.raises(SystemExit, match="EDGE_DEMO_BROKER='embedded' is not mosquitto \\(the default\\) or none"):
        why_no_hub({"EDGE_DEMO_BROKER": "embedded"})
    assert why_no_hub({"EDGE_DEMO_BROKER": "none"}) == "EDGE_DEMO_BROKER=none"


def test_the_hub_console_never_takes_the_api_port(monkeypatch):
    """EDGE_API_LISTEN=127.0.0.1:8090, as the README suggests, moves the hub console elsewhere."""
    from edge_agent import config
    from edge_agent.demo import HUB_HTTP_DEFAULT, plan_ports

    monkeypatch.delenv("EDGE_DEMO_HUB_HTTP", raising=False)
    monkeypatch.setenv("EDGE_API_LISTEN", f"127.0.0.1:{HUB_HTTP_DEFAULT.port}")
    cfg = config.load(ROOT / "devices.yaml")
    chosen = plan_ports(cfg, {})
    assert chosen.port not in (HUB_HTTP_DEFAULT.port, 9100, 9601)  # the API's and the emulators'
    # An explicit console port the API or an emulator wants too is refused, saying which.
    with pytest.raises(SystemExit, match="the API"):
        plan_ports(cfg, {"EDGE_DEMO_HUB_HTTP": f"127.0.0.1:{HUB_HTTP_DEFAULT.port}"})
    with pytest.raises(SystemExit, match="printer-1's emulator"):
        plan_ports(cfg, {"EDGE_DEMO_HUB_HTTP": "127.0.0.1:9100"})
    assert plan_ports(cfg, {"EDGE_DEMO_HUB_HTTP": "127.0.0.1:18090"}).port == 18090
    # An API port an emulator needs cannot work: said before anything starts.
    monkeypatch.setenv("EDGE_API_LISTEN", "127.0.0.1:9100")
    with pytest.raises(SystemExit, match="EDGE_API_LISTEN.*printer-1's emulator both want port 9100"):
        plan_ports(config.load(ROOT / "devices.yaml"), {})


def test_the_hub_console_moves_off_a_port_another_program_holds(monkeypatch):
    from edge_agent import config
    from edge_agent.demo import HUB_HTTP_DEFAULT, plan_ports

    monkeypatch.setenv("EDGE_API_LISTEN", f"127.0.0.1:{free_port()}")
    cfg = config.load(ROOT / "devices.yaml")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", HUB_HTTP_DEFAULT.port))
            holder.listen()
        except OSError:
            pass  # something on this machine holds it already: the same case
        assert plan_ports(cfg, {}).port != HUB_HTTP_DEFAULT.port


def test_demo_says_which_emulator_cannot_have_its_port_and_leaves_nothing_running(tmp_path):
    hb_port = free_port()
    config = (ROOT / "devices.yaml").read_text().replace("127.0.0.1:9601", f"127.0.0.1:{hb_port}")
    with socket.socket() as holder:  # another program on the printer emulator's port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        (tmp_path / "devices.yaml").write_text(config.replace("127.0.0.1:9100", f"127.0.0.1:{taken}"))
        env = {**os.environ, "EDGE_API_LISTEN": f"127.0.0.1:{free_port()}",
               "EDGE_DEMO_HUB_HTTP": f"127.0.0.1:{free_port()}"}
        out = subprocess.run(
            [sys.executable, "-m", "edge_agent.demo", "--config", str(tmp_path / "devices.yaml"),
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1, out
    assert f"make run: printer-1's emulator cannot listen on 127.0.0.1:{taken}" in out.stderr
    assert "Traceback" not in out.stderr and "demo store stopped" in out.stdout
    with socket.socket() as again:  # the heartbeat emulator started before it was stopped
        again.bind(("127.0.0.1", hb_port))


def test_devices_command_prints_the_table(make_agent):
    agent = make_agent().start()
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "devices", "--url", agent.url, "--token", TOKENS["console"]],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split()[:3] == ["ID", "KIND", "STATE"]
    assert row.split()[:2] == ["heartbeat-1", "sensor.heartbeat"]


def test_devices_command_explains_a_bad_token_and_a_dead_agent(make_agent):
    agent = make_agent().start()
    bad = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "devices", "--url", agent.url, "--token", "wrong"],
        capture_output=True, text=True, timeout=30,
    )
    assert bad.returncode == 1 and "401" in bad.stderr
    dead = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "devices", "--url", f"http://127.0.0.1:{free_port()}",
         "--token", "x"],
        capture_output=True, text=True, timeout=30,
    )
    assert dead.returncode == 1 and "cannot reach" in dead.stderr


def test_hash_token_matches_sha256():
    out = subprocess.run([sys.executable, "-m", "edge_agent.cli", "hash-token", "s3cret"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(b"s3cret").hexdigest()


def test_catalog_import_reports_bad_items(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text('[{"sku": "A1", "name": "x", "price": "-1", "currency": "CNY"}]')
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "catalog-import", str(bad), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "item 0.price" in out.stderr


def test_importing_the_catalog_again_keeps_the_days_counts(make_agent):
    """`make run` imports demo/catalog.json at every start: the counts sales and adjustments made stay, the prices
    follow the file, and a product new in the file gets the file's count."""
    agent = make_agent()
    agent.import_catalog()
    agent.start()
    with agent.client("associate") as c:
        assert c.post("/v1/sales", json=sale((LIPSTICK, 2))).status_code == 201
        adjusted = c.post("/v1/stock/adjustments", json={"code": TOTE, "delta": -5, "reason": "damaged"})
        assert adjusted.status_code == 201, adjusted.text
        before = {sku: c.get(f"/v1/products/{sku}").json()["stock_store"] for sku in ("LIP-RED-01", "TOTE-CANVAS")}
    agent.stop()
    extra = agent.workdir / "more.json"
    items = json.loads(DEMO_CATALOG.read_text())
    extra.write_text(json.dumps(items + [{"sku": "NEW-1", "name": "New", "price": "1.00", "currency": "CNY",
                                          "stock_store": 7}]))
    agent.import_catalog(extra)
    agent.start()
    with agent.client("associate") as c:
        after = {sku: c.get(f"/v1/products/{sku}").json()["stock_store"] for sku in ("LIP-RED-01", "TOTE-CANVAS")}
        assert after == before == {"LIP-RED-01": 22, "TOTE-CANVAS": 35}
        assert c.get("/v1/products/NEW-1").json()["stock_store"] == 7
