"""Tiny HTTP servers on chosen loopback addresses, for the egress attack replays.

`TinyServer(host, port=0, tls=None, redirect_to=None)` serves in a thread and counts `hits`; with
`redirect_to` every request answers 307 to that base URL + its path (an "allowed" LLM base_url that
bounces the SDK elsewhere). Otherwise, by path:
- `/redirect?to=URL` answers 307 to URL (the SDK-redirect SSRF), `/redirect-loop` redirects to itself;
- `/big?n=N` streams N bytes without Content-Length, `/big-declared?n=N` declares them first;
- `/drip?n=N&every=S` sends one byte every S seconds;
- anything else (any method) answers `{"served_by": <its address>, "host": <Host header>,
  "secret": "LOOPBACK-SECRET-<address>"}`: the body that must never show up where it was refused.
`same_port_pair(a, b)` starts two servers on one port (the two faces of a rebinding name).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class TinyServer:
    def __init__(
        self,
        host: str,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        redirect_to: str | None = None,
    ) -> None:
        self.hits = 0
        self.host_headers: list[str] = []
        self.headers: list[dict[str, str]] = []  # every request's headers, lower-cased names
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # headers and body go out in separate writes: no Nagle wait
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                server.hits += 1
                server.host_headers.append(self.headers.get("host", ""))
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if redirect_to is not None:
                    return self._send(307, b"", location=redirect_to + self.path)
                if parts.path == "/redirect":
                    return self._send(307, b"", location=query["to"])
                if parts.path == "/redirect-loop":
                    return self._send(307, b"", location="/redirect-loop")
                if parts.path == "/big-declared":
                    return self._send(200, b"x" * int(query["n"]))
                if parts.path in ("/big", "/drip"):
                    return self._stream(int(query["n"]), float(query.get("every", 0)))
                body = json.dumps(
                    {
                        "served_by": host,
                        "host": self.headers.get("host"),
                        "secret": f"LOOPBACK-SECRET-{host}",
                    }
                ).encode()
                self._send(200, body, content_type="application/json")

            def _send(self, status: int, body: bytes, **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, n: int, every: float) -> None:
                self.send_response(200)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                step = 1 if every else 65536
                try:
                    for start in range(0, n, step):
                        size = min(step, n - start)
                        self.wfile.write(f"{size:x}\r\n".encode() + b"x" * size + b"\r\n")
                        self.wfile.flush()
                        if every:
                            time.sleep(every)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client stopped reading (the cap worked)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/", host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def same_port_pair(a: str, b: str) -> tuple[TinyServer, TinyServer]:
    """Two servers, on addresses `a` and `b`, sharing one port number."""
    for _ in range(50):
        first = TinyServer(a)
        try:
            return first, TinyServer(b, first.port)
        except OSError:
            first.close()
    raise RuntimeError("no common free port")
