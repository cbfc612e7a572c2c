"""Server-side request forgery guard: which addresses the gateway may connect to, checked where it connects.

Every outbound URL the gateway uses comes from configuration, the agency registry or untrusted documents (CRL and
OCSP URLs inside certificates), so where it may connect is decided here, once:

* :data:`BLOCKED_NETWORKS` (link-local ranges, where cloud instance-metadata services live, and the metadata
  endpoints that are not link-local) are always refused;
* loopback, private (RFC 1918, ``fc00::/7``), unspecified, multicast, reserved, shared (CGNAT ``100.64.0.0/10``) and
  every other non-public address are refused unless :attr:`AddressPolicy.allow_private` (tests, demos, intranets);
* :attr:`AddressPolicy.extra_blocked` adds networks (the gateway's own address, for instance).

IPv4 addresses embedded in IPv6 ones (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4) are judged as
the IPv4 address they carry, and legacy IPv4 spellings (``2852039166``, ``0xa9fea9fe``, ``127.1``) as the address
resolvers read them as.

:meth:`AddressPolicy.check_host` screens a host name before it is accepted (the agency registry); the transport from
:func:`adapters.connections.guarded_transport` resolves host names itself and checks the addresses it connects to,
so redirects and DNS rebinding (a name that resolves to a public address when registered and to a private one later)
cannot get around the policy. A name with any refused address is refused outright.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "BLOCKED_NETWORKS",
    "AddressPolicy",
    "BlockedAddressError",
    "IPAddress",
    "IPNetwork",
    "RefusedConnectError",
    "UnresolvableHostError",
    "is_blocked_address",
    "parse_address",
    "resolve_addresses",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Addresses never connected to, whatever the policy: link-local ranges (where cloud instance-metadata services
#: live) and the metadata endpoints that are not link-local.
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local; 169.254.169.254 is AWS/GCP/Azure/OCI metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS instance metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud instance metadata
)

_METADATA_REASON = "link-local or cloud metadata address"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the last 32 bits are the IPv4 destination.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_DEFAULT_RESOLVE_TIMEOUT = 5.0


class BlockedAddressError(ValueError):
    """A host or address the policy refuses; the message is one line fit for an operator."""


class UnresolvableHostError(BlockedAddressError):
    """A host name that could not be resolved (so it could not be screened) when it was checked."""


class RefusedConnectError(BlockedAddressError):
    """A connection refused where it was about to be made; the guarded transport raises ``httpx.ConnectError`` caused
    by this one."""


# ----------------------------------------------------------------------------------------------------------------------
# Parsing and judging addresses
# ----------------------------------------------------------------------------------------------------------------------


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address (bracketed IPv6, scope IDs and legacy IPv4 spellings included), or ``None``."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:  # inet_aton accepts what resolvers accept: "2852039166", "0xa9fea9fe", "169.254.43518", "127.1"
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _candidates(address: IPAddress) -> list[IPAddress]:
    """The IPv4 address ``address`` embeds, if any, then ``address`` itself (without a scope ID)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:  # "fe80::1%eth0": judge the address, not the interface
            address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return [embedded, address]
    return [address]


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (``None`` when it is one)."""
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    if address.is_multicast:
        return "multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT) address"
    if address.is_reserved:
        return "reserved address"
    if address.is_private:
        return "private address"
    if not address.is_global:
        return "non-public address"
    return None


def is_blocked_address(host: str) -> bool:
    """Whether ``host`` is an IP address (literal, in any spelling) in :data:`BLOCKED_NETWORKS`: never connected to.

    Host names are not resolved here (see :meth:`AddressPolicy.check_host`); loopback and private addresses are not
    "blocked" in this sense (see :class:`AddressPolicy`).
    """
    address = parse_address(host)
    return address is not None and any(_in_any(candidate, BLOCKED_NETWORKS) for candidate in _candidates(address))


# ----------------------------------------------------------------------------------------------------------------------
# Policy
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be connected to.

    :param allow_private: also allow loopback, private, CGNAT and other non-public addresses (tests, demos, agency
        systems on a government intranet). Link-local and cloud metadata addresses stay refused.
    :param extra_blocked: further networks always refused (the gateway's own addresses, for instance).
    """

    allow_private: bool = False
    extra_blocked: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        # Accept strings ("10.1.2.0/24") for convenience; store networks.
        networks = tuple(ipaddress.ip_network(net, strict=False) for net in self.extra_blocked)
        object.__setattr__(self, "extra_blocked", networks)

    def refuses(self, ip: IPAddress | str) -> str | None:
        """Why a connection to ``ip`` is refused, or ``None`` when it is allowed."""
        address = parse_address(ip) if isinstance(ip, str) else ip
        if address is None:
            return "not an IP address"
        candidates = _candidates(address)
        if any(_in_any(candidate, BLOCKED_NETWORKS) for candidate in candidates):
            return _METADATA_REASON
        if any(_in_any(candidate, self.extra_blocked) for candidate in candidates):
            return "address blocked by configuration"
        if not self.allow_private:
            # An address carrying an IPv4 one is where that IPv4 address is reached: judge the IPv4 address (the
            # IPv6 forms themselves, ::ffff:0:0/96 and 64:ff9b::/96, sit in ranges Python calls reserved).
            return _non_public_reason(candidates[0])
        return None

    def check_connection(self, host: str, addresses: Iterable[IPAddress | str]) -> None:
        """Raise :class:`RefusedConnectError` when any of ``addresses`` (where ``host`` would be connected to) is
        refused: a connection is made only when every address is allowed."""
        for address in addresses:
            reason = self.refuses(address)
            if reason is not None:
                raise RefusedConnectError(f"Refusing to connect to {host}: {reason}")

    def check_address(self, host: str, address: str) -> None:
        """Raise :class:`BlockedAddressError` when ``address`` (``host`` resolved) is refused."""
        reason = self.refuses(address)
        if reason is not None:
            shown = host if host == address else f"{host} ({address})"
            raise BlockedAddressError(f"Refusing to connect to {shown}: {reason}")

    def check_host(self, host: str, port: int, *, timeout: float = _DEFAULT_RESOLVE_TIMEOUT) -> None:
        """Screen ``host`` (a literal address, or a name resolved now, within ``timeout`` seconds).

        Raises :class:`BlockedAddressError` when it is, or resolves to any, refused address and
        :class:`UnresolvableHostError` when the name cannot be resolved. Passing this check does not make later
        connections safe (DNS may change): the guarded transport checks again where it connects.
        """
        name = _host_name(host)
        if parse_address(name) is not None:
            self.check_address(name, name)
            return
        for address in _resolve_blocking(name, port, timeout):
            self.check_address(name, address)

    async def check_host_async(self, host: str, port: int, *, timeout: float = _DEFAULT_RESOLVE_TIMEOUT) -> None:
        """:meth:`check_host` for async code (resolution does not block the event loop)."""
        name = _host_name(host)
        if parse_address(name) is not None:
            self.check_address(name, name)
            return
        try:
            addresses = await resolve_addresses(name, port, timeout)
        except httpx.ConnectError as exc:
            raise UnresolvableHostError(str(exc)) from exc
        for address in addresses:
            self.check_address(name, address)


