"""``make run``: the demo store on one machine.

Starts the device emulators the demo devices.yaml points at, loads the demo
catalog, runs ``edge-agent run`` as a child process, waits for its sd_notify
READY=1, prints where to look, and on Ctrl-C (or SIGTERM) stops everything
and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

from pydantic import TypeAdapter

from drivers.heartbeat.emulator import HeartbeatEmulator
from edge_agent import catalog, config
from edge_agent.errors import ConfigError
from edge_agent.store import Store

ROOT = Path(__file__).resolve().parent.parent
DEMO_TOKENS = {"kiosk": "demo-kiosk", "associate": "demo-associate", "console": "demo-console", "admin": "demo-admin"}


async def _load_catalog(data_dir: Path, path: Path) -> int:
    items = TypeAdapter(list[catalog.CatalogItem]).validate_json(path.read_bytes())
    store = Store(data_dir / "store.db")
    await store.start()
    try:
        applied, _ = await store.write(lambda tx: catalog.upsert(tx.conn, items))
    finally:
        await store.stop()
    return applied


async def _emulators(cfg: config.AgentConfig) -> list[HeartbeatEmulator]:
    """Start a heartbeat emulator for each demo heartbeat device with a loopback address."""
    started = []
    for dev in cfg.devices:
        address = getattr(dev, "address", None)
        if dev.kind == "sensor.heartbeat" and address is not None and address.host in ("127.0.0.1", "localhost"):
            emu = HeartbeatEmulator(address.host, address.port)
            await emu.start()
            started.append(emu)
    return started


async def _wait_ready(sock: socket.socket, proc: asyncio.subprocess.Process, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise SystemExit(f"the agent exited with {proc.returncode} during start-up; see its log above")
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.5)
        except asyncio.TimeoutError:
            continue
        if b"READY=1" in data:
            return
    raise SystemExit(f"the agent did not become ready within {timeout:.0f} s")


async def main(config_path: Path, data_dir: Path) -> int:
    """Run the demo store until interrupted."""
    try:
        cfg = config.load(config_path)
    except ConfigError as err:
        print("\n".join(err.problems), file=sys.stderr)
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    n = await _load_catalog(data_dir, ROOT / "demo" / "catalog.json")
    emulators = await _emulators(cfg)

    sockdir = tempfile.mkdtemp(prefix="edge-demo-")
    notify_path = os.path.join(sockdir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setblocking(False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config_path), "--data-dir", str(data_dir),
        env={**os.environ, "NOTIFY_SOCKET": notify_path},
        start_new_session=True,  # Ctrl-C reaches us; we stop the agent in order
    )
    code = 0
    try:
        await _wait_ready(sock, proc, 60)
        base = f"http://{cfg.api.listen}"
        print(
            f"\nDemo store {cfg.store.id} is up ({n} products, {len(cfg.devices)} devices, data in {data_dir}).\n"
            f"  API docs      {base}/docs\n"
            f"  Health        {base}/v1/health\n"
            f"  Devices       curl -H 'Authorization: Bearer {DEMO_TOKENS['associate']}' {base}/v1/devices\n"
            f"  A product     curl -H 'Authorization: Bearer {DEMO_TOKENS['kiosk']}' {base}/v1/products/6901234567892\n"
            f"  Device table  .venv/bin/edge-agent devices --url {base} --token {DEMO_TOKENS['console']}\n"
            f"  Tokens        " + ", ".join(f"{r}: {t}" for r, t in DEMO_TOKENS.items()) + "\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            print(f"the agent exited with {proc.returncode}", file=sys.stderr)
            code = 1
        stopper.cancel()
    except SystemExit as err:
        print(err, file=sys.stderr)
        code = 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 12)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                code = 1
        for emu in emulators:
            await emu.stop()
        sock.close()
        os.unlink(notify_path)
        os.rmdir(sockdir)
    print("demo store stopped", flush=True)
    return code


def cli() -> int:
    """Entry point of ``python -m edge_agent.demo``."""
    parser = argparse.ArgumentParser(description="Run the demo store")
    parser.add_argument("--config", default=os.environ.get("EDGE_CONFIG", str(ROOT / "devices.yaml")))
    parser.add_argument("--data-dir", default=os.environ.get("EDGE_DATA_DIR", str(ROOT / ".run" / "demo")))
    args = parser.parse_args()
    return asyncio.run(main(Path(args.config), Path(args.data_dir)))


if __name__ == "__main__":
    sys.exit(cli())
