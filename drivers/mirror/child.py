"""The mirror process as the agent holds it: started, read, told the look, stopped by its PID.

Transport only: which messages mean what is the driver's business
(drivers/mirror/driver.py). The process's stderr (its own errors, and
MediaPipe's start-up chatter) is drained continuously, so a full pipe never
stops it, logged at debug level, and its last lines kept for the error
shown when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import deque

from ar_mirror import control
from ar_mirror.control import Error, Look, Ready, Stats
from edge_core.errors import DeviceProtocolError

# Seconds the process gets to exit after SIGTERM before SIGKILL.
TERM_GRACE = 2.0
# The process's environment on top of the agent's: MediaPipe's and OpenCV's
# native logging quietened (its own errors still show), and no .pyc written
# even on a fresh install: the mirror process writes no file at all.
CHILD_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "OPENCV_LOG_LEVEL": "ERROR",
             "PYTHONDONTWRITEBYTECODE": "1"}


class MirrorProcess:
    """One run of ``python -m ar_mirror.process``."""

    def __init__(self, args: list[str], log: logging.Logger):
        self.args = [sys.executable, "-m", "ar_mirror.process", *args]
        self.log = log
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Spawn the process in its own session: a Ctrl-C meant for the agent is the agent's to pass on."""
        self._proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **CHILD_ENV}, start_new_session=True,
            limit=2 * control.MAX_LINE,
        )
        self._drain = asyncio.create_task(self._drain_stderr(), name=f"mirror-stderr:{self._proc.pid}")

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        with contextlib.suppress(ValueError):  # a line over the limit: stop reading, the tail is kept
            while line := await self._proc.stderr.readline():
                text = line.decode(errors="replace").rstrip()
                self.stderr_tail.append(text)
                self.log.debug("mirror process: %s", text)

    async def message(self, timeout: float | None) -> Ready | Stats | Error | None:
        """The next message; None at the end of its output (it exited); TimeoutError after ``timeout`` s."""
        assert self._proc is not None and self._proc.stdout is not None
        async with asyncio.timeout(timeout):
            try:
                line = await self._proc.stdout.readline()
            except ValueError as err:  # the line was over the reader's limit
                raise DeviceProtocolError(f"mirror process wrote an overlong line: {err}") from err
        if not line:
            return None
        try:
            return control.parse_from_mirror(line)
        except ValueError as err:
            raise DeviceProtocolError(f"mirror process wrote {line[:80]!r}: {err}") from err

    def send(self, look: Look) -> None:
        """Tell the process what to draw (a line of a few hundred bytes; the pipe takes it at once)."""
        if self._proc is not None and self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.write(control.encode(look))

    async def wait(self) -> int:
        """Its exit status once it has exited (negative: the signal that ended it)."""
        assert self._proc is not None
        return await self._proc.wait()

    def kill(self) -> None:
        """SIGKILL now: a stalled process may not be able to act on SIGTERM (stopped, or stuck in a driver)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``TERM_GRACE`` s; by its PID, and only if it still runs."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(TERM_GRACE):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._drain), 1.0)
            self._drain.cancel()
        if proc.stdin is not None:
            proc.stdin.close()
