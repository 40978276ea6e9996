"""Small validated value types shared by the config models and the drivers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, model_validator


class HostPort(BaseModel):
    """``host:port``, written in YAML as one string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {value!r}")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"port must be a number from 1 to 65535, got {port!r}")
        return {"host": host.strip("[]"), "port": int(port)}

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


HostPortStr = Annotated[HostPort, "host:port"]
