"""The network stream of an outbound HTTP connection, keeping its socket at hand: :class:`KeptSocketStream`.

httpcore asks every idle connection of a pool whether the server closed it (``get_extra_info("is_readable")``), for
each request it queues and each one it releases. AnyIO answers by building the stream's table of attributes each
time, which asks the kernel for the peer's address, and then polls the socket: two system calls per idle connection
and per question, each letting another thread take the interpreter. The socket of a connection never changes, so
this stream looks it up once and keeps a poller registered on it: one ``poll`` with no wait per question, with the
same answer (a socket readable while its connection is idle has been closed by the peer, or has sent what it should
not have: either way the connection is not reused).
"""

from __future__ import annotations

import select
import ssl
from typing import Any, Protocol

import httpcore

__all__ = ["KeptSocketStream"]


class _Socket(Protocol):
    def fileno(self) -> int: ...


_HAS_POLL = hasattr(select, "poll")  # not on Windows: ``select.select`` there
_CLOSED_OR_READABLE = (select.POLLIN | select.POLLERR | select.POLLHUP | select.POLLNVAL) if _HAS_POLL else 0


class KeptSocketStream(httpcore.AsyncNetworkStream):
    """``inner`` (an httpcore network stream) with its socket looked up once and its readability polled directly."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        # A ``socket.socket``, or asyncio's ``TransportSocket`` standing for one.
        sock = inner.get_extra_info("socket")
        self._socket: _Socket | None = sock if callable(getattr(sock, "fileno", None)) else None
        self._poller: select.poll | None = None
        if _HAS_POLL and self._socket is not None and self._socket.fileno() >= 0:
            self._poller = select.poll()
            self._poller.register(self._socket, select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self._socket = None
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return KeptSocketStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return self.is_readable()
        return self._inner.get_extra_info(info)

    def is_readable(self) -> bool:
        """Whether the socket has something to read or is closed (a closed or unknown socket counts as readable)."""
        if self._socket is None or self._socket.fileno() < 0:
            return True
        if self._poller is None:
            return bool(select.select([self._socket], [], [], 0)[0])
        return any(events & _CLOSED_OR_READABLE for _, events in self._poller.poll(0))
