"""A local HTTP sink that counts calls per Idempotency-Key (the external side effect in crash tests).

`Sink()` runs a ThreadingHTTPServer on 127.0.0.1 in a thread. Any path answers 200 with JSON
`{"ok": true, "path", "key", "n"}`; `?sleep=S` delays the answer S seconds (to kill a worker mid-step);
`?status=N` answers N; `?echo=1` adds the request's headers to the answer (a server that repeats a
credential back). `sink.calls[key]` counts requests per Idempotency-Key; `sink.requests` keeps
each request's path and headers (to check what a node sent, e.g. a secret in a header). During a
`?sleep=` the sink watches the connection: a caller that hangs up before the answer (an execution
that was abandoned) is counted in `sink.abandoned[key]`, an answer that was sent in `sink.answered[key]`.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Sink:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.abandoned: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                key = self.headers.get("Idempotency-Key", "")
                with sink.lock:
                    sink.calls[key] += 1
                    sink.requests.append({"path": parts.path, "headers": dict(self.headers)})
                    n = sink.calls[key]
                if "sleep" in query and not self._wait(float(query["sleep"][0])):
                    with sink.lock:
                        sink.abandoned[key] += 1
                    return
                status = int(query.get("status", ["200"])[0])
                payload = json.dumps(
                    {
                        "ok": status < 400,
                        "path": parts.path,
                        "key": key,
                        "n": n,
                        "body": body.decode(errors="replace"),
                        **({"headers": dict(self.headers)} if "echo" in query else {}),
                    }
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    with sink.lock:
                        sink.answered[key] += 1
                except OSError:
                    pass  # the caller was killed mid-request

            def _wait(self, seconds: float) -> bool:
                """Sleep `seconds`; False as soon as the caller closes its end of the connection."""
                deadline = time.monotonic() + seconds
                conn = self.connection
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([conn], [], [], min(left, 0.05))
                    if readable:
                        try:
                            if conn.recv(1, socket.MSG_PEEK) == b"":
                                return False
                        except OSError:
                            return False
                        time.sleep(min(left, 0.05))  # pipelined bytes: keep sleeping
                return True

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/x", **query: object) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{q}" if q else "")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
