"""The root of the one error tree: what drivers and the agent raise on purpose.

    EdgeError                      anything we raise on purpose
    ├── ConfigError                devices.yaml or the environment is wrong
    ├── StoreError                 (edge_agent/errors.py) the local SQLite store failed
    │   └── StoreClosed            a write was submitted after stop()
    ├── DeviceError                a device failed; the supervisor retries it
    │   ├── DeviceMissing          not there (unplugged, no such port, refused)
    │   ├── DeviceTimeout          there, but did not answer in time
    │   └── DeviceProtocolError    answered, but with bytes that make no sense
    └── TransportClosed            (a DeviceError too) the link dropped mid-use

The store's branch lives with the store, in edge_agent/errors.py; everything
else is here so that a driver raises it without importing the agent.

Third-party exceptions (OSError, serial.SerialException, usb.core.USBError,
sqlite3.Error) are mapped onto this tree at the boundary where they occur,
always with ``raise ... from err``.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error we raise on purpose."""


class ConfigError(EdgeError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class DeviceError(EdgeError):
    """A device failed; the supervisor marks it and retries with backoff."""


class DeviceMissing(DeviceError):
    """The device is not there: unplugged, no such port, connection refused."""


class DeviceTimeout(DeviceError):
    """The device is there but did not answer in time."""


class DeviceProtocolError(DeviceError):
    """The device answered with bytes that do not parse."""


class TransportClosed(DeviceError):
    """The link to the device dropped while in use."""
