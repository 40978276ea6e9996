"""The mirror's picture as MJPEG (``multipart/x-mixed-replace``), served on an abstract unix socket.

The mirror process writes the body of the HTTP response, part after part,
to every connection; the agent relays those bytes unchanged to the mirror's
own screen (``GET /v1/mirror/{device}/stream``). An abstract socket (its
name starts with a NUL byte) has no file: nothing appears on disk. Only
processes of the same user may read it (checked with SO_PEERCRED), and each
connection is sent only the newest frame when it is ready for one, so a slow
screen skips frames instead of falling behind.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

BOUNDARY = "mirrorframe"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
# A connection's send buffer: about one 720p frame, so at most one frame
# waits in the kernel and what the screen shows stays current.
SEND_BUFFER = 128 * 1024


def part(jpeg: bytes) -> bytes:
    """One frame as a part of the multipart body."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
    return head + jpeg + b"\r\n"


class FrameHub:
    """The newest encoded frame and who waits for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seq = 0
        self._part = b""
        self._closed = False
        self.clients = 0

    def publish(self, data: bytes) -> None:
        """Replace the newest frame and wake every waiting connection."""
        with self._cond:
            self._seq += 1
            self._part = data
            self._cond.notify_all()

    def next_after(self, seq: int) -> tuple[int, bytes] | None:
        """The newest frame once it is newer than ``seq``; None when the hub is closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._seq > seq)
            return None if self._closed else (self._seq, self._part)

    def close(self) -> None:
        """Wake every connection to end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def attach(self, n: int) -> None:
        """Count a screen that connected (1) or left (-1)."""
        with self._cond:
            self.clients += n

    def watched(self) -> bool:
        """True while at least one screen is connected (frames are encoded only then)."""
        return self.clients > 0


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a unix socket."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class StreamServer:
    """Accepts connections on the abstract socket ``name`` and sends each the frames of ``hub``."""

    def __init__(self, name: str, hub: FrameHub, max_clients: int = 4):
        self.name = name
        self.hub = hub
        self.max_clients = max_clients
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()

    def start(self) -> None:
        """Listen and accept on a thread."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind("\0" + self.name)
        sock.listen(self.max_clients)
        self._sock = sock
        threading.Thread(target=self._accept, name="stream-accept", daemon=True).start()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # stop() shut the socket down
            with self._lock:
                full = len(self._conns) >= self.max_clients
                if not full:
                    self._conns.add(conn)
            if full or peer_uid(conn) != os.getuid():
                # Another user's process on this machine never sees the camera.
                self._drop(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="stream-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.hub.attach(1)
        seq = 0
        try:
            while (item := self.hub.next_after(seq)) is not None:
                seq, data = item
                conn.sendall(data)
        except OSError:
            pass  # the screen went away; its connection ends here
        finally:
            self.hub.attach(-1)
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
        conn.close()

    def stop(self) -> None:
        """Stop accepting and end every connection."""
        self.hub.close()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the other thread
            except OSError:
                pass  # never connected: nothing to wake
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
