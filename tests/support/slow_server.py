"""A slow HTTP server for concurrency tests: every request is held `hold` seconds, then answered 200.

asyncio-based (one thread, thousands of open connections, a listen backlog of 4096), it counts the
requests in flight and remembers the peak, so a test can show how many calls a worker held at once.
With `release_at=N` it is a barrier: requests are held until N are in flight at once (then every one
is answered), or `hold` seconds at most. A test of "N calls held at once" then waits for as long as
the machine needs to get them all in, instead of betting that they arrive within a fixed hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class SlowServer:
    def __init__(self, hold: float, release_at: int | None = None) -> None:
        self.hold = hold
        self.release_at = release_at
        self._all_in: asyncio.Event | None = None  # made on the server's loop
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._all_in = asyncio.Event()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await self._wait()
            finally:
                self.in_flight -= 1
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
            self.served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _wait(self) -> None:
        """`hold` seconds; with `release_at`, only until that many requests are in flight."""
        assert self._all_in is not None
        if self.release_at is None:
            await asyncio.sleep(self.hold)
            return
        if self.in_flight >= self.release_at:
            self._all_in.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._all_in.wait(), self.hold)

    def url(self, path: str = "/slow") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
