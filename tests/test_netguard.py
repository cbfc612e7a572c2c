"""The SSRF guard: address policy, host screening and the connect-time check of the guarded transport."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.connections import guarded_transport
from adapters.errors import PermanentError
from adapters.http import map_http_errors
from adapters.netguard import (
    BLOCKED_NETWORKS,
    AddressPolicy,
    BlockedAddressError,
    UnresolvableHostError,
    is_blocked_address,
    parse_address,
)

DEFAULT = AddressPolicy()
PRIVATE_OK = AddressPolicy(allow_private=True)

ALWAYS_REFUSED = [
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.100.100.200",  # Alibaba metadata
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",
    "[fe80::1]",
    "fe80::abcd%eth0",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "[::ffff:a9fe:a9fe]",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2852039166",  # 169.254.169.254 as one decimal number
    "0xa9fea9fe",
    "0251.0376.0251.0376",  # octal
    "169.254.43518",
]

PRIVATE = [
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("2130706433", "loopback"),  # 127.0.0.1 as one decimal number
    ("0x7f000001", "loopback"),
    ("017700000001", "loopback"),
    ("::1", "loopback"),
    ("[::1]", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.10", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("::ffff:10.1.2.3", "private"),
    ("64:ff9b::a00:1", "private"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "address"),  # documentation range: not public
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "203.162.4.190", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("host", ALWAYS_REFUSED)
def test_link_local_and_metadata_are_always_refused(host):
    for policy in (DEFAULT, PRIVATE_OK):
        assert policy.refuses(host) == "link-local or cloud metadata address"
        with pytest.raises(BlockedAddressError, match="metadata"):
            policy.check_host(host, 80)
    assert is_blocked_address(host)


@pytest.mark.parametrize(("host", "kind"), PRIVATE)
def test_non_public_addresses_are_refused_unless_allowed(host, kind):
    reason = DEFAULT.refuses(host)
    assert reason is not None and kind in reason
    with pytest.raises(BlockedAddressError) as caught:
        DEFAULT.check_host(host, 443)
    message = str(caught.value)
    assert "\n" not in message and kind in message
    assert PRIVATE_OK.refuses(host) is None
    PRIVATE_OK.check_host(host, 443)
    assert not is_blocked_address(host)  # "blocked" is the never-ever list only


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_allowed(host):
    assert DEFAULT.refuses(host) is None
    DEFAULT.check_host(host, 443)


def test_extra_blocked_networks_are_refused_even_when_private_is_allowed():
    policy = AddressPolicy(allow_private=True, extra_blocked=("10.20.0.0/16", ipaddress.ip_network("2001:db8::/32")))
    assert policy.refuses("10.20.1.1") == "address blocked by configuration"
    assert policy.refuses("::ffff:10.20.1.1") == "address blocked by configuration"
    assert policy.refuses("2001:db8::5") == "address blocked by configuration"
    assert policy.refuses("10.21.0.1") is None


def test_parse_address_spellings():
    assert parse_address("2852039166") == ipaddress.ip_address("169.254.169.254")
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_address("agency.gov.vn") is None
    assert parse_address("") is None
    assert not is_blocked_address("agency.gov.vn")  # names are not resolved by is_blocked_address


@given(st.integers(min_value=0, max_value=2**16 - 1))
def test_every_link_local_ipv4_is_refused_in_every_spelling(low):
    address = ipaddress.IPv4Address(int(ipaddress.IPv4Address("169.254.0.0")) + low)
    for spelling in (str(address), str(int(address)), f"::ffff:{address}", hex(int(address))):
        assert PRIVATE_OK.refuses(spelling) == "link-local or cloud metadata address", spelling


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_mapped_addresses_are_judged_as_their_ipv4_address(value):
    address = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    for policy in (DEFAULT, PRIVATE_OK):
        assert policy.refuses(mapped) == policy.refuses(address)


def test_blocked_networks_are_the_documented_ones():
    assert ipaddress.ip_network("169.254.0.0/16") in BLOCKED_NETWORKS
    assert ipaddress.ip_network("fe80::/10") in BLOCKED_NETWORKS


# ----------------------------------------------------------------------------------------------------------------------
# Host names
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_dns(monkeypatch) -> dict[str, list[str]]:
    """Names ending in ``.test`` resolve to the addresses listed here (a list per lookup when it is a list of lists)."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            entry = table[name]
            addresses = entry.pop(0) if entry and isinstance(entry[0], list) else entry
            if not addresses:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (address, port),
                )
                for address in addresses
            ]
        if name.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def test_host_names_are_resolved_and_every_address_is_checked(fake_dns):
    fake_dns["public.test"] = ["203.162.4.190"]
    fake_dns["intranet.test"] = ["10.0.0.5"]
    fake_dns["mixed.test"] = ["203.162.4.190", "127.0.0.1"]
    fake_dns["metadata.test"] = ["169.254.169.254"]
    DEFAULT.check_host("public.test", 443)
    with pytest.raises(BlockedAddressError, match=r"intranet\.test \(10\.0\.0\.5\): private address"):
        DEFAULT.check_host("intranet.test", 443)
    PRIVATE_OK.check_host("intranet.test", 443)
    with pytest.raises(BlockedAddressError, match="loopback"):
        DEFAULT.check_host("mixed.test", 443)
    with pytest.raises(BlockedAddressError, match="metadata"):
        PRIVATE_OK.check_host("metadata.test", 443)
    with pytest.raises(UnresolvableHostError, match=r"Cannot resolve nowhere\.test"):
        DEFAULT.check_host("nowhere.test", 443)
    with pytest.raises(BlockedAddressError, match="empty"):
        DEFAULT.check_host("", 443)


