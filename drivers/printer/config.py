"""devices.yaml keys of ``printer.escpos`` and the transport each connection gets.

One driver for every wire: ``connection`` says which keys apply (tcp:
``address``; serial: ``port`` and its line settings; usb: ``usb`` and its
optional serial number, interface and endpoints). A key of another
connection is an error, not silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from drivers.base import DeviceConfig
from drivers.printer.profiles import get_profile
from drivers.transport import Transport
from drivers.transport.serial import SerialTransport
from drivers.transport.tcp import TcpTransport
from drivers.transport.usb import UsbTransport
from edge_core.config_types import CLIENT_NAME_PATTERN, HostPort, KeyedError

# Raw printing on a network printer: "port 9100" (HP JetDirect, Epson, Star, Xprinter).
DEFAULT_TCP_PORT = 9100
_KEYS: dict[str, tuple[str, ...]] = {
    "tcp": ("address",),
    "serial": ("port", "baudrate", "bytesize", "parity", "stopbits", "flow_control"),
    "usb": ("usb", "usb_serial", "usb_interface", "usb_in_ep", "usb_out_ep"),
}
_REQUIRED = {"tcp": "address", "serial": "port", "usb": "usb"}
_EXAMPLE = {"tcp": "address: 192.168.1.50:9100", "serial": "port: /dev/serial/by-id/...",
            "usb": 'usb: "04b8:0202"'}


class PrinterConfig(DeviceConfig):
    """devices.yaml keys of ``printer.escpos``."""

    kind: Literal["printer.escpos"]
    connection: Literal["tcp", "serial", "usb"] = Field(description="how the printer is attached")
    # tcp
    address: HostPort | None = Field(default=None, description="host[:port] of a network printer; port 9100 if left out")
    # serial
    port: str | None = Field(default=None, min_length=1, description="serial port, best /dev/serial/by-id/...")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["none", "even", "odd"] = "none"
    stopbits: Literal[1, 2] = 1
    flow_control: Literal["none", "rtscts", "dsrdtr", "xonxoff"] = Field(
        default="none", description="as set on the printer's DIP switches or in its utility")
    # usb
    usb: str | None = Field(default=None, description='vendor and product id, "VID:PID" in hex as lsusb shows them')
    usb_serial: str | None = Field(default=None, min_length=1, max_length=128,
                                   description="the USB serial number, to tell two printers of one model apart")
    usb_interface: int = Field(default=0, ge=0, le=31)
    usb_in_ep: int | None = Field(default=None, ge=0x81, le=0x8F, description="bulk IN endpoint; found if left out")
    usb_out_ep: int | None = Field(default=None, ge=0x01, le=0x0F, description="bulk OUT endpoint; found if left out")
    # every connection
    profile: str = Field(default="epson-tm-t88", description="printer model as data: drivers/printer/profiles.yaml")
    station: str | None = Field(default=None, pattern=CLIENT_NAME_PATTERN,
                                description="the api client (kiosk, counter) whose receipts print here")
    receipt_url: str | None = Field(
        default=None, max_length=500,
        description="e-receipt link printed as a QR code; {sale_id} and {store} are filled in")
    pick_tickets: bool = Field(default=False,
                               description="print a pick ticket here for each pickup order the hub sends")
    return_slips: bool = Field(
        default=False, description="print here the return slips of clients without a printer of their own "
                                   "(an associate's PAD, a kiosk without one): the service desk's printer")
    status_timeout: float = Field(default=1.0, gt=0, le=10, description="seconds to wait for a DLE EOT reply")
    paper_check_interval: float = Field(default=1.0, gt=0, le=60,
                                        description="seconds between status polls while the printer needs someone")

    @field_validator("address", mode="before")
    @classmethod
    def _default_port(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            bare_v6 = text.startswith("[") and text.endswith("]")
            if bare_v6 or (":" not in text and text):
                return f"{text}:{DEFAULT_TCP_PORT}"
        return value

    @field_validator("usb")
    @classmethod
    def _vid_pid(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}", value):
            raise ValueError(f"{value!r} is not VID:PID; write the two 4-digit hex ids as lsusb shows them, "
                             'in quotes, e.g. "04b8:0202"')
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        get_profile(value)  # UnknownProfile (a ValueError) lists the known ones
        return value

    @field_validator("receipt_url")
    @classmethod
    def _url_template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} must start with https:// (or http://)")
        if "{sale_id}" not in value:
            raise ValueError(f"{value!r} has no {{sale_id}}; write e.g. https://r.example.com/{{store}}/{{sale_id}}")
        try:
            value.format(sale_id="x", store="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"{value!r}: only {{sale_id}} and {{store}} may appear in braces ({err})") from err
        return value

    @model_validator(mode="after")
    def _keys_of_the_connection(self) -> "PrinterConfig":
        required = _REQUIRED[self.connection]
        if getattr(self, required) is None:
            raise KeyedError(f"connection {self.connection} needs {required}; add e.g. '{_EXAMPLE[self.connection]}'",
                             required)
        for other, keys in _KEYS.items():
            if other == self.connection:
                continue
            for key in keys:
                if key in self.model_fields_set:
                    raise KeyedError(f"{key} is for connection {other}, this printer's connection is "
                                     f"{self.connection}; remove {key} or change connection", key)
        return self

    def receipt_link(self, sale_id: str, store: str) -> str | None:
        """The e-receipt URL of one sale, or None when none is configured."""
        return self.receipt_url.format(sale_id=sale_id, store=store) if self.receipt_url else None

    def transport(self) -> Transport:
        """The transport of this printer's connection (nothing is opened here)."""
        if self.connection == "tcp":
            assert self.address is not None
            return TcpTransport(self.address.host, self.address.port)
        if self.connection == "serial":
            assert self.port is not None
            return SerialTransport(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits,
                                   rtscts=self.flow_control == "rtscts", dsrdtr=self.flow_control == "dsrdtr",
                                   xonxoff=self.flow_control == "xonxoff")
        assert self.usb is not None
        vendor, product = (int(part, 16) for part in self.usb.split(":"))
        return UsbTransport(vendor, product, serial=self.usb_serial, interface=self.usb_interface,
                            in_ep=self.usb_in_ep, out_ep=self.usb_out_ep)
