"""A TCP heartbeat device for tests and the demo: answers PING with PONG <n>."""

from __future__ import annotations

import asyncio

from drivers.heartbeat import protocol


class HeartbeatEmulator:
    """Listens on ``host:port`` (0 = any free port) and answers pings."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.beats = 0
        self.mute = False  # when True, pings get no answer (a hung device)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Start listening; ``port`` holds the bound port afterwards."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (an unplug)."""
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while line := await reader.readline():
                if line == protocol.PING and not self.mute:
                    self.beats += 1
                    writer.write(protocol.pong(self.beats))
                    await writer.drain()
        except (ConnectionError, ValueError):
            pass  # the agent hung up, or sent a line over 64 KiB; either way drop it
        finally:
            self._conns.discard(writer)
            writer.close()
