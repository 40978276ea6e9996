"""The mirror process: ``python -m ar_mirror.process --source SPEC --stream NAME ...``.

Started and watched by the agent's ``mirror.camera`` driver. Frames exist
only in this process's memory: they are captured, drawn on, encoded as JPEG
for the stream's abstract socket, and dropped. Nothing here writes a file,
and what it prints (``ar_mirror.control`` messages on stdout, errors on
stderr) carries no image. It reads ``Look`` lines on stdin and exits when
stdin closes (the agent stopped or died), on SIGTERM, or when the camera
fails (status ``EXIT_MISSING`` when the camera is not there).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, BinaryIO

from ar_mirror import control
from ar_mirror.control import Error, Ready

if TYPE_CHECKING:
    from ar_mirror.runner import MirrorRunner

# Seconds between two Stats lines: the agent's stall watch counts on them.
STATS_INTERVAL = 0.5


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ar_mirror.process", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="synthetic, a camera index or /dev path, or a video file")
    parser.add_argument("--stream", required=True, help="name of the abstract unix socket to serve the stream on")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--jpeg-quality", type=int, default=80)
    return parser.parse_args(argv)


class _Output:
    """stdout, one whole message per write, from any thread."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: control.Ready | control.Stats | control.Error) -> None:
        with self._lock:
            self._stream.write(control.encode(message))
            self._stream.flush()


def _read_looks(stdin: BinaryIO, runner: "MirrorRunner", stop: threading.Event) -> None:
    """Apply each Look line to the runner; stdin's end means the agent is gone.

    ``stdin`` is unbuffered: a buffered reader's lock, held by this daemon
    thread while it waits, makes the interpreter abort at exit.
    """
    for line in stdin:
        try:
            runner.look = control.parse_look(line)
        except ValueError as err:
            print(f"ignored a bad look line: {err}", file=sys.stderr, flush=True)
    stop.set()


def main(argv: list[str] | None = None) -> int:
    """Run the mirror until stdin closes or SIGTERM; the exit status says how it ended."""
    args = _arguments(argv)
    out = _Output(sys.stdout.buffer)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        from ar_mirror.capture import CameraMissing, open_source
    except ImportError as err:
        out.send(Error(message=f"{err}; the mirror needs its extra: pip install 'edge-agent[mirror]'"))
        return 1
    try:
        source = open_source(args.source, (args.width, args.height), args.fps)
    except CameraMissing as err:
        out.send(Error(message=str(err), missing=True))
        return control.EXIT_MISSING
    # The heavy imports after the camera check: a missing camera answers fast.
    from ar_mirror.mediapipe_body import MediapipeBodyTracker
    from ar_mirror.mediapipe_tracker import MediapipeTracker
    from ar_mirror.pipeline import Pipeline
    from ar_mirror.runner import MirrorRunner, encode_jpeg
    from ar_mirror.stream import FrameHub, StreamServer

    tracker = MediapipeTracker()
    body_tracker = MediapipeBodyTracker()
    hub = FrameHub()
    server = StreamServer(args.stream, hub)
    quality = args.jpeg_quality
    runner = MirrorRunner(source, Pipeline(tracker, body_tracker=body_tracker), hub.publish, watched=hub.watched,
                          encode=lambda image: encode_jpeg(image, quality))
    server.start()
    runner.start()
    out.send(Ready(width=source.size[0], height=source.size[1], source=source.name, stream=args.stream))
    stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    threading.Thread(target=_read_looks, args=(stdin, runner, stop), name="looks", daemon=True).start()
    try:
        while not stop.is_set() and not runner.done.is_set():
            out.send(runner.stats(hub.clients))
            stop.wait(STATS_INTERVAL)
    finally:
        server.stop()
        runner.stop()
        source.close()
        tracker.close()
        body_tracker.close()
    out.send(runner.stats(hub.clients))  # the final counts
    if runner.error is not None:
        err = runner.error
        out.send(Error(message=f"{type(err).__name__}: {err}", missing=isinstance(err, CameraMissing)))
        return control.EXIT_MISSING if isinstance(err, CameraMissing) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
