"""``python -m sync.embedded_broker [--host H] [--port N]``: the demo store's
broker when Mosquitto is not installed, run as a child process.

stdout gets exactly one line, ``listening on HOST:PORT`` (with the real port
when ``--port 0``), once connections are accepted; warnings go to stderr.
SIGTERM or SIGINT: MQTT 5 clients get DISCONNECT 0x8B, exit 0. Exit 1 when
the port cannot be bound. Everything is in memory: a restart forgets all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from sync.embedded_broker.broker import EmbeddedBroker


async def serve(host: str, port: int) -> int:
    """Run the broker until SIGTERM or SIGINT; the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = EmbeddedBroker(host, port)
    try:
        await broker.start()
    except OSError as err:
        print(f"embedded broker: cannot listen on {host}:{port}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"listening on {host}:{broker.port}", flush=True)
    await stop.wait()
    await broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m sync.embedded_broker",
                                     description="In-memory MQTT 5 / 3.1.1 broker for the demo store.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="TCP port; 0 picks a free one (default 1883)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="what goes to stderr (default WARNING)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s embedded-broker %(levelname)s %(message)s")
    return asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
