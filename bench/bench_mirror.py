"""The try-on mirror's frame pipeline (capture, track, draw, encode) against bare face-mesh inference.

Frames: the synthetic camera's moving face (scikit-image's astronaut photo,
swaying, nodding, leaning in and out, tilting), rendered beforehand at
640x480 and at 1280x720 and played forwards then backwards so the motion
has no jump; the face is a third of the frame's height. "Capture" hands the
pipeline a fresh copy of each frame, as a camera driver does with its
buffer. The look is a matte lipstick and round glasses.

Pipeline: ``ar_mirror.runner.MirrorRunner`` exactly as the mirror process
runs it (capture, track, draw + JPEG encode at quality 80 on three threads,
one-frame hand-overs), here with hand-overs that wait instead of dropping,
so that every frame is counted, and as fast as it goes. Tracking is the
mirror's own: the long-range detector once, then the face mesh in a 256x256
window that follows the face, then One Euro smoothing.

Baseline, same run, same frames: MediaPipe's face mesh alone
(``FaceMesh.process`` in tracking mode on each full frame, already RGB):
the bare inference the mirror is built on. Targets: at least 30 frames/s at
1280x720, and a per-frame time of the whole pipeline at most 2x the bare
inference's (ratio at least 0.5).

Latency is measured apart, live: the frames paced at 30 fps and hand-overs
that keep the newest frame, capture to JPEG ready, p50 and p99. One row
gives the pipeline on one thread (what the three threads buy) and one a
look of all four kinds. ``--quick``: 60 frames per run, one round (about
20 s); default: 300 frames, median of three rounds (about a minute).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np

from common import Row, check_row, machine, percentile, row, script_main

from ar_mirror import synthetic
from ar_mirror.control import Look
from ar_mirror.mediapipe_tracker import MediapipeTracker, _face_solutions
from ar_mirror.pipeline import Pipeline
from ar_mirror.products import load
from ar_mirror.runner import MirrorRunner, encode_jpeg

BENCH = "mirror"
SIZES = ((640, 480), (1280, 720))
DISTINCT = 30  # frames rendered per size: 83 MB at 720p, played forwards and back
LIVE_FPS = 30.0


@dataclass(frozen=True)
class Plan:
    """Frames per run and rounds (the median of the rounds is reported)."""

    frames: int
    rounds: int


DEFAULT = Plan(frames=300, rounds=3)
QUICK = Plan(frames=60, rounds=1)


class Replay:
    """A FrameSource over frames made beforehand, each read a fresh copy; paced if ``fps`` is set."""

    def __init__(self, frames: list[np.ndarray], fps: float | None = None):
        self.frames, self.fps = frames, fps
        self.size, self.name = (frames[0].shape[1], frames[0].shape[0]), "replay"
        self._i = 0
        self._next = time.monotonic()

    def read(self) -> np.ndarray:
        if self.fps:
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # a camera's frame interval
            self._next += 1 / self.fps
        n = len(self.frames)
        k = self._i % (2 * n - 2)
        self._i += 1
        return self.frames[k if k < n else 2 * n - 2 - k].copy()

    def close(self) -> None:
        pass


def cpu_seconds() -> float:
    """User and system CPU this process has used so far, every thread counted."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def looks() -> tuple[Look, Look]:
    """The benchmark's look (lipstick and glasses) and one with all four kinds."""
    tryons = load()
    layer = {t.kind: t.layer(sku) for sku, t in tryons.items()}
    return (Look(layers=(layer["lipstick"], layer["glasses"])),
            Look(layers=tuple(layer[k] for k in ("blush", "eyeshadow", "lipstick", "glasses"))))


def bare_inference(frames: list[np.ndarray], n: int) -> tuple[float, int, float]:
    """Seconds per frame of FaceMesh.process alone on ``n`` frames, how many had a face, CPU s per frame."""
    face_mesh, _ = _face_solutions()
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    source = Replay(rgb)
    found = 0
    with face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as mesh:
        mesh.process(rgb[0])  # graph warm-up, as the pipeline's first detection is
        start, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(n):
            found += mesh.process(source.read()).multi_face_landmarks is not None
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return elapsed / n, found, cpu / n


