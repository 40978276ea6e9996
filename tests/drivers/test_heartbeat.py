"""The heartbeat sensor: protocol, driver over the simulated link, driver over TCP."""

from __future__ import annotations

import asyncio
import logging

import pytest

from drivers.base import DriverContext
from drivers.heartbeat import protocol
from drivers.heartbeat.driver import HeartbeatConfig, HeartbeatSensor
from drivers.heartbeat.emulator import HeartbeatEmulator
from drivers.transport.fake import FakeTransport
from drivers.transport.tcp import TcpTransport
from edge_agent.bus import EventBus
from edge_core.errors import DeviceMissing, DeviceProtocolError, DeviceTimeout, TransportClosed


def run(coro, timeout: float = 60.0):
    """Run one test coroutine on a fresh loop, failing instead of hanging (generous: a busy machine is no failure)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def make(transport=None, **keys) -> HeartbeatSensor:
    cfg = HeartbeatConfig(id="hb-1", kind="sensor.heartbeat", **keys)
    ctx = DriverContext(cfg.id, EventBus(), logging.getLogger("test.heartbeat"))
    return HeartbeatSensor(cfg, ctx, transport)


# Protocol ------------------------------------------------------------------


@pytest.mark.parametrize("line, beat", [(b"PONG 1\n", 1), (b"PONG 0042\r\n", 42), (b"PONG 7", 7)])
def test_parse_pong_reads_the_counter(line, beat):
    assert protocol.parse_pong(line) == beat


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"PING\n",
        b"PONG\n",
        b"PONG x\n",
        b"PONG -1\n",
        b"PONG 1 2\n",
        b"pong 1\n",
        b"PONG  1\n",
        b"\x00\xff\xfe\n",
        "PONG ٣\n".encode(),  # an Arabic-Indic digit: a digit, but not ASCII
        "PONG ５\n".encode(),  # a full-width digit
        b"PONG " + b"9" * 100 + b"\n",  # overlong
    ],
)
def test_parse_pong_rejects_anything_else(line):
    with pytest.raises(DeviceProtocolError):
        protocol.parse_pong(line)


def test_pong_bytes():
    assert protocol.PING == b"PING\n"
    assert protocol.pong(3) == b"PONG 3\n"
    assert protocol.parse_pong(protocol.pong(123456)) == 123456


# Driver over the built-in simulated device --------------------------------


def test_simulated_device_answers_and_counts_beats():
    async def main():
        d = make()
        assert isinstance(d.transport, FakeTransport)
        await d.open()
        await d.check()
        await d.check()
        assert bytes(d.transport.written) == b"PING\n" * 3  # open pings once too
        assert d.last_beat == 3
        assert d.ctx.counters == {"beats": 3}
        await d.close()
        await d.close()

    run(main())


def test_driver_with_given_transport_times_out_without_pong():
    async def main():
        t = FakeTransport("tcp")  # answers nothing
        d = make(t, timeout=0.05)
        with pytest.raises(DeviceTimeout):
            await d.open()
        assert bytes(t.written) == b"PING\n"

    run(main())


def test_driver_reads_a_pong_split_over_reads():
    async def main():
        def reply_in_pieces(data: bytes) -> bytes:
            t.feed(b"PO")
            t.feed(b"NG 9")
            return b"\n"

        t = FakeTransport("serial", replies=reply_in_pieces)
        d = make(t, timeout=10)
        await t.open()
        await d.check()
        assert d.last_beat == 9

    run(main())


def test_driver_rejects_garbage_and_overlong_replies():
    async def main():
        d = make(FakeTransport(replies={protocol.PING: b"HELLO\n"}), timeout=1)
        with pytest.raises(DeviceProtocolError):
            await d.open()
        d = make(FakeTransport(replies={protocol.PING: b"PONG " + b"1" * 80}), timeout=1)
        with pytest.raises(DeviceProtocolError):
            await d.open()
        assert d.ctx.counters == {}

    run(main())


def test_driver_sees_an_unplug():
    async def main():
        d = make()
        await d.open()
        d.transport.unplug()
        with pytest.raises(TransportClosed):
            await d.check()
        with pytest.raises(DeviceMissing):
            await d.open()

    run(main())


def test_busy_outside_a_supervisor_does_nothing():
    async def main():
        d = make()
        async with d.busy():
            pass

    run(main())


# Driver over TCP against the emulator ---------------------------------------


def test_driver_with_address_uses_tcp_to_the_emulator():
    async def main():
        emu = HeartbeatEmulator()
        await emu.start()
        d = make(address=f"127.0.0.1:{emu.port}", timeout=10)
        assert isinstance(d.transport, TcpTransport)
        await d.open()
        await d.check()
        assert d.last_beat == 2
        assert emu.beats == 2
        await d.close()
        await emu.stop()

    run(main())


def test_muted_emulator_is_a_timeout_on_check():
    async def main():
        emu = HeartbeatEmulator()
        await emu.start()
        d = make(address=f"127.0.0.1:{emu.port}", timeout=0.1)
        await d.open()
        emu.mute = True
        with pytest.raises(DeviceTimeout):
            await d.check()
        assert emu.beats == 1
        await d.close()
        await emu.stop()

    run(main())


def test_stopped_emulator_is_a_dropped_link_then_missing():
    async def main():
        emu = HeartbeatEmulator()
        await emu.start()
        d = make(address=f"127.0.0.1:{emu.port}", timeout=10)
        await d.open()
        await emu.stop()
        with pytest.raises(TransportClosed):
            await d.check()
        with pytest.raises(DeviceMissing):
            await d.open()

    run(main())
