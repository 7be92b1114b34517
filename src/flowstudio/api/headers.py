"""Security headers on every response (a pure ASGI middleware, so streams and static files get them).

Each header is added unless the handler already set it:
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, `X-Frame-Options: DENY`;
- `Content-Security-Policy`: for HTML (the designer) `UI_CSP` — scripts, styles, images, fonts and
  connections from our own origin only (inline styles are allowed: React Flow and CodeMirror set
  them), no plugins, no framing (`frame-ancestors 'none'`), forms only to us; for everything else
  (JSON, SSE) `API_CSP`, which forbids everything, framing included. The OpenAPI viewers under
  `/schema` load their scripts from a CDN and get only `frame-ancestors 'none'`.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = "frame-ancestors 'none'"
COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


def _csp_for(path: str, headers: list[tuple[bytes, bytes]]) -> str:
    if path.startswith("/schema"):
        return DOCS_CSP
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    return UI_CSP if content_type.startswith(b"text/html") else API_CSP


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers") or [])
                present = {bytes(k).lower() for k, _ in headers}
                extra = [(k, v) for k, v in COMMON if k not in present]
                if b"content-security-policy" not in present:
                    csp = _csp_for(scope.get("path", ""), headers)
                    extra.append((b"content-security-policy", csp.encode()))
                message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
