"""Request checks run before every handler decodes anything (`check_request`: the app's first
guard, so they precede the route's own auth guards, `api/deps.py`, as when they were a
before_request hook).

For every request: U+0000 in the URL path or a query parameter answers 422 with its path. For unsafe
methods (POST, PUT, PATCH, DELETE):
1. Cross-site request forgery. A request authenticated by the session cookie alone (no
   `Authorization: Bearer` and no `x-api-key`, which a foreign page cannot set) must come from our own
   origin: Go's CrossOriginProtection rule (`Sec-Fetch-Site: same-origin|none` passes; any other value
   fails; without it, an `Origin` whose host is the request's `Host` passes and no Origin at all means
   not a browser) plus the allow-list TRUSTED_ORIGINS and CORS_ORIGINS. Refused: 403, `header.Origin`.
   The login route is held to the same rule (login CSRF would sign the victim into our account).
2. Content type. A body sent to a JSON route must be `application/json` (or `+json`): a `text/plain`
   or form body is what a cross-site form can send without a preflight. Routes that take other bodies
   say so with `opt={"body": "any"}` (webhooks: the guard still checks a JSON body) or
   `opt={"body": "stream"}` (batch uploads: streamed and checked item by item, never read here).
3. JSON limits (`flowstudio.jsonlimits`): nesting deeper than JSON_MAX_DEPTH answers 400 and U+0000
   anywhere answers 422, each with the path; bodies over 64 KiB are walked off the event loop.
Rejections are problem+json through `api/errors.py`; a CSRF refusal is logged (INFO, one line), bad
input only by the access log's line.
"""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from flowstudio.api.deps import AnyRequest, cookie_token
from flowstudio.api.errors import forbidden, invalid, problem
from flowstudio.jsonlimits import NUL_REASON, body_problem, needs_walk
from flowstudio.offload import run_cpu
from flowstudio.settings import Settings

log = logging.getLogger(__name__)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OFFLOAD_BYTES = 64 * 1024
LOGIN_PATH = "/api/auth/login"  # login CSRF: a foreign page must not log the browser in


def is_json_media(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def cookie_authenticated(request: AnyRequest) -> bool:
    """True when the session cookie is the only credential (what a forged request carries)."""
    if request.headers.get("x-api-key"):
        return False
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return False
    return cookie_token(request) is not None


def cross_origin_refusal(request: AnyRequest, trusted: frozenset[str]) -> str | None:
    """Why this browser request is cross-origin, or None when it may proceed."""
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") in trusted:
        return None
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site.lower() in ("same-origin", "none"):
            return None
        return f"cross-origin request refused (Sec-Fetch-Site: {site}, Origin: {origin or '-'})"
    if not origin:
        return None  # not a browser: browsers send Origin on every unsafe cross-origin request
    host = request.headers.get("host", "")
    if origin != "null" and urlsplit(origin).netloc.lower() == host.lower():
        return None
    return f"cross-origin request refused (Origin: {origin})"


def trusted_origins(settings: Settings) -> frozenset[str]:
    return frozenset(o.rstrip("/") for o in (*settings.trusted_origins, *settings.cors_origins))


def nul_in_url(request: AnyRequest) -> str | None:
    """The path of a query parameter (or of the URL path) holding U+0000, or None."""
    if "\x00" in request.scope.get("path", ""):
        return "path"
    if b"%00" not in request.scope.get("query_string", b""):
        return None
    for name, values in request.query_params.dict().items():
        if "\x00" in name or any("\x00" in v for v in values):
            return f"query.{name}"
    return None


async def guard_request(request: AnyRequest) -> None:
    where = nul_in_url(request)
    if where is not None:
        raise invalid(where, NUL_REASON)
    if request.method not in UNSAFE:
        return None
    settings: Settings = request.app.state.settings
    if cookie_authenticated(request) or request.url.path == LOGIN_PATH:
        reason = cross_origin_refusal(request, trusted_origins(settings))
        if reason:
            log.info("refused %s %s: %s", request.method, request.url.path, reason)
            raise forbidden(reason, path="header.Origin")
    body_kind = request.route_handler.opt.get("body", "json")
    if body_kind == "stream":
        return None
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    if not raw.strip():
        return None
    if not is_json_media(content_type):
        if body_kind != "any":
            reason = "send the body as application/json"
            raise problem(
                415,
                f"{reason} (got {content_type or 'no Content-Type'})",
                path="header.Content-Type",
                reason=reason,
            )
        if b"\x00" in raw:
            raise invalid("body", NUL_REASON)
        # not declared JSON, but a webhook may still decode it as JSON: the same limits apply
    depth = settings.json_max_depth
    if not needs_walk(raw, depth):
        return None
    if len(raw) > OFFLOAD_BYTES:
        found = await run_cpu(body_problem, raw, depth)
    else:
        found = body_problem(raw, depth)
    if found is not None:
        status = 422 if found.reason.startswith("NUL") else 400
        log.debug("refused %s %s: %s at %s", request.method, request.url.path, *found[::-1])
        raise problem(
            status, f"{found.reason} at {found.path}", path=found.path, reason=found.reason
        )
    return None


async def check_request(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler | None = None
) -> None:
    """`guard_request` as the app-level guard (HTTP routes hand guards their Request)."""
    await guard_request(cast("AnyRequest", connection))
