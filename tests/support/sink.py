"""A local HTTP sink that counts calls per Idempotency-Key (the external side effect in crash tests).

`Sink()` runs a ThreadingHTTPServer on 127.0.0.1 in a thread. Any path answers 200 with JSON
`{"ok": true, "path", "key", "n"}`; `?sleep=S` delays the answer S seconds (to kill a worker mid-step);
`?status=N` answers N; `?echo=1` adds the request's headers to the answer (a server that repeats a
credential back). `sink.calls[key]` counts requests per Idempotency-Key; `sink.requests` keeps
each request's path and headers (to check what a node sent, e.g. a secret in a header).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Sink:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
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
                if "sleep" in query:
                    time.sleep(float(query["sleep"][0]))
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
                except OSError:
                    pass  # the caller was killed mid-request

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
