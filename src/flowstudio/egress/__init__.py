"""ONE egress path for every outbound call a flow can cause (HTTP, LLM/embedding SDKs, documents).

Public API (stable; a sandbox proxy can build on `resolve_allowed`):
- `EgressPolicy.from_settings(settings)`: HTTP_ALLOWED_HOSTS + HTTP_MAX_RESPONSE_BYTES,
  HTTP_MAX_REDIRECTS, HTTP_MAX_SECONDS.
- `resolve_allowed(host, port, policy) -> list[IPAddress]`: resolve once, every address allowed, or
  `EgressRefused(reason)`; connect only to what it returned.
- `Egress(policy)`: one per process (the worker's), owning one pinned connection pool;
  `egress.client(...)` returns a cheap httpx.AsyncClient over it (closing the client leaves the pool).
- `guarded_client(policy, ...)`: a standalone guarded httpx.AsyncClient that owns its pool.
- `client_for(shared, settings, ...)`: the node helper: a client over the worker's `Egress` when
  there is one, else a standalone one built from the settings.
- `without_cookies(client)`: a client shared between steps (the LLM SDKs') keeps no cookie: a
  cookie one team's call got would otherwise be sent with every later call of the client,
  another team's included (tests/integration/test_llm_client_isolation.py).
- Redirects: `follow_redirects=True` clients (give one to the openai SDK as
  `AsyncOpenAI(http_client=client)`) follow same-origin redirects only, a cross-origin one raises
  `EgressRefused`; `send_following(client, request, ...)` follows any redirect hop by hop and drops the
  caller's private headers when a hop leaves the origin (`redirects.py`).
"""

from __future__ import annotations

import ssl
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from flowstudio.egress.policy import (
    EgressError,
    EgressPolicy,
    EgressRefused,
    EgressTooLarge,
    EgressUnresolved,
    IPAddress,
    allow_listed,
    embedded_ipv4,
    is_public,
    refusal_reason,
    resolve_allowed,
)
from flowstudio.egress.redirects import refuse_cross_origin_redirect, same_origin, send_following
from flowstudio.egress.transport import GuardedTransport, PooledTransport

__all__ = [
    "Egress",
    "EgressError",
    "EgressPolicy",
    "EgressRefused",
    "EgressTooLarge",
    "EgressUnresolved",
    "IPAddress",
    "allow_listed",
    "client_for",
    "embedded_ipv4",
    "find_egress_error",
    "guarded_client",
    "is_public",
    "refusal_reason",
    "resolve_allowed",
    "same_origin",
    "send_following",
    "without_cookies",
]


def _client(
    transport: GuardedTransport, policy: EgressPolicy, timeout: float, follow_redirects: bool
) -> httpx.AsyncClient:
    """httpx follows redirects only for clients that ask (the SDK's), and only within the origin;
    others follow hop by hop with `send_following`."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=policy.max_redirects,
        trust_env=False,
        event_hooks={"response": [refuse_cross_origin_redirect]} if follow_redirects else None,
    )


def guarded_client(
    policy: EgressPolicy,
    *,
    timeout: float = 30.0,
    follow_redirects: bool = False,
    max_response_bytes: int | None = None,
    verify: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """A guarded client that owns its connection pool (closed with the client)."""
    transport = GuardedTransport(
        PooledTransport(policy, verify=verify),
        owns_inner=True,
        max_response_bytes=max_response_bytes or policy.max_response_bytes,
        max_seconds=policy.max_seconds,
    )
    return _client(transport, policy, timeout, follow_redirects)


class Egress:
    """A process's egress: the policy and one shared pinned pool (created on first use)."""

    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.verify = verify
        self._pool: PooledTransport | None = None

    def client(
        self,
        *,
        timeout: float = 30.0,
        follow_redirects: bool = False,
        max_response_bytes: int | None = None,
    ) -> httpx.AsyncClient:
        if self._pool is None:
            self._pool = PooledTransport(self.policy, verify=self.verify)
        transport = GuardedTransport(
            self._pool,
            owns_inner=False,
            max_response_bytes=max_response_bytes or self.policy.max_response_bytes,
            max_seconds=self.policy.max_seconds,
        )
        return _client(transport, self.policy, timeout, follow_redirects)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


def client_for(
    shared: Any,
    settings: Any,
    *,
    timeout: float = 30.0,
    follow_redirects: bool = False,
    max_response_bytes: int | None = None,
) -> httpx.AsyncClient:
    """A guarded client for a node: over the worker's `Egress` (`ctx.http`) if it is one."""
    if isinstance(shared, Egress):
        return shared.client(
            timeout=timeout,
            follow_redirects=follow_redirects,
            max_response_bytes=max_response_bytes,
        )
    return guarded_client(
        EgressPolicy.from_settings(settings),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_response_bytes=max_response_bytes,
    )


class _RefuseCookies(DefaultCookiePolicy):
    """Store no cookie and send none."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def without_cookies(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """`client`, made to keep no cookie from its responses (it may be shared between tenants)."""
    client.cookies = CookieJar(policy=_RefuseCookies())  # type: ignore[assignment]
    return client


def find_egress_error(exc: BaseException | None) -> EgressError | None:
    """The EgressError behind `exc` (SDKs wrap transport errors in their own), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, EgressError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
