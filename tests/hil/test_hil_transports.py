"""Hardware-in-the-loop: the same transports and drivers against real devices.

Each test runs only when its device is named in the environment:

    EDGE_HIL_HEARTBEAT=192.168.1.50:9601   a TCP heartbeat device
    EDGE_HIL_SERIAL_LOOPBACK=/dev/serial/by-id/usb-FTDI_...  a serial port with
                                           TX wired to RX (a loopback plug)

    .venv/bin/pytest tests/hil -m hil
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from drivers.base import DriverContext
from drivers.heartbeat.driver import HeartbeatConfig, HeartbeatSensor
from drivers.transport.serial import SerialTransport
from edge_agent.bus import EventBus

HEARTBEAT = os.environ.get("EDGE_HIL_HEARTBEAT")
SERIAL = os.environ.get("EDGE_HIL_SERIAL_LOOPBACK")

pytestmark = pytest.mark.hil


@pytest.mark.skipif(not HEARTBEAT, reason="no heartbeat device named: set EDGE_HIL_HEARTBEAT=host:port")
def test_real_heartbeat_device_answers():
    async def main():
        cfg = HeartbeatConfig(id="hil-hb", kind="sensor.heartbeat", address=HEARTBEAT)
        driver = HeartbeatSensor(cfg, DriverContext("hil-hb", EventBus(), logging.getLogger("hil")))
        await driver.open()
        try:
            await driver.check()
        finally:
            await driver.close()
        return driver.last_beat

    assert asyncio.run(main()) >= 1


@pytest.mark.skipif(not SERIAL, reason="no loopback serial port named: set EDGE_HIL_SERIAL_LOOPBACK=/dev/...")
def test_real_serial_port_loops_bytes_back():
    payload = bytes(range(256))

    async def main():
        t = SerialTransport(SERIAL, baudrate=115200)
        await t.open()
        try:
            await t.write(payload)
            got = b""
            while len(got) < len(payload):
                chunk = await t.read(4096, timeout=2)
                assert chunk, f"only {len(got)} of {len(payload)} bytes came back"
                got += chunk
        finally:
            await t.close()
        return got

    assert asyncio.run(main()) == payload
