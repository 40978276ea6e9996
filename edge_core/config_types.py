"""Small validated value types and validation helpers shared by the config models and the drivers.

A driver's ``Config`` (drivers/*/config.py) and the agent's own models
(edge_agent/config.py) both build on these; reading the YAML file and
wording the errors for people is the agent's (edge_agent/config_yaml.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, model_validator

# Names of the local API's clients (api.clients[].name), which devices refer to too.
CLIENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class KeyedError(ValueError):
    """A model-level ValueError about one key below the model (``loc``), so it gets that key's line."""

    def __init__(self, message: str, *loc: str | int):
        super().__init__(message)
        self.loc = loc


class HostPort(BaseModel):
    """``host:port``, written in YAML as one string; IPv6 hosts in brackets: ``[::1]:8080``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, (dict, HostPort)):
            return value
        if not isinstance(value, str):
            raise ValueError(
                f"expected host:port such as 127.0.0.1:8080, got {value!r}; write host and port as one string"
            )
        text = value.strip()
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r} has no port; write host:port, e.g. {text or '127.0.0.1'}:8080")
        if not host.strip("[]"):
            raise ValueError(f"{value!r} has no host; write host:port, e.g. 127.0.0.1:{port or 8080}")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ValueError(f"IPv6 addresses go in brackets: write [{host}]:{port}, not {value!r}")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"port {port!r} in {value!r} is not a number from 1 to 65535; use a port in that range")
        return {"host": host.strip("[]"), "port": int(port)}

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


HostPortStr = Annotated[HostPort, "host:port"]
