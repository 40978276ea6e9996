"""The mirror trying clothes on: pose, person mask and one garment at 1280x720, against bare pose inference.

Frames: the synthetic customer stepped back (scikit-image's astronaut photo:
head, shoulders and torso, 85 % of the frame's height, swaying a little from
side to side and tilting), rendered beforehand at 1280x720 and played
forwards then backwards; "capture" hands the pipeline a fresh copy of each
frame. The look is the navy T-shirt of ar_mirror/products.yaml.

Pipeline: ``ar_mirror.runner.MirrorRunner`` as the mirror process runs it
(capture, track, draw + JPEG encode on three threads), with hand-overs
that wait instead of dropping so that every frame is counted: in body view
the pose (MediaPipe, complexity 1) runs on every other frame on a 320-wide
copy (the joints carried on at their speed in between), the person mask
(selfie segmentation, landscape model, 256x144) every frame, the face mesh
not at all (no face layer in the look), and the T-shirt is warped onto the
pose and composed under the mask.

Baseline, same run, same frames: MediaPipe's pose alone (``Pose.process``,
complexity 1, tracking mode, on each full 1280x720 frame, already RGB), the
bare inference the garments are built on. Targets: at least 30 frames/s,
and a per-frame time of the whole pipeline at most 2x the bare inference's
(ratio at least 0.5). Also: the same pose on a 320-wide copy (why the
mirror gives it one), the garment's drawing alone, and the live latency
(frames paced at 30 fps, capture to JPEG ready). ``--quick``: 60 frames,
one round; default: 300 frames, median of three rounds.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np

from bench_mirror import Replay, cpu_seconds
from common import Row, check_row, machine, percentile, row, script_main

from ar_mirror import apparel, synthetic
from ar_mirror.control import Look
from ar_mirror.mediapipe_body import POSE_WIDTH, MediapipeBodyTracker, _body_solutions
from ar_mirror.mediapipe_tracker import MediapipeTracker
from ar_mirror.pipeline import Pipeline
from ar_mirror.products import load
from ar_mirror.runner import MirrorRunner

BENCH = "apparel"
SIZE = (1280, 720)
DISTINCT = 30
LIVE_FPS = 30.0
SKU = "TEE-CREW-NAVY"


@dataclass(frozen=True)
class Plan:
    """Frames per run and rounds (the median of the rounds is reported)."""

    frames: int
    rounds: int


DEFAULT = Plan(frames=300, rounds=3)
QUICK = Plan(frames=60, rounds=1)


def look() -> Look:
    return Look(layers=(load()[SKU].layer(SKU),))


def bare_pose(frames: list[np.ndarray], n: int, width: int | None = None) -> tuple[float, int, float]:
    """Seconds per frame of Pose.process alone (on the full frame, or a ``width``-wide copy made in the loop),
    frames with a body, CPU s per frame."""
    pose, _ = _body_solutions()
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    source = Replay(rgb)
    found = 0
    h = round(SIZE[1] * width / SIZE[0]) if width else None
    with pose.Pose(static_image_mode=False, model_complexity=1) as model:
        model.process(rgb[0])
        start, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(n):
            image = source.read()
            if width:
                image = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
            found += model.process(image).pose_landmarks is not None
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return elapsed / n, found, cpu / n


def threaded(frames: list[np.ndarray], n: int, fps: float | None = None
             ) -> tuple[float, list[float], int, int, float]:
    """Seconds per frame through the three-thread pipeline, latencies, frames encoded, frames in body view,
    CPU s per frame."""
    face, body = MediapipeTracker(), MediapipeBodyTracker()
    pipeline = Pipeline(face, body_tracker=body)
    in_body = 0
    track = pipeline.track

    def counted(frame: np.ndarray, t: float, what: Look | None = None):
        nonlocal in_body
        found = track(frame, t, what)
        in_body += pipeline.view == "body"
        return found

    pipeline.track = counted  # type: ignore[method-assign]
    encoded: list[int] = []
    runner = MirrorRunner(Replay(frames, fps), pipeline, lambda data: encoded.append(len(data)),
                          drop=fps is not None, limit=n)
    runner.look = look()
    for i in range(3):  # warm-up: graphs start, the pose finds the body, body view is reached; not timed
        pipeline.track(frames[0], i / 30, runner.look)
    in_body = 0
    start, cpu = time.perf_counter(), cpu_seconds()
    runner.start()
    runner.done.wait(600)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    runner.stop()
    face.close()
    body.close()
    if runner.error is not None:
        raise runner.error
    return elapsed / n, list(runner.latencies), len(encoded), in_body, cpu / n


def face_view(frames: list[np.ndarray], n: int, body: bool) -> float:
    """Seconds per frame through the three-thread pipeline on close-up faces, with or without the body tracker."""
    face = MediapipeTracker()
    body_tracker = MediapipeBodyTracker() if body else None
    pipeline = Pipeline(face, body_tracker=body_tracker)
    tryons = load()
    runner = MirrorRunner(Replay(frames), pipeline, lambda data: None, drop=False, limit=n)
    runner.look = Look(layers=(tryons["LIP-RED-01"].layer("LIP-RED-01"), tryons["GLS-ROUND-BLK"].layer("GLS-ROUND-BLK")))
    for i in range(3):
        pipeline.track(frames[0], i / 30, runner.look)
    start = time.perf_counter()
    runner.start()
    runner.done.wait(600)
    elapsed = time.perf_counter() - start
    runner.stop()
    face.close()
    if body_tracker is not None:
        body_tracker.close()
    if runner.error is not None:
        raise runner.error
    return elapsed / n


def drawing(frames: list[np.ndarray], n: int) -> float:
    """Seconds per frame of the garment's drawing alone (warp, mask, compose) on a tracked body."""
    tracker = MediapipeBodyTracker()
    body = None
    for _ in range(3):
        body = tracker.track(frames[0], mask=True)
    tracker.close()
    assert body is not None
    layer = look().layers[0]
    apparel.draw(frames[0].copy(), body, layer)  # loads and splits the picture once
    copies = [frames[i % len(frames)].copy() for i in range(min(n, 60))]
    start = time.perf_counter()
    for frame in copies:
        apparel.draw(frame, body, layer)
    return (time.perf_counter() - start) / len(copies)


