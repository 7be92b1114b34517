"""The egress decision (flowstudio.egress.policy), tested as the attacks of issue 9 were made.

Only decisions here: global addresses are judged, never connected to. The forms that passed the old
guard (100.64.0.0/10, the 6to4 and NAT64 faces of loopback, IPv4-mapped loopback, ...) are refused;
numeric host spellings (decimal, octal, hex, short) resolve to loopback and are refused; the
allow-list takes names and CIDRs; every resolved address must pass, not just one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import anyio
import pytest

from flowstudio.egress import (
    EgressPolicy,
    EgressRefused,
    EgressUnresolved,
    embedded_ipv4,
    is_public,
    refusal_reason,
    resolve_allowed,
)

REFUSED = [
    "100.64.0.1",  # shared address space (CGNAT)
    "100.100.100.200",  # a cloud's metadata service
    "2002:7f00:1::1",  # 6to4 form of 127.0.0.1
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 form of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
    "::7f00:1",  # IPv4-compatible loopback
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
    "0.0.0.0",
    "::",
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "192.0.0.170",
    "192.88.99.1",  # 6to4 relay anycast
    "198.18.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "fd00::1",
    "fe80::1",
    "fec0::1",
    "ff0e::1",  # global-scope multicast (Python 3.11.7 calls it global)
    "64:ff9b:1::1",
    "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_address_is_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_public(ip)
    assert refusal_reason("example.com", ip, EgressPolicy()) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_global_address_is_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_public(ip)
    assert refusal_reason("example.com", ip, EgressPolicy()) is None


def test_tunnelled_forms_are_judged_by_the_ipv4_inside() -> None:
    loop = ipaddress.IPv4Address("127.0.0.1")
    for form in ("::ffff:127.0.0.1", "2002:7f00:1::1", "64:ff9b::7f00:1", "::7f00:1"):
        assert loop in embedded_ipv4(ipaddress.ip_address(form)), form


def _policy(entries: Sequence[str], answers: dict[str, list[str]] | None = None) -> EgressPolicy:
    async def resolver(host: str, port: int) -> list[str]:
        if answers is None or host not in answers:
            raise OSError(-2, "Name or service not known")
        return answers[host]

    return EgressPolicy.from_allowed(entries, resolver=resolver)


def test_allow_list_takes_names_ips_and_cidrs() -> None:
    policy = EgressPolicy.from_allowed(["LocalHost.", "10.0.0.0/8", "[::1]", "127.0.0.2"])
    assert refusal_reason("localhost", ipaddress.ip_address("127.0.0.9"), policy) is None
    assert refusal_reason("x.test", ipaddress.ip_address("10.200.0.1"), policy) is None
    assert refusal_reason("x.test", ipaddress.ip_address("::ffff:10.200.0.1"), policy) is None
    assert refusal_reason("x.test", ipaddress.ip_address("::1"), policy) is None
    assert refusal_reason("x.test", ipaddress.ip_address("127.0.0.2"), policy) is None
    assert refusal_reason("x.test", ipaddress.ip_address("127.0.0.3"), policy) is not None
    assert refusal_reason("x.test", ipaddress.ip_address("100.64.0.1"), policy) is not None


@pytest.mark.parametrize(
    "host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "017700000001"]
)
def test_numeric_spellings_of_loopback_are_refused(host: str) -> None:
    """The system resolver reads these as 127.0.0.1 (inet_aton rules); the check sees that."""
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1"):
        anyio.run(resolve_allowed, host, 80, EgressPolicy())


def test_literal_forms_are_refused_without_resolving() -> None:
    policy = _policy([])  # any lookup would raise EgressUnresolved
    for host in ("[::ffff:127.0.0.1]", "0.0.0.0", "[::]", "[2002:7f00:1::1]", "100.100.100.200"):
        with pytest.raises(EgressRefused):
            anyio.run(resolve_allowed, host, 80, policy)


def test_every_resolved_address_must_be_allowed() -> None:
    policy = _policy(["127.0.0.2"], {"mixed.test": ["127.0.0.2", "127.0.0.3"]})
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.3"):
        anyio.run(resolve_allowed, "mixed.test", 80, policy)
    policy = _policy(["127.0.0.2"], {"one.test": ["127.0.0.2"]})
    assert anyio.run(resolve_allowed, "one.test", 80, policy) == [ipaddress.ip_address("127.0.0.2")]


def test_unresolvable_name_is_retryable_and_not_a_refusal() -> None:
    with pytest.raises(EgressUnresolved) as info:
        anyio.run(resolve_allowed, "nowhere.test", 80, _policy([]))
    assert info.value.retryable


def test_default_settings_refuse_loopback() -> None:
    """No HTTP_ALLOWED_HOSTS: loopback by name and by address is refused."""

    class Settings:
        http_allowed_hosts: tuple[str, ...] = ()

    policy = EgressPolicy.from_settings(Settings())
    for host in ("localhost", "127.0.0.1", "[::1]"):
        with pytest.raises(EgressRefused):
            anyio.run(resolve_allowed, host, 80, policy)
