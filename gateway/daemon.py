"""The daemon: the HTTP API (uvicorn) and the outbox worker in one process, and their graceful shutdown.

:func:`run_daemon` runs, concurrently on one event loop:

- the API (:func:`gateway.api.app.create_app`) on a ``uvicorn.Server`` (``lifespan="on"``, no access log of its own:
  the app writes its own structured one), listening on ``[server] host``/``port`` or the given ones;
- an :class:`~gateway.workers.OutboxWorker` configured by ``[outbox]``, delivering through a
  :class:`~gateway.bootstrap.Composition`, and beside it the periodic jobs (:mod:`gateway.periodic`: polling
  agencies, postal tracking, payment queries).

The API wakes the worker as soon as it has committed work for it: every successful write request (any method but
GET/HEAD/OPTIONS answered below 400) calls ``runtime.extras["notify_outbox"]``, which the services may also call
themselves (from any thread). Without a wake-up the worker still polls the outbox (every 0.2 s by default), and
several processes sharing one database each poll it.

Shutdown, on SIGTERM or SIGINT (or ``stop`` being set): the listening socket is closed and open requests finish
(uvicorn's graceful shutdown, at most :data:`GRACEFUL_SHUTDOWN_SECONDS`), the worker claims nothing more, lets its
in-flight deliveries finish within its grace period and releases the rest (``pending`` again, the attempt not
counted), the clients are closed and the database disposed. A second signal cuts the waiting short.
Nothing accepted is lost even without a graceful shutdown: a dossier answered 201 is committed, and the claims of a
killed process are retaken when their leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .bootstrap import Composition, check_settings
from .config import ConfigError
from .runtime import Runtime
from .serving import (
    GRACEFUL_SHUTDOWN_SECONDS,
    DaemonError,
    Server,
    listen_socket,
    run_together,
    serve_asgi,
    settle_after_start,
    signals_to,
    uvicorn_server,
)
from .workers import Dispatcher, OutboxWorker

__all__ = [
    "GRACEFUL_SHUTDOWN_SECONDS",
    "DaemonError",
    "NotifyAfterWrites",
    "listen_socket",
    "run_daemon",
    "serve_asgi",
    "settle_after_start",
]

log = logging.getLogger("gateway.daemon")

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotifyAfterWrites:
    """ASGI middleware: after a successful write request, call ``notify`` (the outbox has new work, committed)."""

    def __init__(self, app: ASGIApp, notify: Callable[[], None]) -> None:
        self.app = app
        self.notify = notify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            if status < 400:
                self.notify()


def _server_address(runtime: Runtime, host: str | None, port: int | None) -> tuple[str, int]:
    server = runtime.settings.server
    return (server.host if host is None else host), (server.port if port is None else port)


def _outbox_notifier(loop: asyncio.AbstractEventLoop, worker: OutboxWorker | None) -> Callable[[], None]:
    """A function waking ``worker``, callable from the loop's thread or any other."""

    def notify() -> None:
        if worker is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            worker.notify()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(worker.notify)

    return notify


async def run_daemon(
    runtime: Runtime,
    *,
    host: str | None = None,
    port: int | None = None,
    api: bool = True,
    workers: bool = True,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
    handle_signals: bool | None = None,
    on_ready: Callable[[str | None], Any] | None = None,
    dispatcher: Dispatcher | None = None,
    worker_options: dict[str, Any] | None = None,
    close_runtime: bool = True,
) -> None:
    """Run the API and/or the outbox worker until ``stop`` is set (or SIGTERM/SIGINT), then shut down gracefully.

    :param host: where to listen (default ``[server] host``, else 127.0.0.1); ``port`` likewise (0: a free port).
    :param sock: an already bound socket (:func:`listen_socket`) to serve on instead.
    :param handle_signals: install SIGTERM/SIGINT handlers (default: when no ``stop`` event is given, and only on
        the main thread).
    :param on_ready: called once serving, with the API's base URL (``None`` without the API).
    :param dispatcher: delivers the outbox messages (default: the :class:`~gateway.bootstrap.Composition` of
        ``runtime``).
    :param worker_options: further :class:`OutboxWorker` arguments (``batch``, ``poll_interval``...).
    :param close_runtime: dispose the database (``runtime.close()``) at the end.
    """
    if not api and not workers:
        raise DaemonError("nothing to run: neither the API nor the workers")
    loop = asyncio.get_running_loop()
    if handle_signals is None:
        handle_signals = stop is None
    stop = stop if stop is not None else asyncio.Event()
    check_settings(runtime)  # what the integrations' settings describe is built now: a mistake stops the start
    own_dispatcher = dispatcher is None
    active: Dispatcher = dispatcher if dispatcher is not None else Composition(runtime)
    worker: OutboxWorker | None = None
    server: Server | None = None
    listener: socket.socket | None = None
    try:
        if workers:
            try:
                options = {"observer": runtime.metrics.observe_outbox, **(worker_options or {})}
                worker = OutboxWorker.from_settings(runtime.db, active, runtime.settings.outbox, **options)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            runtime.metrics.watch_circuits(worker.breakers.held_back)
        notify = _outbox_notifier(loop, worker)
        runtime.extras["notify_outbox"] = notify
        if api:
            from .api.app import create_app

            app = NotifyAfterWrites(create_app(runtime), notify)
            if sock is None:
                listen_host, listen_port = _server_address(runtime, host, port)
                listener = listen_socket(listen_host, listen_port)
            else:
                listener = sock
            server = uvicorn_server(app)

        def force() -> None:
            if server is not None:
                server.force_exit = True
            if worker is not None:
                worker.shutdown_grace = 0

        with signals_to(stop, force, handle_signals):
            composed = worker is not None and isinstance(active, Composition)
            periodic = active.periodic_jobs() if composed and isinstance(active, Composition) else []
            await run_together(server, listener, worker, stop, on_ready, periodic)
    finally:
        runtime.extras.pop("notify_outbox", None)
        if own_dispatcher and isinstance(active, Composition):
            await active.aclose()
        if listener is not None and sock is None:
            listener.close()
        if close_runtime:
            runtime.close()
        log.info("daemon stopped")
