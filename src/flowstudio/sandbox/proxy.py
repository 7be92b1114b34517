"""The worker-side egress proxy: the code sandbox's only way out, through the SSRF/egress guard.

`egress_proxy(allowed)` (async context manager, one per execution with `allow_network: true`)
listens on a fresh Unix socket in a 0700 temp dir and yields its path; bwrap binds it into the
sandbox, where the launcher's forwarder relays 127.0.0.1:<port> to it. Per connection `_serve`
reads one request head (16 KiB max, 10 s): `CONNECT host:port` (https; the TLS stays end to end)
(to port 443 only: a tunnel is raw TCP, and must not reach e.g. an allow-listed host's database
port) or an absolute-URI request (`GET http://host/path`, plain http; what goes upstream always
starts with that request's head). `egress_address(host, port,
allowed)` resolves ONCE and checks every address with the egress guard; the proxy then connects to
that checked address (no second resolution) and pipes bytes both ways. A refused target gets
`403` with the guard's reason and no connection is made; other schemes, bad heads or unreachable
targets get 400/502. The listener and every relay stop when the context exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream, SocketStream

from flowstudio.egress.policy import EgressError, EgressPolicy, resolve_allowed

log = logging.getLogger(__name__)

HEAD_LIMIT = 16 * 1024
CONNECT_PORTS = (443,)  # a CONNECT tunnel is raw TCP: only to the https port
HOP_HEADERS = (b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive")


async def egress_address(host: str, port: int, allowed: tuple[str, ...]) -> str:
    """THE one call into the egress guard (`flowstudio.egress.resolve_allowed`, the same check as
    every other outbound call of a flow): resolve once, refuse unless every address passes, return
    the address to connect to."""
    addrs = await resolve_allowed(host, port, EgressPolicy.from_allowed(allowed))
    if not addrs:
        raise EgressError(f"cannot resolve {host!r}")
    return str(addrs[0])


def _reply(status: str, reason: str) -> bytes:
    body = reason.encode()[:2000]
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def _read_head(stream: ByteStream) -> tuple[bytes, bytes]:
    buf = b""
    with anyio.fail_after(10):
        while b"\r\n\r\n" not in buf:
            if len(buf) > HEAD_LIMIT:
                raise ValueError("request head too large")
            buf += await stream.receive()
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _target(head: bytes) -> tuple[bool, str, int, bytes]:
    """(is_connect, host, port, the head to send upstream; empty for CONNECT)."""
    request_line, *headers = head.split(b"\r\n")
    method, target, version = request_line.split(b" ", 2)
    if method.upper() == b"CONNECT":
        hostport = urlsplit("//" + target.decode("ascii"))
        if not hostport.hostname:
            raise ValueError("CONNECT needs host:port")
        return True, hostport.hostname, hostport.port or 443, b""
    url = urlsplit(target.decode("ascii"))
    if url.scheme != "http" or not url.hostname:
        raise ValueError("only absolute http:// URIs or CONNECT are proxied")
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [h for h in headers if h.split(b":", 1)[0].strip().lower() not in HOP_HEADERS]
    upstream = b"\r\n".join(
        [b" ".join([method, path.encode(), version]), *kept, b"Connection: close", b"", b""]
    )
    return False, url.hostname, url.port or 80, upstream


async def _pipe(src: ByteStream, dst: ByteStream) -> None:
    try:
        async for chunk in src:
            await dst.send(chunk)
        await dst.send_eof()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def _serve(client: SocketStream, allowed: tuple[str, ...]) -> None:
    async with client:
        try:
            head, rest = await _read_head(client)
            is_connect, host, port, upstream_head = _target(head)
        except (ValueError, UnicodeError, TimeoutError, anyio.EndOfStream) as exc:
            await _safe_send(client, _reply("400 Bad Request", f"egress proxy: {exc}"))
            return
        if is_connect and port not in CONNECT_PORTS:
            reason = f"CONNECT only to port {', '.join(map(str, CONNECT_PORTS))} (https)"
            await _safe_send(client, _reply("403 Forbidden", reason))
            return
        try:
            addr = await egress_address(host, port, allowed)
        except EgressError as exc:
            log.info("code sandbox egress refused: %s:%s (%s)", host, port, exc.reason)
            await _safe_send(client, _reply("403 Forbidden", exc.reason))
            return
        try:
            with anyio.fail_after(10):
                upstream = await anyio.connect_tcp(addr, port)
        except (OSError, TimeoutError) as exc:
            await _safe_send(client, _reply("502 Bad Gateway", f"cannot connect: {exc}"))
            return
        async with upstream:
            if is_connect:
                await client.send(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                await upstream.send(upstream_head)
            if rest:
                await upstream.send(rest)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pipe, client, upstream)
                tg.start_soon(_pipe, upstream, client)


async def _safe_send(stream: ByteStream, data: bytes) -> None:
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(data)


@asynccontextmanager
async def egress_proxy(allowed: tuple[str, ...]) -> AsyncIterator[str]:
    """Serve the proxy for the duration of one execution; yields the Unix socket's path."""
    directory = tempfile.mkdtemp(prefix="fs-egress-")
    path = os.path.join(directory, "egress.sock")
    try:
        listener = await anyio.create_unix_listener(path)
        os.chmod(path, 0o600)
        async with listener, anyio.create_task_group() as tg:

            async def handle(client: SocketStream) -> None:
                await _serve(client, allowed)

            tg.start_soon(listener.serve, handle)
            try:
                yield path
            finally:
                tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
