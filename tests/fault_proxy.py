"""A loopback TCP fault proxy for tests: put it between a client and an upstream on 127.0.0.1 and turn faults on and
off while traffic flows.

Modes (``proxy.mode``), applied to connections already open as well as new ones:

- ``pass``: bytes flow both ways untouched (also the recovery from any fault);
- ``latency``: each chunk of the upstream's answer is held ``proxy.latency`` seconds;
- ``reset``: the upstream's answer is cut in the middle of its body (the head and half the body reach the client),
  then the client's connection is reset (RST);
- ``blackhole``: connections are accepted and what the client sends is read, but nothing is ever answered;
- ``refuse``: a new connection is reset as soon as it is accepted (a dead host behind a load balancer).

The proxy runs on the caller's asyncio event loop (``async with FaultProxy(host, port) as proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "latency", "reset", "blackhole", "refuse"]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` (``proxy.url``) to ``upstream_host:upstream_port`` with the current fault."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.latency = 0.0
        self.port = 0
        #: Connections accepted, and answers cut by ``reset``.
        self.accepted = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: Mode, latency: float = 0.0) -> None:
        self.mode = mode
        self.latency = latency

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _track(self, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._track(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode == "refuse":
                _reset(writer)
                return
            if self.mode == "blackhole":
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _reset(writer)
                return
            self._track(up_writer)
            await asyncio.gather(
                self._requests(reader, up_writer), self._answers(up_reader, writer), return_exceptions=True
            )
        finally:
            self._tasks.discard(task)
            writer.transport.abort()
            self._writers.discard(writer)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def _requests(self, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.mode == "blackhole":  # the request goes nowhere: the client waits for ever
                    await self._swallow(reader)
                    break
                up_writer.write(chunk)
                await up_writer.drain()
        finally:
            up_writer.transport.abort()
            self._writers.discard(up_writer)

    async def _answers(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        while chunk := await up_reader.read(65536):
            if self.mode == "blackhole":
                continue
            if self.mode == "latency":
                await asyncio.sleep(self.latency)
            if self.mode == "reset":
                pending += chunk
                head_end = pending.find(b"\r\n\r\n")
                if head_end < 0 or len(pending) <= head_end + 4:
                    continue  # not yet into the body
                body = len(pending) - head_end - 4
                writer.write(pending[: head_end + 4 + max(1, body // 2)])
                with contextlib.suppress(OSError):
                    await writer.drain()
                self.resets += 1
                _reset(writer)
                return
            writer.write(chunk)
            await writer.drain()
        writer.transport.abort()
