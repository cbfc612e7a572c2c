"""The gateway's HTTP connections (aiohttp's, under httpx's API) against a raw HTTP/1.1 server on loopback: what goes
on the wire, what comes back, and how each way an exchange can fail reaches the adapters."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from adapters.connections import guarded_transport
from adapters.errors import PermanentError, TransientError
from adapters.http import ClientFactory, ClientSettings, map_http_errors
from adapters.http.transport import ResponseTooLargeError, response_limit
from adapters.netguard import AddressPolicy

LOCAL = AddressPolicy(allow_private=True)

Reply = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class RawServer:
    """An HTTP/1.1 server that records each request's head and body as received, and answers with ``reply``
    (which returns whether to keep the connection for another request)."""

    reply: Reply
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = await _read_body(head, reader)
                self.requests.append((head, body))
                if not await self.reply(head, reader, writer):
                    return
        finally:
            writer.close()


async def _read_body(head: bytes, reader: asyncio.StreamReader) -> bytes:
    headers = _headers(head)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"][0]))
    if headers.get("transfer-encoding") == ["chunked"]:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
    return b""


def _headers(head: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            found.setdefault(name.strip().lower(), []).append(value.strip())
    return found


def answer(status: str = "200 OK", body: bytes = b"{}", headers: tuple[str, ...] = ()) -> Reply:
    async def reply(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Content-Type: application/json", *headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return True

    return reply


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Reply], Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(reply: Reply) -> RawServer:
        raw = RawServer(reply)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return raw

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def client(url: str, **overrides: object) -> httpx.AsyncClient:
    settings = ClientSettings(**{"base_url": url, "address_policy": LOCAL, **overrides})  # type: ignore[arg-type]
    return ClientFactory().client("agency:test", settings)


async def test_the_request_on_the_wire_is_the_one_httpx_built(serve):
    server = await serve(answer())
    async with client(server.url, headers={"X-Province": "H38"}) as http:
        await http.post("/dossiers", content=b'{"code": "X"}', headers={"Idempotency-Key": "k-1"})
        await http.post("/typed", content=b"<a/>", headers={"Content-Type": "application/xml"})
    (head, body), (typed_head, _) = server.requests
    assert head.startswith(b"POST /dossiers HTTP/1.1\r\n")
    headers = _headers(head)
    assert body == b'{"code": "X"}'
    assert headers["host"] == [server.url.removeprefix("http://")]
    assert headers["user-agent"] == ["dvc-gateway"]
    assert headers["accept-encoding"] == ["identity"]
    assert headers["accept"] == ["*/*"]
    assert headers["x-province"] == ["H38"] and headers["idempotency-key"] == ["k-1"]
    assert headers["content-length"] == ["13"]
    assert "content-type" not in headers  # none added where httpx sent none
    assert "transfer-encoding" not in headers
    assert _headers(typed_head)["content-type"] == ["application/xml"]


async def test_a_body_of_unknown_length_goes_chunked_and_whole(serve):
    server = await serve(answer())

    async def parts() -> AsyncIterator[bytes]:
        for index in range(5):
            yield f"part {index};".encode()

    async with client(server.url) as http:
        response = await http.post("/stream", content=parts())
    assert response.status_code == 200
    head, body = server.requests[0]
    assert _headers(head)["transfer-encoding"] == ["chunked"]
    assert body == b"part 0;part 1;part 2;part 3;part 4;"


async def test_the_answer_keeps_its_status_reason_version_and_repeated_headers(serve):
    server = await serve(answer("201 Created", b'{"ok": true}', ("X-Tag: a", "X-Tag: b")))
    async with client(server.url) as http:
        response = await http.get("/x")
    assert response.status_code == 201 and response.reason_phrase == "Created"
    assert response.http_version == "HTTP/1.1"
    assert response.headers.get_list("X-Tag") == ["a", "b"]
    assert response.json() == {"ok": True}


async def test_a_long_header_line_is_taken_and_a_huge_one_refused(serve):
    policy = "default-src 'self'; " + "; ".join(f"script-src-{n} https://cdn{n}.example.vn" for n in range(300))
    assert 8_190 < len(policy) < 32 * 1024
    server = await serve(answer(headers=(f"Content-Security-Policy: {policy}",)))
    async with client(server.url) as http:
        response = await http.get("/x")
    assert response.headers["Content-Security-Policy"] == policy
    huge = await serve(answer(headers=("X-Huge: " + "a" * (64 * 1024),)))
    async with client(huge.url) as http:
        with pytest.raises(TransientError, match="the connection broke"):
            with map_http_errors("agency:test"):
                await http.get("/x")


async def test_connections_are_kept_alive_unless_none_may_be(serve):
    server = await serve(answer())
    async with client(server.url) as http:
        for _ in range(3):
            assert (await http.get("/x")).status_code == 200
    assert server.connections == 1
    closing = await serve(answer())
    async with client(closing.url, max_keepalive=0) as http:
        for _ in range(3):
            assert (await http.get("/x")).status_code == 200
    assert closing.connections == 3


async def test_a_small_answer_is_handed_over_read_and_a_large_one_streamed(serve):
    small = await serve(answer(body=b'{"ok": true}'))
    large = await serve(answer(body=b'"' + b"a" * 100_000 + b'"'))
    transport = guarded_transport(LOCAL)
    try:
        response = await transport.handle_async_request(httpx.Request("GET", f"{small.url}/x"))
        assert isinstance(response.stream, httpx.ByteStream)  # read with its head, whole
        assert [chunk async for chunk in response.aiter_raw()] == [b'{"ok": true}']
        streamed = await transport.handle_async_request(httpx.Request("GET", f"{large.url}/x"))
        assert not isinstance(streamed.stream, httpx.ByteStream)
        assert len(await streamed.aread()) == 100_002
        await streamed.aclose()
    finally:
        await transport.aclose()
    async with client(small.url) as http:  # through the size cap and deadline, as read
        assert (await http.get("/x")).json() == {"ok": True}
        with pytest.raises(ResponseTooLargeError):
            await http.get("/x", extensions=response_limit(5))
    assert small.connections == 2 and large.connections == 1


async def test_a_compressed_answer_is_decoded_by_httpx_when_asked_for(serve):
    packed = gzip.compress(b'{"text": "' + b"a" * 1000 + b'"}')
    server = await serve(answer(body=packed, headers=("Content-Encoding: gzip",)))
    async with httpx.AsyncClient(transport=guarded_transport(LOCAL), base_url=server.url) as http:
        response = await http.get("/x", headers={"Accept-Encoding": "gzip"})
    assert response.json() == {"text": "a" * 1000}
    assert int(response.headers["Content-Length"]) == len(packed)


async def test_cookies_an_upstream_sets_are_sent_back_by_the_client(serve):
    server = await serve(answer(headers=("Set-Cookie: route=b2; Path=/",)))
    quiet = await serve(answer())
    async with client(server.url) as http:
        await http.get("/first")
        await http.get("/second")
        http.cookies = {"lang": "vi"}  # a jar set by the caller works the same way
        await http.get("/third")
    assert "cookie" not in _headers(server.requests[0][0])
    assert _headers(server.requests[1][0])["cookie"] == ["route=b2"]
    assert _headers(server.requests[2][0])["cookie"] == ["lang=vi"]
    async with client(quiet.url) as http:
        await http.get("/first")
        await http.get("/second")
        assert not http.cookies
    assert ["cookie" in _headers(head) for head, _ in quiet.requests] == [False, False]


async def _closes(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    return False


_PARTIAL = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{"partial'


async def _cut_short(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(_PARTIAL)
    await writer.drain()
    return False


async def _stalls(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    await _cut_short(head, reader, writer)
    await reader.read()  # the rest never comes
    return False


async def _garbled(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"SMTP ready\r\n\r\n")
    await writer.drain()
    return False


async def _silent(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    await reader.read()  # until the client gives up and closes
    return False


@pytest.mark.parametrize(
    ("reply", "exception", "meaning"),
    [
        (_closes, httpx.RemoteProtocolError, "the connection broke"),
        (_cut_short, httpx.RemoteProtocolError, "the connection broke"),
        (_garbled, httpx.RemoteProtocolError, "the connection broke"),
        (_silent, httpx.ReadTimeout, "timed out waiting for the response"),
        (_stalls, httpx.ReadTimeout, "timed out waiting for the response"),
    ],
)
async def test_each_broken_exchange_is_the_httpx_error_that_means_it(serve, reply, exception, meaning):
    server = await serve(reply)
    async with client(server.url, timeout_seconds=0.5) as http:
        with pytest.raises(exception):
            await http.get("/x")
        with pytest.raises(TransientError, match=meaning):
            with map_http_errors("agency:test"):
                await http.get("/x")


async def test_a_port_nobody_listens_on_is_a_connect_error():
    probe = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with client(f"http://127.0.0.1:{port}") as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/x")
        with pytest.raises(TransientError, match="cannot reach the upstream"):
            with map_http_errors("agency:test"):
                await http.get("/x")


async def test_an_address_aiohttp_cannot_use_is_a_request_to_mend_not_to_retry(serve):
    server = await serve(answer())
    port = server.url.rsplit(":", 1)[1]
    async with client(f"http://127.1:{port}") as http:  # allowed (loopback), but not in its canonical spelling
        with pytest.raises(PermanentError, match=r"invalid request: invalid address: 127\.1"):
            with map_http_errors("agency:test"):
                await http.get("/x")
    assert server.requests == []


async def test_a_request_the_upstream_never_reads_times_out(serve):
    server = await serve(_silent)
    body = b"x" * (64 * 1024 * 1024)  # far more than the socket buffers hold
    async with client(server.url, timeout_seconds=0.5, total_timeout_seconds=None) as http:
        with pytest.raises(httpx.TimeoutException):
            await http.post("/x", content=body)


async def test_a_closed_transport_refuses_requests(serve):
    server = await serve(answer())
    transport = guarded_transport(LOCAL)
    http = httpx.AsyncClient(transport=transport, base_url=server.url)
    assert (await http.get("/x")).status_code == 200
    await http.aclose()
    with pytest.raises(RuntimeError):
        await transport.handle_async_request(httpx.Request("GET", server.url))


def test_only_http_1_1_without_proxies_is_accepted():
    for kwargs in ({"http2": True}, {"http1": False}, {"proxy": "http://proxy:3128"}, {"uds": "/tmp/s"}):
        with pytest.raises(ValueError, match="does not support"):
            guarded_transport(LOCAL, **kwargs)
    with pytest.raises(TypeError, match="retries"):
        guarded_transport(LOCAL, retries=3)
    assert guarded_transport(LOCAL, http1=True, http2=False).policy is LOCAL


async def _not_modified(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    # A 304 may declare the length of the body it does not carry (RFC 9110, 8.6); a HEAD's answer too.
    writer.write(b'HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: "v1"\r\n\r\n')
    await writer.drain()
    return True


async def test_answers_without_a_body_are_not_waited_for(serve):
    server = await serve(_not_modified)
    async with client(server.url, timeout_seconds=0.5) as http:
        for method in ("GET", "HEAD", "GET"):
            response = await http.request(method, "/x")
            assert response.status_code == 304 and response.content == b""
    assert server.connections == 1  # kept alive: nothing left unread on it
