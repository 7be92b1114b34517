"""`http_request`: an HTTP call with httpx, an idempotency key, and an SSRF guard.

`run_http_request` checks the target with `guard_url` (private, loopback and link-local addresses are
refused unless HTTP_ALLOWED_HOSTS lists the host or a CIDR containing it), sends the request with the
`Idempotency-Key: {run_id}:{node_id}:{item}` header (and the step's `traceparent` when tracing is
on), and returns `{status, headers, body}` (JSON decoded
when the response says JSON). 429/5xx/transport errors are retryable; other 4xx are not.
`auth` (bearer / basic / api-key header, values usually from `{{ secrets.X }}`) adds its header
(`auth_headers`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

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
    timeout_s: float = 30.0
    raise_for_status: bool = True


def _allowed(host: str, addr: str, allowed: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(addr)
    for entry in allowed:
        if entry.lower() == host.lower() or entry == addr:
            return True
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


async def guard_url(url: str, allowed: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeError(f"url must be http(s) with a host: {url!r}", retryable=False)
    host = parts.hostname
    try:
        infos = await anyio.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise NodeError(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        addr = str(info[4][0])
        ip = ipaddress.ip_address(addr)
        private = (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        )
        if private and not _allowed(host, addr, allowed):
            raise NodeError(
                f"refused: {host} resolves to non-public address {addr} "
                "(add it to HTTP_ALLOWED_HOSTS to allow)",
                retryable=False,
            )


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
    await guard_url(params.url, ctx.settings.http_allowed_hosts)
    headers = {
        "Idempotency-Key": ctx.idempotency_key,
        **tracing.inject_headers({}),  # traceparent of the step's span when tracing is on
        **params.headers,
        **auth_headers(params.auth),
    }
    client: httpx.AsyncClient = ctx.http
    try:
        resp = await client.request(
            params.method.upper(),
            params.url,
            headers=headers,
            timeout=params.timeout_s,
            **_body_kwargs(params.body),
        )
    except httpx.HTTPError as exc:
        raise NodeError(f"{type(exc).__name__}: {exc}") from exc
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
            details={"status": resp.status_code, "body": body},
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
