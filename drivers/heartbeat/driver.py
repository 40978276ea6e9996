"""Heartbeat sensor driver: pings the device every ``interval`` seconds.

With ``address`` it talks TCP to a real sensor or to the emulator in
drivers/heartbeat/emulator.py; without, it talks to a built-in simulated
device (a FakeTransport), which is what the demo store uses.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from drivers.base import DemoEmulator, DemoSite, DeviceConfig, Driver, DriverContext, Reporting
from drivers.heartbeat import protocol
from drivers.transport import FakeTransport, Transport
from drivers.transport.tcp import TcpTransport
from edge_core.config_types import HostPort
from edge_core.errors import DeviceTimeout


class HeartbeatConfig(DeviceConfig):
    """devices.yaml keys of ``sensor.heartbeat``."""

    kind: Literal["sensor.heartbeat"]
    address: HostPort | None = Field(default=None, description="host:port of a TCP heartbeat device; none = simulated")
    interval: float = Field(default=5.0, gt=0, le=3600, description="seconds between pings")
    timeout: float = Field(default=2.0, gt=0, le=60, description="seconds to wait for PONG")


class HeartbeatSensor(Driver):
    """Pings a heartbeat device and counts its beats."""

    kind = "sensor.heartbeat"
    health_fields = ("beats",)
    Config = HeartbeatConfig
    capabilities = frozenset({"heartbeat"})
    reporting = Reporting.POLL

    @classmethod
    def demo_emulator(cls, config: DeviceConfig, site: DemoSite) -> DemoEmulator | None:
        """The TCP emulator for an address on loopback (drivers/heartbeat/demo.py)."""
        from drivers.heartbeat.demo import demo_emulator
        return demo_emulator(getattr(config, "address", None), site)

    def __init__(self, config: HeartbeatConfig, ctx: DriverContext, transport: Transport | None = None):
        super().__init__(config, ctx)
        self.check_interval = config.interval
        self.op_timeout = config.timeout + 1
        self.transport = transport or self._make_transport(config)
        self.last_beat: int | None = None

    @staticmethod
    def _make_transport(config: HeartbeatConfig) -> Transport:
        if config.address is None:
            beats = iter(range(1, 1 << 62))
            return FakeTransport(
                "tcp", replies=lambda data: protocol.pong(next(beats)) if data == protocol.PING else None
            )
        return TcpTransport(config.address.host, config.address.port)

    async def open(self) -> None:
        """Connect and make sure the device answers a ping."""
        await self.transport.open()
        await self.check()

    async def close(self) -> None:
        """Disconnect; safe to call twice."""
        await self.transport.close()

    async def check(self) -> None:
        """Ping once; DeviceTimeout without a PONG, DeviceProtocolError on a bad one."""
        config: HeartbeatConfig = self.config  # type: ignore[assignment]
        await self.transport.write(protocol.PING)
        self.last_beat = protocol.parse_pong(await self._read_line(config.timeout))
        self.ctx.count("beats")

    async def _read_line(self, timeout: float) -> bytes:
        """One reply line; a reply may arrive split over several reads."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        line = b""
        while not line.endswith(b"\n"):
            if len(line) > protocol.MAX_LINE:
                break  # parse_pong names the overlong reply
            remaining = deadline - loop.time()
            chunk = await self.transport.read(protocol.MAX_LINE + 1, timeout=remaining) if remaining > 0 else b""
            if not chunk:
                raise DeviceTimeout(f"no PONG within {timeout} s" + (f" (got {line!r})" if line else ""))
            line += chunk
        return line
