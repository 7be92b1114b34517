"""The guarded httpx transport: every connection goes to an address `resolve_allowed` just checked.

- `PinnedBackend` (an httpcore network backend): `connect_tcp(host, port)` resolves the host ONCE with
  `resolve_allowed` (every address must pass the policy) and opens the socket to one of those very
  addresses. httpcore still uses the URL's host for the Host header and for TLS (SNI and certificate
  verification), because only the socket's peer changes. So a name that flips between an allowed and
  a loopback address (DNS rebinding) cannot steer the connection after the check. Unix sockets are
  refused. Its streams are `CheapReadableStream`s (the pool's per-request liveness scan of idle
  connections stays cheap).
- `PooledTransport`: httpx's `AsyncHTTPTransport` whose pool (httpcore's, with `egress/pool.py`'s
  linear assignment pass) uses `PinnedBackend`, with no proxy and no environment
  (`trust_env=False`), so HTTP(S)_PROXY cannot route around the guard.
- `GuardedTransport`: in front of a pooled transport (owned, or borrowed from an `Egress`), it refuses
  non-http(s) URLs, bounds the whole exchange by `max_seconds` (headers and body), refuses a declared
  Content-Length above `max_response_bytes` and counts streamed bytes against it (`EgressTooLarge`
  stops the read). Redirects are httpx's own, off unless a caller turns them on, and capped at the
  policy's `max_redirects`; each hop is a new request through this transport, so it is checked again.
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import nullcontext
from functools import lru_cache
from typing import Any

import anyio
import httpcore
import httpx

from flowstudio.egress.policy import (
    EgressPolicy,
    EgressRefused,
    EgressTooLarge,
    EgressUnresolved,
    resolve_allowed,
)
from flowstudio.egress.pool import LeanConnectionPool

SCHEMES = frozenset({"http", "https"})
# No cap on connections, and none on idle ones either (they still close after 5 s idle): httpcore
# compares ALL of a pool's connections with max_keepalive_connections, so with 100 a worker holding
# more than 100 calls to one provider closed each connection as its call ended and opened (and
# checked) a new one for the next.
DEFAULT_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=None)


@lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """One verifying context (certifi roots) per process: building one costs milliseconds."""
    return httpx.create_ssl_context()


def socket_readable(sock: socket.socket | None) -> bool:
    """Whether `recv` would return at once (data or the peer's close); a gone socket counts as
    readable, so the pool drops its connection (as httpcore's own check does)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class CheapReadableStream(httpcore.AsyncNetworkStream):
    """httpcore's network stream with a cheap `is_readable`. The connection pool asks it of every
    idle connection on every request and every response (a scan of the whole pool), and anyio's
    stream rebuilds its attribute table for each ask: with 64 connections to one provider that
    doubled the CPU of an LLM call. The raw socket is looked up once; the rest is delegated."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        self.sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(
        self, max_bytes: int, timeout: float | None = None  # noqa: ASYNC109 (httpcore interface)
    ) -> bytes:
        return await self.inner.read(max_bytes, timeout)

    async def write(
        self, buffer: bytes, timeout: float | None = None  # noqa: ASYNC109 (httpcore interface)
    ) -> None:
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
    ) -> httpcore.AsyncNetworkStream:
        return CheapReadableStream(
            await self.inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return socket_readable(self.sock)
        return self.inner.get_extra_info(info)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout) if timeout else nullcontext():
                addresses = await resolve_allowed(host, port, self.policy)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
        except EgressUnresolved as exc:
            raise httpcore.ConnectError(exc.reason) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return CheapReadableStream(
                    await self.inner.connect_tcp(
                        str(address), port, timeout, local_address, socket_options
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("egress refused: unix sockets are not reachable from flows")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PooledTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the pinned backend; `_pool` is replaced right after construction."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        context = verify or default_ssl_context()
        super().__init__(verify=context, trust_env=False, limits=limits)
        self._pool = LeanConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy),
        )


class CappedStream(httpx.AsyncByteStream):
    """A response body that stops at `cap` bytes and at the exchange's deadline."""

    def __init__(
        self, inner: httpx.AsyncByteStream, cap: int, deadline: float, request: httpx.Request
    ) -> None:
        self.inner, self.cap, self.deadline, self.request = inner, cap, deadline, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        chunks = self.inner.__aiter__()
        while True:
            chunk = b""
            with anyio.move_on_after(max(0.0, self.deadline - anyio.current_time())) as scope:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught:
                raise httpx.ReadTimeout(
                    "response exceeded the egress time limit", request=self.request
                )
            seen += len(chunk)
            if seen > self.cap:
                raise EgressTooLarge(f"response larger than {self.cap} bytes (not read further)")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: PooledTransport,
        *,
        owns_inner: bool,
        max_response_bytes: int,
        max_seconds: float,
    ) -> None:
        self.inner = inner
        self.owns_inner = owns_inner
        self.max_response_bytes = max_response_bytes
        self.max_seconds = max_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in SCHEMES or not request.url.host:
            raise EgressRefused(
                f"egress refused: only http(s) URLs with a host ({request.url.scheme}:)"
            )
        deadline = anyio.current_time() + self.max_seconds
        with anyio.move_on_after(self.max_seconds) as scope:
            response = await self.inner.handle_async_request(request)
        if scope.cancelled_caught:
            raise httpx.ReadTimeout("no response within the egress time limit", request=request)
        declared = response.headers.get("content-length", "")
        too_big = declared.isdigit() and int(declared) > self.max_response_bytes
        if too_big and request.method != "HEAD":  # a HEAD answer declares a body it does not send
            await response.aclose()
            raise EgressTooLarge(
                f"response of {declared} bytes is larger than {self.max_response_bytes} bytes"
            )
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = CappedStream(response.stream, self.max_response_bytes, deadline, request)
        return response

    async def aclose(self) -> None:
        if self.owns_inner:
            await self.inner.aclose()
