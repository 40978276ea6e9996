"""devices.yaml keys of ``display.pole``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers.base import DeviceConfig
from drivers.display.protocol import Protocol


class PoleDisplayConfig(DeviceConfig):
    """A 2x20 pole display on a serial port, showing one station's scans and sale."""

    kind: Literal["display.pole"]
    port: str = Field(min_length=1, max_length=4096,
                      description="the port, best /dev/serial/by-id/...; a relative path is relative to the "
                                  "agent's working directory")
    baudrate: Literal[2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    protocol: Protocol = Field(default=Protocol.CD5220, description="cd5220 or epson (DM-D): the display's command set")
    station: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                         description="the kiosk whose scans and sales it shows (an api client of role kiosk)")
    thank_you_s: float = Field(default=5.0, ge=0.5, le=600,
                               description="seconds \"Thank you\" stays after a sale before the screen clears")

    def clients(self) -> list[tuple[str, str, tuple[str | int, ...]]]:
        """Its station is a kiosk of the api's clients."""
        return [(self.station, "kiosk", ("station",))]
