"""Outbound connections keep their socket at hand: kept-alive connections are used again, and one the server closed
while it was idle is not (plain TCP and TLS, against real servers on loopback)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import pytest

from adapters.http import ClientFactory, ClientSettings
from adapters.netguard import GuardedNetworkBackend
from adapters.netstream import KeptSocketStream
from tests.adapters_http_support import LOCAL
from tests.pki import issue_cert


@dataclass
class _Server:
    """An HTTP/1.1 server answering every request with keep-alive; ``close_after`` answers, it closes the connection
    (having said it would keep it), once ``release`` is set: ``closing`` is set when it starts to, ``closed`` when the
    socket is closed."""

    close_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                body = f"connection {self.connections}".encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                answered += 1
                if self.close_after is not None and answered >= self.close_after:
                    await self.release.wait()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        self.closing.set()
        await writer.wait_closed()
        self.closed.set()


@asynccontextmanager
async def _serving(server: _Server, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await listener.wait_closed()


async def test_a_kept_alive_connection_is_used_again():
    server = _Server()
    async with _serving(server) as port:
        settings = ClientSettings(base_url=f"http://127.0.0.1:{port}", address_policy=LOCAL)
        async with ClientFactory().client("agency:keep", settings) as client:
            answers = [(await client.post("/dossiers", content=b"{}")).text for _ in range(5)]
    assert answers == ["connection 1"] * 5
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_used_again():
    server = _Server(close_after=1)
    async with _serving(server) as port:
        settings = ClientSettings(base_url=f"http://127.0.0.1:{port}", address_policy=LOCAL)
        async with ClientFactory().client("agency:close", settings) as client:
            first = await client.get("/")
            server.release.set()
            await server.closed.wait()  # the server has closed the connection it promised to keep
            second = await client.get("/")  # on a new connection, not a failed write on the closed one
    assert (first.status_code, first.text) == (200, "connection 1")
    assert (second.status_code, second.text) == (200, "connection 2")
    assert server.connections == 2


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory) -> ssl.SSLContext:
    directory: Path = tmp_path_factory.mktemp("netstream-tls")
    identity = issue_cert(None, "server", directory, ca=True, subject_cn="127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


async def test_a_tls_stream_keeps_its_socket_and_sees_the_server_close(tls_context):
    server = _Server(close_after=1)
    async with _serving(server, tls_context) as port:
        backend = GuardedNetworkBackend(LOCAL)
        plain = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(plain, KeptSocketStream)
        client_context = ssl.create_default_context()
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        stream = await plain.start_tls(client_context, server_hostname="127.0.0.1", timeout=5)
        assert isinstance(stream, KeptSocketStream)
        assert stream.get_extra_info("socket").fileno() == plain.get_extra_info("socket").fileno()
        assert stream.get_extra_info("ssl_object") is not None  # the other answers are the inner stream's
        assert stream.get_extra_info("is_readable") is False
        await stream.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
        answer = b""
        while not answer.endswith(b"connection 1"):
            answer += await stream.read(65536, timeout=5)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert stream.get_extra_info("is_readable") is False  # answered, idle, still open
        server.release.set()
        await server.closing.wait()
        # TLS closes with an alert first (the server then waits for ours before closing the socket): the alert makes
        # the socket readable as soon as it arrives.
        await asyncio.wait_for(_readable(stream), timeout=10)
        await stream.aclose()
        assert stream.get_extra_info("is_readable") is True  # a closed stream is never used again


async def _readable(stream: KeptSocketStream) -> None:
    while not stream.get_extra_info("is_readable"):
        await asyncio.sleep(0.01)


async def test_a_stream_without_a_socket_counts_as_closed():
    class _NoSocket(httpcore.AsyncNetworkStream):
        def get_extra_info(self, info: str) -> object:
            return None

    stream = KeptSocketStream(_NoSocket())
    assert stream.get_extra_info("socket") is None
    assert stream.get_extra_info("is_readable") is True
    assert stream.get_extra_info("server_addr") is None
