"""Screening of the URLs in an agency registration: scheme, credentials, and where they point.

Every URL of a registration (``endpoint``, ``wsdl``, ``auth.token_url``) must be http(s) (https unless ``[registry]
allow_insecure_http``), carry no credentials, and point neither at the gateway itself nor at an address the
:class:`adapters.netguard.AddressPolicy` refuses (loopback and private ones only with ``[registry]
allow_private_endpoints``; link-local and cloud metadata ones never). Host names are resolved to be screened, except
for an offline registration (``resolve=False``, ``agency register --no-check``): then only literal addresses and
``localhost`` are screened here, and names are screened where the gateway connects (the guarded transport checks
every address it connects to, for every delivery), so registering needs no DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from adapters.netguard import AddressPolicy, BlockedAddressError, UnresolvableHostError, parse_address

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["RegistrySettings", "check_url"]

_UNSPECIFIED = ("", "0.0.0.0", "::")  # noqa: S104 - the bind-all addresses, compared against, never bound here
_LOOPBACK = ipaddress.ip_address("127.0.0.1")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class RegistrySettings:
    """``[registry]`` and the gateway's own ``[server]`` address, as registration needs them."""

    #: Endpoints on loopback or private addresses (tests, demos, an agency inside the province's own network).
    allow_private_endpoints: bool = False
    #: Plain http endpoints; ``None`` means "as allow_private_endpoints" (on only where private ones are).
    allow_insecure_http: bool | None = None
    #: Secrets only as ``env:``/``file:`` references, never inline in the document.
    strict_secrets: bool = True
    server_host: str = "127.0.0.1"
    server_port: int = 8080
    #: ``[registry] wsdl_*``: the limits on loading a SOAP agency's WSDL (the section's defaults).
    wsdl_max_document_bytes: int = 8 * 1024 * 1024
    wsdl_max_total_bytes: int = 16 * 1024 * 1024
    wsdl_max_documents: int = 32
    wsdl_load_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.allow_insecure_http is None:
            object.__setattr__(self, "allow_insecure_http", self.allow_private_endpoints)

    @classmethod
    def of(cls, settings: Settings) -> RegistrySettings:
        """The ``[registry]`` section and the ``[server]`` address of ``settings``."""
        registry = settings.registry
        return cls(
            allow_private_endpoints=registry.allow_private_endpoints,
            allow_insecure_http=registry.allow_insecure_http,
            strict_secrets=registry.strict_secrets,
            server_host=settings.server.host,
            server_port=settings.server.port,
            wsdl_max_document_bytes=registry.wsdl_max_document_bytes,
            wsdl_max_total_bytes=registry.wsdl_max_total_bytes,
            wsdl_max_documents=registry.wsdl_max_documents,
            wsdl_load_timeout_seconds=float(registry.wsdl_load_timeout_seconds),
        )


def _literal(host: str) -> Address | None:
    """The address ``host`` is without asking DNS: an IP literal, or loopback for ``localhost`` (RFC 6761)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return _LOOPBACK
    literal = parse_address(name)
    return None if literal is None else _plain(literal)


def _resolve(host: str, *, dns: bool = True) -> set[Address]:
    """The addresses ``host`` stands for (itself, for an IP literal); empty when it does not resolve (or ``dns`` is
    off and it is a name)."""
    literal = _literal(host)
    if literal is not None:
        return {literal}
    if not dns:
        return set()
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    return {_plain(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])) for info in infos}


def _plain(address: Address) -> Address:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _local_addresses() -> set[Address]:
    """The host's own addresses, as far as its name says (the gateway listening on 0.0.0.0 answers on them all)."""
    return _resolve(socket.gethostname()) | _resolve("localhost")


def _is_gateway_itself(host: str, port: int, settings: RegistrySettings, *, dns: bool) -> bool:
    if port != settings.server_port:
        return False
    if host.lower() == settings.server_host.lower().strip("[]"):
        return True
    targets = _resolve(host, dns=dns)
    if settings.server_host in _UNSPECIFIED:
        own = _local_addresses() if dns else set()
        return any(a.is_loopback or a.is_unspecified or a in own for a in targets)
    own = _resolve(settings.server_host, dns=dns)
    return any(a.is_unspecified or a in own for a in targets)


def check_url(field: str, url: str, settings: RegistrySettings, *, resolve: bool = True) -> list[dict[str, str]]:
    """The problems of ``url`` (given as registration ``field``): ``[{"field", "message"}]``, empty when none.

    ``resolve=False`` screens literal addresses and ``localhost`` only, never asking DNS (see the module's text).
    """
    policy = AddressPolicy(allow_private=settings.allow_private_endpoints)

    def refuse(message: str) -> list[dict[str, str]]:
        return [{"field": field, "message": message}]

    if not url:
        return refuse("must not be empty")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return refuse("not a valid URL: it contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return refuse(f"not a valid URL: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return refuse(f"URL scheme must be https or http, got {scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        return refuse("not a valid URL: no host")
    problems = []
    if scheme == "http" and not settings.allow_insecure_http:
        problems += refuse("must use https (plain http only with [registry] allow_insecure_http = true)")
    if parts.username is not None or parts.password is not None:
        problems += refuse("credentials in the URL are refused: give them in auth")
    port = port or (443 if scheme == "https" else 80)
    if _is_gateway_itself(host, port, settings, dns=resolve):
        return [*problems, *refuse(f"{host}:{port} is the gateway's own address ([server] host/port)")]
    literal = _literal(host)
    if not resolve and literal is None:
        return problems  # a name: screened where the gateway connects to it
    screened = host if resolve or literal is None else str(literal)
    try:
        policy.check_host(screened, port)
    except BlockedAddressError as exc:
        message = str(exc)
        message = message[:1].lower() + message[1:]
        if not policy.allow_private and not isinstance(exc, UnresolvableHostError) and _private_only(screened, port):
            message += " (allowed only with [registry] allow_private_endpoints = true)"
        problems += refuse(message)
    return problems


def _private_only(host: str, port: int) -> bool:
    """Whether ``host`` is refused only for being loopback/private (not link-local or metadata)."""
    try:
        AddressPolicy(allow_private=True).check_host(host, port)
    except BlockedAddressError:
        return False
    return True
