"""The egress decision: which addresses a flow may reach, and `resolve_allowed` (resolve once, check all).

`EgressPolicy` holds the operator's allow-list (HTTP_ALLOWED_HOSTS: host names, IPs and CIDRs), the
response limits and an injectable resolver. `is_public(ip)` is the address rule: an address is
reachable only if it is global unicast. IPv6 forms that carry an IPv4 address (IPv4-mapped
`::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo
`2001::/32`) are judged by the IPv4 address(es) inside them. Python's own `is_global` is too lax on
older patch releases (3.11.7 calls 2002::/16, 64:ff9b:1::/48, fec0::/10 and ff0e:: multicast global),
so the special-purpose ranges of the IANA registries are refused explicitly as well.
`refusal_reason(host, ip, policy)` answers None (allowed: public, or the host name or a CIDR holding the
address is allow-listed) or a short reason. `resolve_allowed(host, port, policy)` resolves the name
once (getaddrinfo off the event loop, or the policy's resolver) and returns the addresses only if
EVERY one is allowed, else raises `EgressRefused`; the caller must connect to one of exactly these
addresses (`transport.PinnedBackend` does), never resolve the name again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

DEFAULT_MAX_RESPONSE_BYTES = 10_000_000
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_MAX_SECONDS = 600.0


class EgressError(Exception):
    """Base of egress failures. `retryable` says whether trying again later can help."""

    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EgressRefused(EgressError):
    """The target (scheme, host or one of its addresses) is not allowed. Never retryable."""


class EgressUnresolved(EgressError):
    """The host name did not resolve (DNS may recover: retryable)."""

    retryable = True


class EgressTooLarge(EgressError):
    """The response body passed the configured size cap; the rest was not read."""


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# IANA special-purpose registries (IPv4 and IPv6) plus multicast/reserved: never global destinations.
DENIED_V4 = _nets(
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)  # fmt: skip
DENIED_V6 = _nets(
    "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10",
    "ff00::/8",
)  # fmt: skip
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(ip: IPAddress) -> bool:
    """Global unicast, judged by the IPv4 inside for the IPv6 forms that tunnel to IPv4."""
    inner = embedded_ipv4(ip)
    if inner:
        return all(is_public(v4) for v4 in inner)
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return False  # a zone index only makes sense for link-local targets
    denied = DENIED_V4 if isinstance(ip, ipaddress.IPv4Address) else DENIED_V6
    if any(ip in net for net in denied):
        return False
    return ip.is_global and not ip.is_multicast


def parse_address(text: str) -> IPAddress | None:
    """An IP literal (brackets and an IPv6 zone allowed), or None for a name."""
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo in a worker thread (never on the event loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class EgressPolicy:
    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_seconds: float = DEFAULT_MAX_SECONDS
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_allowed(cls, entries: Iterable[str], **limits: Any) -> EgressPolicy:
        """Parse HTTP_ALLOWED_HOSTS entries: an IP or CIDR is a network, anything else a name."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(normalize_host(entry))
        return cls(frozenset(names), tuple(networks), **limits)

    @classmethod
    def from_settings(cls, settings: Any) -> EgressPolicy:
        return cls.from_allowed(
            getattr(settings, "http_allowed_hosts", ()) or (),
            max_response_bytes=int(
                getattr(settings, "http_max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
            ),
            max_redirects=int(getattr(settings, "http_max_redirects", DEFAULT_MAX_REDIRECTS)),
            max_seconds=float(getattr(settings, "http_max_seconds", DEFAULT_MAX_SECONDS)),
        )


def allow_listed(host: str, ip: IPAddress, policy: EgressPolicy) -> bool:
    """The operator's allow-list: the host name, or a CIDR holding the address (or its IPv4)."""
    if normalize_host(host) in policy.allowed_names:
        return True
    return any(
        candidate in net
        for candidate in (ip, *embedded_ipv4(ip))
        for net in policy.allowed_networks
    )


def refusal_reason(host: str, ip: IPAddress, policy: EgressPolicy) -> str | None:
    """None if `host` may be reached at `ip`, else a short reason (no response content, ever)."""
    if allow_listed(host, ip, policy):
        return None
    if is_public(ip):
        return None
    return f"{ip} is not a public address"


async def resolve_allowed(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    """Resolve `host` once; return its addresses if every one is allowed, else EgressRefused.

    The stable entry point for anything that opens a connection on a flow's behalf (the HTTP
    transport here, a sandbox's proxy later): connect only to an address this returned.
    """
    name = normalize_host(host)
    if not name:
        raise EgressRefused("no host to connect to")
    literal = parse_address(name)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            found = await policy.resolver(name, port)
        except OSError as exc:
            raise EgressUnresolved(f"cannot resolve {name!r}: {exc.strerror or exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in found))
    if not addresses:
        raise EgressUnresolved(f"{name!r} has no address")
    for ip in addresses:
        reason = refusal_reason(name, ip, policy)
        if reason is not None:
            where = f"{name} resolves to {ip}: " if literal is None else ""
            raise EgressRefused(
                f"egress refused: {where}{reason} (HTTP_ALLOWED_HOSTS can allow it)"
            )
    return addresses
