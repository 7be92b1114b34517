"""The guarded transport against real local servers (127.0.0.2 / 127.0.0.3 only, never elsewhere).

Attack replays: a DNS name that flips between an allowed and a refused address (rebinding) never
reaches the refused one, because the socket goes to the address that was checked (the resolver is
asked once per connection, the Host header keeps the name, TLS verifies the name's certificate);
a redirect from an allowed server to a refused one is not followed; hop-by-hop redirects drop the
caller's headers when they leave the origin, and SDK-style clients refuse cross-origin redirects;
response size and time caps stop the read. `allowed` below is the CIDR 127.0.0.2/32, standing in for "a public address".
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from flowstudio.egress import (
    Egress,
    EgressPolicy,
    EgressRefused,
    EgressTooLarge,
    client_for,
    guarded_client,
    send_following,
)
from tests.support.tiny_http import TinyServer, same_port_pair

ALLOWED, REFUSED = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[TinyServer, TinyServer]]:
    good, bad = same_port_pair(ALLOWED, REFUSED)
    yield good, bad
    good.close()
    bad.close()


class FlippingResolver:
    """Answers `script[i]` on the i-th lookup (the last one for ever after)."""

    def __init__(self, *script: str) -> None:
        self.script, self.calls = list(script), 0

    async def __call__(self, host: str, port: int) -> list[str]:
        answer = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return [answer]


def test_rebinding_name_never_reaches_the_refused_address(
    pair: tuple[TinyServer, TinyServer],
) -> None:
    """The issue's replay: 60 requests, fresh connections, the name flipping on every lookup."""
    good, bad = pair
    bad_before = bad.hits
    resolver = FlippingResolver(*([ALLOWED, REFUSED] * 30))
    policy = EgressPolicy.from_allowed([ALLOWED], resolver=resolver)
    served: list[str] = []
    refused = 0

    async def attack() -> None:
        nonlocal refused
        for _ in range(60):
            async with guarded_client(policy) as client:  # a new pool: a new connection each time
                try:
                    resp = await client.get(good.url("/", host="flip.test"))
                    served.append(resp.json()["served_by"])
                except EgressRefused:
                    refused += 1

    anyio.run(attack)
    assert bad.hits == bad_before
    assert served == [ALLOWED] * 30 and refused == 30
    assert resolver.calls == 60  # one lookup per connection, none behind the check's back


def test_connection_goes_to_the_checked_address_with_the_name_as_host(
    pair: tuple[TinyServer, TinyServer],
) -> None:
    """A name that answers the allowed address once and the refused one ever after (as a second,
    unchecked lookup would see it) is reached at the checked address."""
    good, bad = pair
    bad_before = bad.hits
    resolver = FlippingResolver(ALLOWED, REFUSED)
    policy = EgressPolicy.from_allowed([ALLOWED], resolver=resolver)

    async def call() -> dict[str, str]:
        async with guarded_client(policy) as client:
            first = (await client.get(good.url("/", host="flip.test"))).json()
            again = (await client.get(good.url("/", host="flip.test"))).json()  # pooled
            assert again["served_by"] == ALLOWED
            return dict(first)

    body = anyio.run(call)
    assert body["served_by"] == ALLOWED and body["host"] == f"flip.test:{good.port}"
    assert resolver.calls == 1 and bad.hits == bad_before


def test_redirect_from_an_allowed_server_to_a_refused_one_is_not_followed(
    pair: tuple[TinyServer, TinyServer],
) -> None:
    good, bad = pair
    bad_before = bad.hits
    policy = EgressPolicy.from_allowed([ALLOWED], max_redirects=3)
    target = bad.url("/")

    async def call(path: str) -> httpx.Response:
        async with guarded_client(policy, follow_redirects=True) as client:
            return await client.get(good.url(path))

    with pytest.raises(EgressRefused) as info:
        anyio.run(call, f"/redirect?to={target}")
    assert "LOOPBACK-SECRET" not in str(info.value) and REFUSED in str(info.value)
    assert bad.hits == bad_before
    with pytest.raises(httpx.TooManyRedirects):
        anyio.run(call, "/redirect-loop")
    ok = anyio.run(call, f"/redirect?to={good.url('/')}")  # an allowed hop is followed
    assert ok.json()["served_by"] == ALLOWED


