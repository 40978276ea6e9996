"""The messages between the agent and the mirror process: one JSON object per line. No I/O here.

The agent writes ``Look`` lines to the mirror process's stdin (what to draw);
the mirror process writes ``Ready``, then ``Stats`` about twice a second,
and an ``Error`` before it exits on a failure, to its stdout. Nothing here
can carry a frame, a landmark or any other part of a face: only what is
drawn, counters and timings.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

# A line longer than this is not ours: refuse it rather than buffer it.
MAX_LINE = 64 * 1024
# Exit status of the mirror process when its camera is not there (unplugged,
# no such device or file): the device shows ``offline`` instead of ``error``.
EXIT_MISSING = 3

HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
Kind = Literal["lipstick", "eyeshadow", "blush", "glasses", "top", "outerwear"]
# Kinds drawn on the body (pose and person mask) rather than on the face.
BODY_KINDS = frozenset({"top", "outerwear"})
# The joints a garment picture names in its ``fit``: where each falls on the flat garment.
JOINTS = ("shoulder_right", "shoulder_left", "hip_right", "hip_left", "elbow_right", "elbow_left",
          "wrist_right", "wrist_left")
Joint = Literal["shoulder_right", "shoulder_left", "hip_right", "hip_left", "elbow_right", "elbow_left",
                "wrist_right", "wrist_left"]
View = Literal["none", "face", "body"]
Finish = Literal["matte", "satin", "gloss", "shimmer"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Message):
    """One product drawn on the face (a shade for makeup, a frame for glasses) or the body (a garment)."""

    sku: str = Field(min_length=1, max_length=64)
    kind: Kind
    shade: str = Field(default="#000000", description="#rrggbb: the makeup's colour or the glasses' frame")
    opacity: float = Field(default=0.6, ge=0, le=1)
    finish: Finish = "matte"
    # Glasses only: a built-in frame style ("round", "square", "cat-eye") or
    # the path of an RGBA PNG with the centres of its two lenses in ``anchors``.
    style: str = Field(default="round", max_length=200)
    anchors: tuple[tuple[float, float], tuple[float, float]] | None = None
    # Garments only (``style`` is then their RGBA PNG): where the body's joints fall on the flat
    # picture, in its pixels; shoulders and hips are required, elbows and wrists fit the sleeves.
    fit: dict[Joint, tuple[float, float]] | None = None

    @field_validator("shade")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not HEX_COLOUR.match(value):
            raise ValueError(f"shade {value!r} must be a colour written #rrggbb")
        return value.lower()

    def bgr(self) -> tuple[int, int, int]:
        """The shade as OpenCV's (blue, green, red)."""
        r, g, b = (int(self.shade[i:i + 2], 16) for i in (1, 3, 5))
        return b, g, r

    @field_validator("fit")
    @classmethod
    def _fit(cls, value: dict[str, tuple[float, float]] | None) -> dict[str, tuple[float, float]] | None:
        if value is not None:
            missing = [j for j in JOINTS[:4] if j not in value]
            if missing:
                raise ValueError(f"a garment's fit needs {', '.join(missing)}")
        return value


class Look(_Message):
    """What the mirror draws: layers in order, and the before/after split."""

    type: Literal["look"] = "look"
    layers: tuple[Layer, ...] = Field(default=(), max_length=8)
    # Fraction of the picture's width that shows the face without the
    # products (0: all "after", 1: all "before"), on ``compare_side`` of the
    # picture as the mirror process sends it (the screen may show it mirrored).
    compare: float = Field(default=0.0, ge=0, le=1)
    compare_side: Literal["left", "right"] = "left"


class Ready(_Message):
    """The camera is open and the stream listens on ``stream`` (an abstract unix socket)."""

    type: Literal["ready"] = "ready"
    width: int
    height: int
    source: str
    stream: str


class Stats(_Message):
    """Counters since start and someone's presence; the agent's stall watch reads ``captured``.

    ``face`` is true while someone is in front of the mirror (a face, or a
    body in body view); ``view`` is what the mirror draws on ("face": close
    up, "body": shoulders and hips in the picture); ``shoulder_cm`` the
    customer's estimated shoulder width in whole centimetres, in body view
    only, for the size suggestion (a number, never a picture or landmark).
    """

    type: Literal["stats"] = "stats"
    captured: int = 0
    processed: int = 0
    encoded: int = 0
    face: bool = False
    fps: float = 0.0
    latency_ms: float = 0.0
    clients: int = 0
    view: View = "none"
    shoulder_cm: int | None = None


class Error(_Message):
    """Why the mirror process is about to exit; ``missing`` when the camera is not there."""

    type: Literal["error"] = "error"
    message: str
    missing: bool = False


FromMirror = Annotated[Ready | Stats | Error, Field(discriminator="type")]
_FROM_MIRROR: TypeAdapter[Ready | Stats | Error] = TypeAdapter(FromMirror)


def encode(message: _Message) -> bytes:
    """One message as a line of JSON."""
    return message.model_dump_json().encode() + b"\n"


def parse_from_mirror(line: bytes) -> Ready | Stats | Error:
    """A line the mirror process wrote; ValueError if it is not one of its messages."""
    if len(line) > MAX_LINE:
        raise ValueError(f"line of {len(line)} bytes is longer than {MAX_LINE}")
    return _FROM_MIRROR.validate_json(line)


def parse_look(line: bytes) -> Look:
    """A line the agent wrote; ValueError if it is not a look."""
    if len(line) > MAX_LINE:
        raise ValueError(f"line of {len(line)} bytes is longer than {MAX_LINE}")
    return Look.model_validate_json(line)
