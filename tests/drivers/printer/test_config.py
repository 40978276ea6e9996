"""devices.yaml keys of printer.escpos: each connection's keys, defaults, and errors with their line."""

from __future__ import annotations

import pytest

from drivers.printer.config import PrinterConfig
from drivers.transport.serial import SerialTransport
from drivers.transport.tcp import TcpTransport
from drivers.transport.usb import UsbTransport
from edge_agent.config import parse
from edge_core.errors import ConfigError

HEAD = """store: {id: store-1, name: S}
devices:
  - id: printer-1
    kind: printer.escpos
"""


def problems(keys: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(HEAD + keys, "devices.yaml", environ={})
    return err.value.problems


def printer(keys: str) -> PrinterConfig:
    return parse(HEAD + keys, "devices.yaml", environ={}).devices[0]  # type: ignore[return-value]


def test_tcp_defaults_to_port_9100():
    cfg = printer("    connection: tcp\n    address: 192.168.1.50\n")
    assert (cfg.address.host, cfg.address.port) == ("192.168.1.50", 9100)
    assert (cfg.profile, cfg.status_timeout, cfg.paper_check_interval) == ("epson-tm-t88", 1.0, 1.0)
    t = cfg.transport()
    assert isinstance(t, TcpTransport) and (t.host, t.port) == ("192.168.1.50", 9100)
    assert printer("    connection: tcp\n    address: 10.0.0.9:9101\n").address.port == 9101


def test_serial_and_usb_transports():
    cfg = printer("    connection: serial\n    port: /dev/serial/by-id/usb-EPSON\n    baudrate: 38400\n"
                  "    flow_control: rtscts\n")
    t = cfg.transport()
    assert isinstance(t, SerialTransport) and t.settings["baudrate"] == 38400 and t.settings["rtscts"] is True
    cfg = printer('    connection: usb\n    usb: "04B8:0202"\n    usb_serial: X1\n    usb_out_ep: 1\n')
    t = cfg.transport()
    assert isinstance(t, UsbTransport)
    assert (t.vendor, t.product, t.serial, t.out_ep, t.in_ep) == (0x04B8, 0x0202, "X1", 1, None)


def test_receipt_url_is_a_template():
    cfg = printer("    connection: tcp\n    address: h\n    receipt_url: https://r.example.com/{store}/{sale_id}\n")
    assert cfg.receipt_link("S1", "store-1") == "https://r.example.com/store-1/S1"
    assert printer("    connection: tcp\n    address: h\n").receipt_link("S1", "store-1") is None


@pytest.mark.parametrize(("keys", "line", "fragment"), [
    ("    connection: tcp\n", 3, "connection tcp needs address; add e.g. 'address: 192.168.1.50:9100'"),
    ("    connection: usb\n    usb: 4b8:202\n", 6, "'4b8:202' is not VID:PID"),
    ("    connection: tcp\n    address: h\n    port: /dev/ttyS0\n", 7,
     "port is for connection serial, this printer's connection is tcp"),
    ("    connection: tcp\n    address: h\n    profile: epson-tm-t99\n", 7,
     "unknown printer profile 'epson-tm-t99'; known profiles: epson-tm-t20, epson-tm-t88"),
    ("    connection: tcp\n    address: h\n    receipt_url: https://r.example.com/\n", 7, "has no {sale_id}"),
    ("    connection: tcp\n    address: h\n    receipt_url: https://r/{sale_id}/{sale}\n", 7, "only {sale_id} and {store}"),
    ("    connection: tcp\n    address: h\n    papr_check_interval: 2\n", 7, "did you mean 'paper_check_interval'"),
    ("    connection: bluetooth\n", 5, "connection"),
    ("    address: h\n", 3, "connection is required"),
])
def test_bad_keys_are_named_with_their_line(keys, line, fragment):
    (problem,) = problems(keys)
    assert problem.startswith(f"devices.yaml:{line}: "), problem
    assert fragment in problem, problem