def test_response_body_is_capped(pair: tuple[TinyServer, TinyServer]) -> None:
    good, _ = pair
    policy = EgressPolicy.from_allowed([ALLOWED], max_response_bytes=100_000)

    async def fetch(path: str) -> int:
        async with guarded_client(policy) as client:
            return len((await client.get(good.url(path))).content)

    with pytest.raises(EgressTooLarge):
        anyio.run(fetch, "/big?n=5000000")  # streamed, no Content-Length: stopped at the cap
    with pytest.raises(EgressTooLarge):
        anyio.run(fetch, "/big-declared?n=200000")  # declared: refused before reading
    assert anyio.run(fetch, "/big?n=99000") == 99000


def test_slow_drip_is_stopped_by_the_total_time_cap(pair: tuple[TinyServer, TinyServer]) -> None:
    good, _ = pair
    policy = EgressPolicy.from_allowed([ALLOWED], max_seconds=1.0)

    async def fetch() -> None:
        async with guarded_client(policy, timeout=30) as client:  # per-read timeout never fires
            await client.get(good.url("/drip?n=100&every=0.2"))

    with pytest.raises(httpx.ReadTimeout):
        anyio.run(fetch)


def test_shared_egress_pool_survives_closing_a_borrowed_client(
    pair: tuple[TinyServer, TinyServer],
) -> None:
    good, _ = pair

    async def twice() -> list[str]:
        egress = Egress(EgressPolicy.from_allowed([ALLOWED]))
        seen = []
        for _ in range(2):
            async with client_for(egress, None) as client:
                seen.append((await client.get(good.url("/"))).json()["served_by"])
        await egress.aclose()
        return seen

    assert anyio.run(twice) == [ALLOWED, ALLOWED]


def _tls_pair(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA-signed certificate for `pinned.test` only: (server context, client context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


def test_tls_keeps_sni_and_certificate_checks_for_the_name(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_pair(tmp_path)
    server = TinyServer(ALLOWED, tls=server_ctx)
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment]

    async def resolver(host: str, port: int) -> list[str]:
        return [ALLOWED]

    policy = EgressPolicy.from_allowed([ALLOWED], resolver=resolver)

    async def get(host: str) -> httpx.Response:
        egress = Egress(policy, verify=client_ctx)
        try:
            async with egress.client() as client:
                return await client.get(server.url("/", host=host, scheme="https"))
        finally:
            await egress.aclose()

    try:
        body = anyio.run(get, "pinned.test").json()
        assert body["served_by"] == ALLOWED and body["host"] == f"pinned.test:{server.port}"
        assert seen_sni[-1] == "pinned.test"
        with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
            anyio.run(get, "other.test")  # same address, a name the certificate does not carry
    finally:
        server.close()


def test_hop_by_hop_redirects_keep_private_headers_with_their_origin(
    pair: tuple[TinyServer, TinyServer],
) -> None:
    """A redirect to another origin (allowed, here 127.0.0.2 -> 127.0.0.2 by another name) gets
    neither the node's custom headers nor its Authorization; a same-origin hop keeps them."""
    good, _ = pair
    policy = EgressPolicy.from_allowed([ALLOWED, "other.test"], resolver=_always(ALLOWED))
    private = {"x-api-key": "SECRET-KEY", "authorization": "Bearer SECRET-TOKEN"}

    async def follow(path: str) -> dict[str, str]:
        async with guarded_client(policy) as client:
            request = client.build_request("GET", good.url(path), headers=private)
            resp = await send_following(
                client, request, follow=True, max_redirects=3, private_headers=private
            )
            await resp.aread()
            await resp.aclose()
            return good.headers[-1]

    cross = anyio.run(follow, f"/redirect?to={good.url('/', host='other.test')}")
    assert cross["host"] == f"other.test:{good.port}"
    assert "x-api-key" not in cross and "authorization" not in cross
    same = anyio.run(follow, "/redirect?to=/landing")
    assert same["x-api-key"] == "SECRET-KEY" and same["authorization"] == "Bearer SECRET-TOKEN"


def test_sdk_style_client_follows_same_origin_and_refuses_cross_origin_redirects(
    pair: tuple[TinyServer, TinyServer],
) -> None:
    good, _ = pair
    policy = EgressPolicy.from_allowed([ALLOWED, "other.test"], resolver=_always(ALLOWED))
    hits_before = good.hits

    async def get(path: str) -> httpx.Response:
        async with guarded_client(policy, follow_redirects=True) as client:
            return await client.get(good.url(path))

    assert anyio.run(get, "/redirect?to=/landing").json()["served_by"] == ALLOWED
    with pytest.raises(EgressRefused, match="another origin"):
        anyio.run(get, f"/redirect?to={good.url('/', host='other.test')}")
    assert good.hits == hits_before + 3  # redirect + landing, then only the refused redirect


def _always(address: str) -> Any:
    async def resolver(host: str, port: int) -> list[str]:
        return [address]

    return resolver
