"""`http_request`: an HTTP call through the egress guard, with an idempotency key.

`run_http_request` sends the request with the `Idempotency-Key: {run_id}:{node_id}:{item}` header
(and the step's `traceparent` when tracing is on) through a client from `flowstudio.egress.client_for` (the worker's shared guarded pool): the host is
resolved once, every address must be public unless HTTP_ALLOWED_HOSTS allows the host or a CIDR holding
it, the socket goes to the checked address, redirects are followed only when `follow_redirects` is on
(hop by hop, each checked again; the node's headers and auth are dropped when a hop leaves the
origin), and the body is capped at HTTP_MAX_RESPONSE_BYTES. A refusal or an oversized
body fails the step without retry and without any response content in the error. It returns `{status,
headers, body}` (JSON decoded when the response says JSON). 429/5xx/transport errors are retryable;
other 4xx are not. `guard_url` and `_allowed` remain for older callers (a pre-check with the same
policy, and the allow-list test alone).
`auth` (bearer / basic / api-key header, values usually from `{{ secrets.X }}`) adds its header
(`auth_headers`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import msgspec

from flowstudio.egress import (
    EgressError,
    EgressPolicy,
    allow_listed,
    client_for,
    resolve_allowed,
    send_following,
)
from flowstudio.nodes.bounds import CallTimeout
from flowstudio.nodes.registry import Done, NodeContext, NodeError, NodeSpec, register
from flowstudio.observability import tracing


class HttpAuth(msgspec.Struct, kw_only=True):
    """Credentials, usually `{{ secrets.NAME }}` (masked in outputs like every secret)."""

    type: Literal["bearer", "basic", "api_key"] = "bearer"
    token: str = ""  # bearer
    username: str = ""  # basic
    password: str = ""  # basic
    header: str = "X-API-Key"  # api_key: the header that carries `value`
    value: str = ""  # api_key


class HttpParams(msgspec.Struct, kw_only=True):
    url: str
    auth: HttpAuth | None = None
    method: str = "GET"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: Any = None
    timeout_s: CallTimeout = 30.0
    raise_for_status: bool = True
    follow_redirects: bool = False  # each hop is checked by the egress guard (HTTP_MAX_REDIRECTS)


def _allowed(host: str, addr: str, allowed: tuple[str, ...]) -> bool:
    """Kept for older callers: is `host` / `addr` on the HTTP_ALLOWED_HOSTS list? (New code calls
    `flowstudio.egress.resolve_allowed`, which also applies the public-address rule.)"""
    return allow_listed(host, ipaddress.ip_address(addr), EgressPolicy.from_allowed(allowed))


async def guard_url(url: str, allowed: tuple[str, ...]) -> None:
    """Kept for callers of the old guard: a pre-check of a URL with the egress policy. The real
    guard is the transport (`flowstudio.egress`), which checks again at connect time."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeError(f"url must be http(s) with a host: {url[:200]!r}", retryable=False)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        await resolve_allowed(parts.hostname, port, EgressPolicy.from_allowed(allowed))
    except EgressError as exc:
        raise NodeError(exc.reason, retryable=exc.retryable) from exc


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeError(f"url must be http(s) with a host: {url[:200]!r}", retryable=False)


def _body_kwargs(body: Any) -> dict[str, Any]:
    match body:
        case None | "":
            return {}
        case str():
            try:
                return {"json": json.loads(body)}
            except ValueError:
                return {"content": body.encode()}
        case _:
            return {"json": body}


def short_body(body: Any, limit: int = 2000) -> Any:
    """An error's copy of a response body: whole if small, else its first `limit` characters."""
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    if len(text) <= limit:
        return body
    return text[:limit] + f"... ({len(text)} characters)"


def auth_headers(auth: HttpAuth | None) -> dict[str, str]:
    match auth:
        case None:
            return {}
        case HttpAuth(type="bearer", token=token):
            return {"Authorization": f"Bearer {token}"}
        case HttpAuth(type="basic", username=user, password=password):
            raw = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        case HttpAuth(header=header, value=value):
            if not header.strip():
                raise NodeError("auth.header must name a header", retryable=False)
            return {header: value}
    return {}


async def run_http_request(ctx: NodeContext, params: HttpParams) -> Done:
    check_url(params.url)
    headers = {
        "Idempotency-Key": ctx.idempotency_key,
        **tracing.inject_headers({}),  # traceparent of the step's span when tracing is on
        **params.headers,
        **auth_headers(params.auth),
    }
    try:
        async with client_for(ctx.http, ctx.settings, timeout=params.timeout_s) as client:
            request = client.build_request(
                params.method.upper(), params.url, headers=headers, **_body_kwargs(params.body)
            )
            resp = await send_following(
                client,
                request,
                follow=params.follow_redirects,
                max_redirects=client.max_redirects,
                private_headers=headers,  # never carried to another origin
            )
            try:
                await resp.aread()
            finally:
                await resp.aclose()
    except EgressError as exc:
        raise NodeError(exc.reason, retryable=exc.retryable) from exc
    except httpx.HTTPError as exc:
        raise NodeError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if "json" in resp.headers.get("content-type", ""):
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
    else:
        body = resp.text
    out = {"status": resp.status_code, "headers": dict(resp.headers), "body": body}
    if params.raise_for_status and resp.status_code >= 400:
        retryable = resp.status_code == 429 or resp.status_code >= 500
        raise NodeError(
            f"HTTP {resp.status_code} from {params.url}",
            retryable=retryable,
            details={"status": resp.status_code, "body": short_body(body)},
        )
    return Done(out)


register(
    NodeSpec(
        "http_request",
        "HTTP request",
        "http",
        "Calls an HTTP endpoint (sends Idempotency-Key); refuses private targets "
        "unless HTTP_ALLOWED_HOSTS allows them.",
        HttpParams,
        run_http_request,
    )
)
