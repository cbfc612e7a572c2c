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
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .bootstrap import Composition, check_settings
from .config import ConfigError
from .periodic import PeriodicJob, run_jobs
from .runtime import Runtime
from .workers import Dispatcher, OutboxWorker

__all__ = [
    "GRACEFUL_SHUTDOWN_SECONDS",
    "DaemonError",
    "NotifyAfterWrites",
    "listen_socket",
    "run_daemon",
    "serve_asgi",
]

log = logging.getLogger("gateway.daemon")

#: How long open HTTP requests may take to finish once shutdown has begun.
GRACEFUL_SHUTDOWN_SECONDS = 10.0
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class DaemonError(RuntimeError):
    """The daemon cannot start or stopped on an error; the message is one line."""


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port), ready to hand to :func:`run_daemon`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise DaemonError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DaemonError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


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


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the daemon (uvicorn re-raises them after its shutdown otherwise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_server(app: ASGIApp) -> _Server:
    config = uvicorn.Config(
        app,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
    )
    return _Server(config)


@contextlib.contextmanager
def _signals_to(stop: asyncio.Event, on_second: Callable[[], None], enabled: bool) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (a second one calls ``on_second``) while the block runs, when ``enabled``."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second signal: not waiting any longer", extra={"signal": name})
            on_second()
            return
        log.info("shutting down", extra={"signal": name})
        stop.set()

    if enabled and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


async def serve_asgi(
    app: ASGIApp,
    sock: socket.socket,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str], Any] | None = None,
    handle_signals: bool = False,
) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until ``stop`` is set (or SIGTERM/SIGINT with ``handle_signals``)."""
    server = _uvicorn_server(app)

    def force() -> None:
        server.force_exit = True

    with _signals_to(stop, force, handle_signals):
        await _run(server, sock, None, stop, None if on_ready is None else lambda url: on_ready(url or ""))


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
    server: _Server | None = None
    listener: socket.socket | None = None
    try:
        if workers:
            try:
                options = {"observer": runtime.metrics.observe_outbox, **(worker_options or {})}
                worker = OutboxWorker.from_settings(runtime.db, active, runtime.settings.outbox, **options)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
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
            server = _uvicorn_server(app)

        def force() -> None:
            if server is not None:
                server.force_exit = True
            if worker is not None:
                worker.shutdown_grace = 0

        with _signals_to(stop, force, handle_signals):
            composed = worker is not None and isinstance(active, Composition)
            periodic = active.periodic_jobs() if composed and isinstance(active, Composition) else []
            await _run(server, listener, worker, stop, on_ready, periodic)
    finally:
        runtime.extras.pop("notify_outbox", None)
        if own_dispatcher and isinstance(active, Composition):
            await active.aclose()
        if listener is not None and sock is None:
            listener.close()
        if close_runtime:
            runtime.close()
        log.info("daemon stopped")


async def _run(
    server: _Server | None,
    listener: socket.socket | None,
    worker: OutboxWorker | None,
    stop: asyncio.Event,
    on_ready: Callable[[str | None], Any] | None,
    periodic: Sequence[PeriodicJob] = (),
) -> None:
    worker_stop = asyncio.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        assert server is not None and listener is not None
        try:
            await server.serve(sockets=[listener])
        except SystemExit:  # uvicorn's answer to a failed startup (the app's lifespan refused to start)
            failure.append(DaemonError("the HTTP server failed to start"))
        finally:
            stop.set()

    async def deliver() -> None:
        assert worker is not None
        try:
            await worker.run(worker_stop)
        finally:
            stop.set()

    async def announce() -> None:
        if server is not None:
            while not server.started:
                if stop.is_set():
                    return
                await asyncio.sleep(0.01)
        url = _url(listener) if listener is not None else None
        log.info("daemon ready", extra={"url": url, "workers": worker is not None})
        if on_ready is not None:
            on_ready(url)

    async def watch() -> None:
        await stop.wait()
        if server is not None:
            server.should_exit = True
        worker_stop.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(watch())
        if server is not None:
            group.create_task(serve())
        if worker is not None:
            group.create_task(deliver())
        if periodic:
            group.create_task(run_jobs(periodic, worker_stop))
        group.create_task(announce())
    if failure:
        raise failure[0]
