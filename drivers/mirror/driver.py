"""The try-on mirror (kind ``mirror.camera``): its own process, watched like any device.

``open`` starts ``python -m ar_mirror.process`` and waits for it to say its
camera and model are ready; ``run`` reads its stats. The process exiting
(a crash, a kill, an unplugged camera) or its camera giving no new frame for
``stall_timeout`` s ends the session with a DeviceError, and the supervisor
starts a new process after its backoff: the agent itself never holds a
frame, so nothing of it is touched. The look being drawn, the try-on session
and the basket live here, in the agent, and survive such a restart.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from ar_mirror import control
from ar_mirror.control import Error, Layer, Look, Ready, Stats
from ar_mirror.products import DEFAULT_FILE, TryOn, load
from drivers.base import Driver, DriverContext, Reporting
from drivers.mirror.child import MirrorProcess
from drivers.mirror.config import MirrorConfig
from drivers.mirror.session import Basket, BasketLine, Channel, Ordered, SessionTracker
from edge_core.errors import DeviceError, DeviceMissing, DeviceProtocolError, DeviceTimeout

# Bus events: a try-on session ended (its ``retail.tryon.session`` data), the basket changed.
SESSION_ENDED = "mirror.session.ended"
BASKET_CHANGED = "mirror.basket"


class StallWatch:
    """Time since the camera's frame counter last moved."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic):
        self.timeout = timeout
        self.clock = clock
        self.frames = -1
        self.since = clock()

    def saw(self, frames: int) -> None:
        """The counter now; progress resets the clock."""
        if frames > self.frames:
            self.frames, self.since = frames, self.clock()

    def remaining(self) -> float:
        """Seconds left before the camera counts as stalled (0 or less: it has)."""
        return self.timeout - (self.clock() - self.since)