def threaded(frames: list[np.ndarray], n: int, look: Look,
             fps: float | None = None) -> tuple[float, list[float], int, int, float]:
    """Seconds per frame through the three-thread pipeline, latencies, frames encoded, with a face, CPU s/frame."""
    tracker = MediapipeTracker()
    pipeline = Pipeline(tracker)
    faces = 0
    track = pipeline.track

    def counted(frame: np.ndarray, t: float, look: Look | None = None):
        nonlocal faces
        face = track(frame, t, look)
        faces += face is not None
        return face

    pipeline.track = counted  # type: ignore[method-assign]
    encoded: list[int] = []
    runner = MirrorRunner(Replay(frames, fps), pipeline, lambda data: encoded.append(len(data)),
                          drop=fps is not None, limit=n)
    runner.look = look
    tracker.track(frames[0])  # warm-up: graph start and the first detection, not timed
    start, cpu = time.perf_counter(), cpu_seconds()
    runner.start()
    runner.done.wait(600)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    runner.stop()
    tracker.close()
    if runner.error is not None:
        raise runner.error
    return elapsed / n, list(runner.latencies), len(encoded), faces, cpu / n


def one_thread(frames: list[np.ndarray], n: int, look: Look) -> float:
    """Seconds per frame with capture, track, draw and encode one after another on one thread."""
    tracker = MediapipeTracker()
    pipeline = Pipeline(tracker)
    source = Replay(frames)
    tracker.track(frames[0])
    start = time.perf_counter()
    for _ in range(n):
        frame = source.read()
        pipeline.process(frame, time.monotonic(), look)
        encode_jpeg(frame)
    elapsed = time.perf_counter() - start
    tracker.close()
    return elapsed / n


def measure(plan: Plan) -> list[Row]:
    """Every row, for both sizes."""
    look, full = looks()
    photo = synthetic.face_photo()
    rows: list[Row] = []
    how = f"{plan.frames} frames, median of {plan.rounds}; {machine()}"
    for size in SIZES:
        w, h = size
        frames = [synthetic.render(photo, synthetic.moving(i, size), size) for i in range(DISTINCT)]
        bare, piped, bare_cpu, piped_cpu, found, done, faces = [], [], [], [], 0, 0, 0
        for _ in range(plan.rounds):  # interleaved, so a busy moment hits both
            per_frame, found, cpu = bare_inference(frames, plan.frames)
            bare.append(per_frame)
            bare_cpu.append(cpu)
            per_frame, _, done, faces, cpu = threaded(frames, plan.frames, look)
            piped.append(per_frame)
            piped_cpu.append(cpu)
        b, p = statistics.median(bare), statistics.median(piped)
        sequential = one_thread(frames, plan.frames, look)
        all_four = threaded(frames, plan.frames, full)[0]
        live = threaded(frames, min(plan.frames, 150), look, fps=LIVE_FPS)[1]
        res = f"{w}x{h}"
        rows += [
            row(BENCH, f"pipeline per-frame time {res}", p * 1000, "ms", "bare face-mesh inference", b * 1000,
                higher_is_better=False, min_ratio=0.5, note=f"3 threads; {how}"),
            row(BENCH, f"pipeline frames/s {res}", 1 / p, "frames/s", "a camera's 30 fps", LIVE_FPS,
                min_ratio=1.0 if size == (1280, 720) else None, note=f"bare inference: {1 / b:,.0f} frames/s"),
            row(BENCH, f"pipeline CPU per frame {res}", statistics.median(piped_cpu) * 1000, "ms",
                "bare face-mesh inference", statistics.median(bare_cpu) * 1000, higher_is_better=False,
                note="every thread's CPU: what two free cores turn into the time above"),
            row(BENCH, f"pipeline per-frame time {res}, one thread", sequential * 1000, "ms",
                "bare face-mesh inference", b * 1000, higher_is_better=False, note="capture, track, draw, encode in turn"),
            row(BENCH, f"pipeline per-frame time {res}, all four kinds", all_four * 1000, "ms",
                "bare face-mesh inference", b * 1000, higher_is_better=False, note="blush, eyeshadow, lipstick, glasses"),
            row(BENCH, f"latency p50 {res}, live at 30 fps", percentile(live, 50) * 1000, "ms",
                "bare face-mesh inference", b * 1000, higher_is_better=False, note="capture to JPEG ready"),
            row(BENCH, f"latency p99 {res}, live at 30 fps", percentile(live, 99) * 1000, "ms",
                "bare face-mesh inference", b * 1000, higher_is_better=False, note=f"{len(live)} frames"),
            check_row(BENCH, f"every frame encoded {res}", done, plan.frames, "frames", "last round"),
            check_row(BENCH, f"a face in every frame {res}", faces, plan.frames, "frames", "pipeline, last round"),
            check_row(BENCH, f"bare inference found the face {res}", found, plan.frames, "frames",
                      "the baseline measured real inference, last round"),
        ]
        del frames
    return rows


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT))
