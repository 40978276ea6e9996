"""The heartbeat's stand-in for ``make run``: its TCP emulator, for a device whose address is on loopback."""

from __future__ import annotations

from drivers.base import DemoSite
from drivers.heartbeat.emulator import HeartbeatEmulator

LOOPBACK = ("127.0.0.1", "localhost")


class DemoHeartbeat:
    """A ``HeartbeatEmulator`` on the device's own loopback address."""

    def __init__(self, host: str, port: int):
        self.tcp_port: int | None = port
        self.emulator = HeartbeatEmulator(host, port)

    async def start(self) -> None:
        """Listen on the device's address; OSError when another program has it."""
        await self.emulator.start()

    async def stop(self) -> None:
        """Stop listening."""
        await self.emulator.stop()

    def banner(self) -> list[tuple[str, str]]:
        """Nothing to look at: the device table shows its beats."""
        return []


def demo_emulator(address: object, site: DemoSite) -> DemoHeartbeat | None:
    """A heartbeat emulator when the device's ``address`` is on loopback, else None (simulated or real)."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host not in LOOPBACK or not isinstance(port, int):
        return None
    return DemoHeartbeat(host, port)