def measure(plan: Plan) -> list[Row]:
    photo = synthetic.face_photo()
    frames = [synthetic.render(photo, synthetic.stepped_back(i, SIZE), SIZE) for i in range(DISTINCT)]
    how = f"{plan.frames} frames, median of {plan.rounds}; {machine()}"
    bare, piped, bare_cpu, piped_cpu = [], [], [], []
    found = done = in_body = 0
    for _ in range(plan.rounds):  # interleaved, so a busy moment hits both
        per_frame, found, cpu = bare_pose(frames, plan.frames)
        bare.append(per_frame)
        bare_cpu.append(cpu)
        per_frame, _, done, in_body, cpu = threaded(frames, plan.frames)
        piped.append(per_frame)
        piped_cpu.append(cpu)
    b, p = statistics.median(bare), statistics.median(piped)
    small = bare_pose(frames, plan.frames, POSE_WIDTH)[0]
    draw = drawing(frames, plan.frames)
    live = threaded(frames, min(plan.frames, 150), fps=LIVE_FPS)[1]
    close = [synthetic.render(photo, synthetic.moving(i, SIZE), SIZE) for i in range(DISTINCT)]
    face_only, face_watched = face_view(close, plan.frames, False), face_view(close, plan.frames, True)
    return [
        row(BENCH, "pipeline per-frame time 1280x720, pose + mask + T-shirt", p * 1000, "ms",
            "bare pose inference", b * 1000, higher_is_better=False, min_ratio=0.5, note=f"3 threads; {how}"),
        row(BENCH, "pipeline frames/s 1280x720, pose + mask + T-shirt", 1 / p, "frames/s", "a camera's 30 fps",
            LIVE_FPS, min_ratio=1.0, note=f"bare pose inference: {1 / b:,.0f} frames/s"),
        row(BENCH, "pipeline CPU per frame 1280x720", statistics.median(piped_cpu) * 1000, "ms",
            "bare pose inference", statistics.median(bare_cpu) * 1000, higher_is_better=False,
            note="every thread's CPU: what two free cores turn into the time above"),
        row(BENCH, f"pose on a {POSE_WIDTH}-wide copy (the mirror's)", small * 1000, "ms",
            "bare pose inference on the full frame", b * 1000, higher_is_better=False,
            note="OpenCV's resize included; MediaPipe resizes to 256x256 either way"),
        row(BENCH, "T-shirt drawing alone 1280x720", draw * 1000, "ms", "bare pose inference", b * 1000,
            higher_is_better=False, note="warp 3 pieces, forearms, person mask, shading, compose"),
        row(BENCH, "latency p50 1280x720, live at 30 fps", percentile(live, 50) * 1000, "ms",
            "bare pose inference", b * 1000, higher_is_better=False, note="capture to JPEG ready"),
        row(BENCH, "latency p99 1280x720, live at 30 fps", percentile(live, 99) * 1000, "ms",
            "bare pose inference", b * 1000, higher_is_better=False, note=f"{len(live)} frames"),
        row(BENCH, "face view per-frame time 1280x720, body tracker watching", face_watched * 1000, "ms",
            "the same without the body tracker", face_only * 1000, higher_is_better=False,
            note="lipstick and glasses; the pose on one frame in three"),
        check_row(BENCH, "every frame encoded", done, plan.frames, "frames", "last round"),
        check_row(BENCH, "body view in every frame", in_body, plan.frames, "frames", "pipeline, last round"),
        check_row(BENCH, "bare inference found the body", found, plan.frames, "frames",
                  "the baseline measured real inference, last round"),
    ]


if __name__ == "__main__":
    sys.exit(script_main(__doc__, measure, QUICK, DEFAULT))
