"""The MJPEG stream on its abstract socket: newest frame first, no file, same user only."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import pytest

from ar_mirror.stream import BOUNDARY, FrameHub, StreamServer, part


def read_part(conn: socket.socket, buffer: bytearray) -> bytes:
    """The JPEG bytes of the next part on ``conn``."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        assert chunk, "stream ended"
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    assert head.startswith(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n".encode())
    length = int(head.rsplit(b"Content-Length: ", 1)[1])
    start = len(head) + 4
    while len(buffer) < start + length + 2:
        buffer += conn.recv(65536)
    body = bytes(buffer[start:start + length])
    assert buffer[start + length:start + length + 2] == b"\r\n"
    del buffer[:start + length + 2]
    return body


@pytest.fixture
def server():
    hub = FrameHub()
    srv = StreamServer(f"edge-agent-test/{uuid.uuid4().hex}", hub, max_clients=2)
    srv.start()
    yield srv
    srv.stop()


def connect(srv: StreamServer) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect("\0" + srv.name)
    return conn


def test_a_part_is_a_jpeg_with_its_length():
    assert part(b"JPEG") == f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\nJPEG\r\n".encode()


def test_a_screen_gets_the_newest_frame_then_each_new_one(server):
    for frame in (b"first", b"second", b"third"):
        server.hub.publish(part(frame))
    with connect(server) as conn:
        buffer = bytearray()
        assert read_part(conn, buffer) == b"third"  # what came before is gone, not queued
        server.hub.publish(part(b"fourth"))
        assert read_part(conn, buffer) == b"fourth"


def test_the_socket_has_no_file_and_stop_ends_every_screen(server):
    assert not Path(server.name).exists() and not Path("/" + server.name).exists()
    server.hub.publish(part(b"x"))
    conn = connect(server)
    read_part(conn, bytearray())
    ended = threading.Event()

    def wait_end():
        while conn.recv(65536):
            pass
        ended.set()

    reader = threading.Thread(target=wait_end)
    reader.start()
    server.stop()
    reader.join(10)
    assert ended.is_set()
    conn.close()


def test_screens_beyond_the_limit_are_turned_away(server):
    server.hub.publish(part(b"x"))
    first, second = connect(server), connect(server)
    for conn in (first, second):
        read_part(conn, bytearray())
    with connect(server) as third:
        assert third.recv(10) == b""
    first.close()
    second.close()
