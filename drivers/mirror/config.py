"""devices.yaml keys of ``mirror.camera``: the try-on mirror's camera, screen client and products."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from drivers.base import DeviceConfig
from edge_core.config_types import CLIENT_NAME_PATTERN


class MirrorConfig(DeviceConfig):
    """devices.yaml keys of ``mirror.camera``."""

    kind: Literal["mirror.camera"]
    source: str = Field(
        min_length=1, max_length=500,
        description="synthetic (the demo face), synthetic-body (the demo customer stepped back, for clothes), "
                    "a camera: /dev/v4l/by-id/... (stable) or an index such as 0, or a video file, which loops")
    station: str = Field(pattern=CLIENT_NAME_PATTERN,
                         description="the api client (role mirror) that is this mirror's screen")
    kiosk: str | None = Field(default=None, pattern=CLIENT_NAME_PATTERN,
                              description="the api client (role kiosk) of the counter's kiosk: \"Add to basket\" "
                                          "puts products in its session's basket; without it, in the mirror's own")
    width: int = Field(default=1280, ge=160, le=3840)
    height: int = Field(default=720, ge=120, le=2160)
    fps: float = Field(default=30.0, gt=0, le=120)
    jpeg_quality: int = Field(default=80, ge=30, le=95, description="of the stream to the screen")
    mirror: bool = Field(default=True, description="show the picture mirrored, as a mirror does")
    products: Path | None = Field(default=None, description="try-on products file; the packaged one if left out")
    session_gap: float = Field(default=10.0, gt=0, le=600,
                               description="seconds without a face that end a try-on session")
    stall_timeout: float = Field(default=5.0, gt=0, le=120,
                                 description="seconds without a new camera frame before the mirror restarts")
    start_timeout: float = Field(default=30.0, gt=0, le=300,
                                 description="seconds the mirror process may take to load its model and camera")

    def clients(self) -> list[tuple[str, str, tuple[str | int, ...]]]:
        """The mirror's screen, which must be a mirror client, and the kiosk it sends its basket to, a kiosk client."""
        named: list[tuple[str, str, tuple[str | int, ...]]] = [(self.station, "mirror", ("station",))]
        return named + [(self.kiosk, "kiosk", ("kiosk",))] if self.kiosk else named

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value.strip() != value or "\n" in value:
            raise ValueError("source must be one word or path, without surrounding spaces")
        return value