class MirrorCamera(Driver):
    """Runs the mirror process; holds the look, the try-on session and the basket."""

    kind = "mirror.camera"
    health_fields = ("starts", "sessions")
    Config = MirrorConfig
    capabilities = frozenset({"camera", "tryon", "stream"})
    commands = frozenset({"end_session"})
    reporting = Reporting.PUSH
    # check() ends the session of a customer who left, between stats too.
    check_interval = 1.0
    # A crashed mirror is back within seconds: the customer is standing there.
    retry_cap = 5.0

    def __init__(self, config: MirrorConfig, ctx: DriverContext):
        super().__init__(config, ctx)
        self.op_timeout = config.start_timeout
        self.look = Look()
        self.ready: Ready | None = None
        self.stats: Stats | None = None
        self.sessions = SessionTracker(config.id, config.station, config.session_gap)
        self.basket = Basket()
        self._tryons: dict[str, TryOn] | None = None
        self._proc: MirrorProcess | None = None

    @property
    def cfg(self) -> MirrorConfig:
        """This mirror's devices.yaml entry."""
        return self.config  # type: ignore[return-value]

    @property
    def pid(self) -> int | None:
        """The mirror process's id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def stream_name(self) -> str | None:
        """The abstract socket of the stream while the mirror is ready."""
        return self.ready.stream if self.ready is not None else None

    def tryons(self) -> dict[str, TryOn]:
        """The try-on products file, read once; DeviceError if it is wrong."""
        if self._tryons is None:
            try:
                self._tryons = load(self.cfg.products or DEFAULT_FILE)
            except ValueError as err:
                raise DeviceError(str(err)) from err
        return self._tryons

    async def open(self) -> None:
        """Start the mirror process; return once its camera and model are ready."""
        cfg = self.cfg
        self.tryons()
        stream = f"edge-agent/mirror/{cfg.id}/{secrets.token_hex(8)}"
        proc = MirrorProcess(["--source", cfg.source, "--stream", stream, "--width", str(cfg.width),
                              "--height", str(cfg.height), "--fps", str(cfg.fps),
                              "--jpeg-quality", str(cfg.jpeg_quality)], self.ctx.log)
        self._proc = proc
        await proc.start()
        message = await proc.message(timeout=None)  # the supervisor bounds open() by op_timeout
        if not isinstance(message, Ready):
            raise await self._exit_error(proc, message)
        self.ready = message
        proc.send(self.look)  # a restarted mirror draws what the customer had picked
        self.ctx.count("starts")

    async def run(self) -> None:
        """Read the mirror's stats until it exits or its camera stalls."""
        cfg = self.cfg
        proc = self._proc
        assert proc is not None
        watch = StallWatch(cfg.stall_timeout)
        while True:
            left = watch.remaining()
            if left <= 0:
                proc.kill()
                raise DeviceTimeout(f"camera stalled: no new frame for {cfg.stall_timeout:g} s")
            try:
                message = await proc.message(timeout=left)
            except TimeoutError:
                continue  # the next turn reports the stall
            if message is None or isinstance(message, Error):
                raise await self._exit_error(proc, message)
            if isinstance(message, Stats):
                self.stats = message
                watch.saw(message.captured)
                self._ended(self.sessions.face(message.face, message.view == "body"))

    async def _exit_error(self, proc: MirrorProcess, message: Any) -> DeviceError:
        """Why the mirror process stopped, once it has exited: offline for a missing camera, else error."""
        if isinstance(message, Error):
            await proc.stop()  # it exits by itself after an Error; make sure
            return (DeviceMissing if message.missing else DeviceError)(message.message)
        if message is not None:
            return DeviceProtocolError(f"mirror process said {type(message).__name__} before it was ready")
        status = await proc.wait()
        if status == control.EXIT_MISSING:
            return DeviceMissing(f"camera {self.cfg.source!r} is not there")
        if status < 0:
            try:
                how = f"was killed by {signal.Signals(-status).name}"
            except ValueError:
                how = f"was killed by signal {-status}"
        else:
            how = f"exited with status {status}"
        tail = f": {proc.stderr_tail[-1]}" if proc.stderr_tail else ""
        return DeviceError(f"mirror process {how}{tail}")

    async def check(self) -> None:
        """End the session of a customer who has left."""
        self._ended(self.sessions.tick())

    async def close(self) -> None:
        """Stop the mirror process (SIGTERM, then SIGKILL); safe to call twice."""
        proc, self._proc = self._proc, None
        self.ready = self.stats = None
        if proc is not None:
            await proc.stop()
        self._ended(self.sessions.face(False, False))  # no one is known while the camera is down

    async def command(self, action: str, args: dict[str, Any]) -> Any:
        """``end_session``: end the current try-on session now."""
        if action != "end_session":
            raise NotImplementedError(action)
        return {"ended": self.end_session("hub") is not None}

    # What the mirror's screen asks for (edge_agent/api/routers/mirror.py) -------

    def set_look(self, layers: list[Layer], compare: float = 0.0, side: str = "left") -> Look:
        """Draw ``layers`` from now on, with ``compare`` of the picture left as it was."""
        self.look = Look(layers=tuple(layers), compare=compare, compare_side=side)  # type: ignore[arg-type]
        self.sessions.look({layer.sku: layer.kind for layer in layers}, compare > 0)
        if self._proc is not None:
            self._proc.send(self.look)
        return self.look

    def add_to_basket(self, sku: str, qty: int, channel: Channel) -> BasketLine:
        """Put a product in the basket, for this try-on session."""
        line = BasketLine(sku, qty, channel, self.sessions.session_id)
        self.basket.add(line)
        self.sessions.added(line)
        self._basket_changed()
        return line

    def sent_to_kiosk(self, sku: str, qty: int) -> BasketLine:
        """Record, for this try-on session, a product put in the basket of the mirror's kiosk (``kiosk:``)."""
        line = BasketLine(sku, qty, "store", self.sessions.session_id, self.cfg.kiosk)
        self.sessions.added(line)
        return line

    def ordered(self, order_id: str, lines: list[tuple[str, int]]) -> None:
        """Record, for this try-on session, a pickup order placed online from the mirror."""
        self.sessions.ordered(Ordered(order_id, tuple(lines)))

    def clear_basket(self) -> None:
        """Empty the basket (paid at a kiosk, or started over)."""
        self.basket.clear()
        self._basket_changed()

    def end_session(self, reason: str = "done") -> dict[str, Any] | None:
        """End the try-on session now; its event data, if there was anything to report."""
        data = self.sessions.end(reason)
        self._ended(data)
        return data

    def _basket_changed(self) -> None:
        cfg = self.cfg
        self.ctx.bus.publish(BASKET_CHANGED, {"device": cfg.id, "station": cfg.station, **self.basket.as_dict()})

    def _ended(self, data: dict[str, Any] | None) -> None:
        """Report an ended session, and clear the look for the next customer."""
        if self.sessions.session is None and self.look.layers:
            self.set_look([])
        if data is None:
            return
        self.ctx.count("sessions")
        self.ctx.bus.publish(SESSION_ENDED, data)
