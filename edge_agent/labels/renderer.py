"""Drawing labels away from the event loop: in a worker process, in batches.

A thread drawing would share the GIL with the event loop: every socket call
of the loop then waits up to the interpreter's switch interval (5 ms) to get
it back, which slows pushes and the API alike during a re-price. A worker
process draws on its own core. Requests that arrive while the worker is busy
go to it together (up to ``batch`` at a time, two batches in flight), so that
during a re-price the worker always has the next labels at hand instead of
waiting for the agent, busy with its uploads, to hand it one more; a single
label (an associate binding one) still goes at once. The worker is started on
first use, again if it dies, and leaves when the agent dies.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from PIL import Image

from edge_agent.labels.plan import Desired, draw

log = logging.getLogger(__name__)

Drawn = tuple[Image.Image | bytes, Desired]


def draw_batch(items: list[tuple[Desired, str]]) -> list[Drawn | Exception]:
    """Runs in the worker: plan.draw of each item, or the error it raised."""
    out: list[Drawn | Exception] = []
    for desired, picture in items:
        try:
            out.append(draw(desired, picture))
        except Exception as err:  # noqa: BLE001 - handed back to the label it belongs to
            out.append(err)
    return out


class Renderer:
    """Draws in ``processes`` worker processes (0: one thread, for tests)."""

    def __init__(self, processes: int = 1, batch: int = 16):
        self.processes = processes
        self.batch = batch
        self.max_inflight = 2 * max(1, processes)
        self._pool: Executor | None = None
        self._waiting: list[tuple[Desired, str, asyncio.Future[Drawn]]] = []
        self._inflight = 0
        self.batches = 0

    def _executor(self) -> Executor:
        if self._pool is None:
            if self.processes > 0:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_quiet_worker, initargs=(os.getpid(),))
            else:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="label-render")
        return self._pool

    async def draw(self, desired: Desired, picture: str = "image") -> Drawn:
        """The picture of ``desired`` (plan.draw) as the driver takes it."""
        future: asyncio.Future[Drawn] = asyncio.get_running_loop().create_future()
        self._waiting.append((desired, picture, future))
        self._pump()
        return await future

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self._inflight < self.max_inflight:
            batch, self._waiting = self._waiting[:self.batch], self._waiting[self.batch:]
            batch = [item for item in batch if not item[2].cancelled()]
            if not batch:
                continue
            self._inflight += 1
            self.batches += 1
            try:
                done = loop.run_in_executor(self._executor(), draw_batch, [(d, p) for d, p, _ in batch])
            except RuntimeError as err:  # the pool is shut down
                self._inflight -= 1
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            done.add_done_callback(lambda f, batch=batch: self._finished(f, batch))

    def _finished(self, done: asyncio.Future[list[Any]], batch: list[tuple[Desired, str, asyncio.Future[Drawn]]]) -> None:
        self._inflight -= 1
        if done.cancelled():
            results: list[Any] = [asyncio.CancelledError()] * len(batch)
        elif isinstance(done.exception(), BrokenExecutor):
            log.warning("labels: the render worker died; starting another")
            self._pool = None
            self._waiting[:0] = [item for item in batch if not item[2].done()]  # drawn again
            results = []
        elif done.exception() is not None:
            results = [done.exception()] * len(batch)
        else:
            results = done.result()
        for (_, _, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._pump()

    def close(self) -> None:
        """Stop the worker (blocks until it is gone: call it in a thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _quiet_worker(agent: int) -> None:
    """Set up a render worker: Ctrl-C is the agent's to handle, and the worker goes with the agent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_follow_parent, args=(agent,), name="parent-watch", daemon=True).start()


def _follow_parent(agent: int) -> None:
    # A pool worker holds both ends of its task pipe, so it never sees EOF when the agent is
    # killed (kill -9, a crash) and would wait for ever: leave once the agent is gone, even
    # if that happened while the worker was still starting (the pid comes from the agent).
    while os.getppid() == agent:
        time.sleep(1.0)
    os._exit(0)