def _host_name(host: str) -> str:
    name = host.strip().strip("[]")
    if not name:
        raise BlockedAddressError("Refusing an empty host name")
    return name


def _distinct_addresses(infos: Iterable[tuple[Any, ...]]) -> list[str]:
    addresses: list[str] = []
    for *_rest, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _resolve_blocking(host: str, port: int, timeout: float) -> list[str]:
    """``getaddrinfo`` with a deadline (run in a helper thread, abandoned when it does not answer in time)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netguard-resolve")
    try:
        future = executor.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        infos = future.result(timeout=timeout)
    except FutureTimeoutError as exc:
        raise UnresolvableHostError(f"Resolving {host} timed out after {timeout:g} s") from exc
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHostError(f"Cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from exc
    finally:
        executor.shutdown(wait=False)
    addresses = _distinct_addresses(infos)
    if not addresses:
        raise UnresolvableHostError(f"{host} has no address")
    return addresses


async def resolve_addresses(host: str, port: int, timeout: float | None) -> list[str]:
    """The distinct addresses of ``host`` in resolver order (an IP literal resolves to itself).

    Failures are ``httpx.ConnectTimeout`` and ``httpx.ConnectError``, as for a connection that could not be made.
    """
    loop = asyncio.get_running_loop()  # the gateway runs on asyncio (zeep, pyhanko-certvalidator)
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout
        )
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(f"Resolving {host} timed out") from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise httpx.ConnectError(f"Cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from exc
    addresses = _distinct_addresses(infos)
    if not addresses:
        raise httpx.ConnectError(f"{host} has no address")
    return addresses