async def test_async_host_check(fake_dns):
    fake_dns["intranet.test"] = ["10.0.0.5"]
    fake_dns["public.test"] = ["203.162.4.190"]
    await DEFAULT.check_host_async("public.test", 443)
    with pytest.raises(BlockedAddressError, match="private"):
        await DEFAULT.check_host_async("intranet.test", 443)
    with pytest.raises(BlockedAddressError, match="metadata"):
        await DEFAULT.check_host_async("169.254.169.254", 80)
    with pytest.raises(UnresolvableHostError):
        await DEFAULT.check_host_async("nowhere.test", 443)


# ----------------------------------------------------------------------------------------------------------------------
# Connect-time enforcement
# ----------------------------------------------------------------------------------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        body = f"host={self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def _get(policy: AddressPolicy, url: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=guarded_transport(policy), timeout=5) as client:
        return await client.get(url)


async def test_a_name_resolving_to_a_blocked_address_is_refused_at_connect_time(fake_dns, local_server, connections):
    fake_dns["rebind.test"] = ["127.0.0.1"]
    with pytest.raises(httpx.ConnectError, match="loopback") as caught:
        await _get(DEFAULT, f"http://rebind.test:{local_server}/")
    assert isinstance(caught.value.__cause__, BlockedAddressError)
    fake_dns["metadata.test"] = ["169.254.169.254"]
    with pytest.raises(httpx.ConnectError, match="metadata"):
        await _get(PRIVATE_OK, "http://metadata.test/latest/meta-data/")
    assert connections == []


async def test_dns_rebinding_after_the_registration_check_is_caught(fake_dns, local_server, connections):
    # Public when the registry looks, loopback when the gateway connects.
    fake_dns["agency.test"] = [["203.162.4.190"], ["127.0.0.1"]]
    DEFAULT.check_host("agency.test", local_server)
    with pytest.raises(httpx.ConnectError, match="loopback"):
        await _get(DEFAULT, f"http://agency.test:{local_server}/")
    assert connections == []


async def test_literal_addresses_in_any_spelling_are_refused_at_connect_time(connections):
    for url in ("http://2130706433:9/", "http://[::ffff:127.0.0.1]:9/", "http://0x7f000001:9/"):
        with pytest.raises(httpx.ConnectError, match="loopback"):
            await _get(DEFAULT, url)
    with pytest.raises(httpx.ConnectError, match="metadata"):
        await _get(PRIVATE_OK, "http://2852039166/")
    assert connections == []


async def test_one_transport_judges_every_request_it_sends(fake_dns, local_server, connections):
    """A transport remembers the hosts it let through, never the ones it refused: a refused address is refused at
    every request, and a name is resolved and judged at every new connection."""
    async with httpx.AsyncClient(transport=guarded_transport(DEFAULT), timeout=5) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError, match="loopback"):
                await client.get("http://2130706433:9/")
            with pytest.raises(httpx.ConnectError, match="metadata"):
                await client.get("http://169.254.169.254/")
    assert connections == []
    fake_dns["motcua.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    transport = guarded_transport(PRIVATE_OK, limits=httpx.Limits(max_keepalive_connections=0))
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        for _ in range(2):
            assert (await client.get(f"http://127.0.0.1:{local_server}/")).status_code == 200
        assert (await client.get(f"http://motcua.test:{local_server}/")).status_code == 200
        with pytest.raises(httpx.ConnectError, match="metadata"):
            await client.get(f"http://motcua.test:{local_server}/")
    assert connections == ["127.0.0.1", "127.0.0.1", "127.0.0.1"]


async def test_allowed_names_connect_to_the_resolved_address_with_the_original_host(
    fake_dns, local_server, connections
):
    fake_dns["motcua.test"] = ["127.0.0.1"]
    response = await _get(PRIVATE_OK, f"http://motcua.test:{local_server}/")
    assert response.status_code == 200
    assert response.text == f"host=motcua.test:{local_server}"
    assert connections == ["127.0.0.1"]


async def test_a_refused_connection_maps_to_a_permanent_error(fake_dns):
    fake_dns["rebind.test"] = ["10.1.1.1"]
    with pytest.raises(PermanentError, match="private address"):
        with map_http_errors("agency:test"):
            await _get(DEFAULT, "http://rebind.test/")


def test_transport_refuses_proxies_and_unix_sockets():
    for kwargs in ({"proxy": "http://proxy.example:3128"}, {"uds": "/tmp/sock"}, {"trust_env": True}):
        with pytest.raises(ValueError, match="does not support"):
            guarded_transport(DEFAULT, **kwargs)
