"""Serving an ASGI app on a socket with uvicorn, and running it beside other work until told to stop.

What the daemon (:mod:`gateway.daemon`), the simulators and the replay server share: a bound listening socket, a
uvicorn server that leaves signals to its caller, SIGTERM/SIGINT turned into a stop event, and the loop that runs the
server, an outbox worker and periodic jobs together and stops them together. It imports neither the composition
root nor the API, so a command that only serves a simulator or a cassette starts without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

from .periodic import run_jobs

if TYPE_CHECKING:
    from .periodic import PeriodicJob
    from .workers import OutboxWorker

__all__ = [
    "GRACEFUL_SHUTDOWN_SECONDS",
    "DaemonError",
    "Server",
    "event_loop_factory",
    "listen_socket",
    "run_loop",
    "run_together",
    "serve_asgi",
    "settle_after_start",
    "signals_to",
    "url_of",
    "uvicorn_server",
]

log = logging.getLogger("gateway.daemon")

T = TypeVar("T")

#: How long open HTTP requests may take to finish once shutdown has begun.
GRACEFUL_SHUTDOWN_SECONDS = 10.0


class DaemonError(RuntimeError):
    """The daemon cannot start or stopped on an error; the message is one line."""


def event_loop_factory(name: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop ``name`` (``[server] event_loop``): ``"uvloop"``, ``"asyncio"`` (the standard
    library's own), or ``"auto"``: uvloop where it is installed, else asyncio's. uvloop runs the loop's own work (the
    polling, the callbacks, the wake-ups from the database's threads) in C: the outbox worker spends about a sixth
    less CPU a message on it. :class:`DaemonError` when ``"uvloop"`` is asked for and cannot be loaded."""
    if name not in ("auto", "asyncio", "uvloop"):
        raise DaemonError(f"unknown event loop {name!r} (auto, asyncio or uvloop)")
    if name != "asyncio":
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise DaemonError("[server] event_loop: uvloop is not installed (install it, or choose auto)") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_loop(main: Coroutine[Any, Any, T], *, event_loop: str = "auto") -> T:
    """Run ``main`` to its end on a new event loop of the kind ``event_loop`` names (:func:`event_loop_factory`),
    as :func:`asyncio.run` does on its own."""
    try:
        factory = event_loop_factory(event_loop)
    except DaemonError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def settle_after_start() -> None:
    """Once a long-running process serves: what it built to start (modules, the app, settings, the engines) is set
    aside from the garbage collector (``gc.freeze``). Those objects live as long as the process; left in place, every
    full collection would walk them all again, a cost each request shares."""
    gc.collect()
    gc.freeze()


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port), ready to hand to :func:`serve_asgi` (or to the
    daemon's ``run_daemon``)."""
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


def url_of(sock: socket.socket) -> str:
    """The ``http://`` address a listening socket answers on (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the daemon (uvicorn re-raises them after its shutdown otherwise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_server(app: ASGIApp) -> Server:
    config = uvicorn.Config(
        app,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
    )
    return Server(config)


@contextlib.contextmanager
def signals_to(stop: asyncio.Event, on_second: Callable[[], None], enabled: bool) -> Iterator[None]:
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
    server = uvicorn_server(app)

    def force() -> None:
        server.force_exit = True

    with signals_to(stop, force, handle_signals):
        await run_together(server, sock, None, stop, None if on_ready is None else lambda url: on_ready(url or ""))


async def run_together(
    server: Server | None,
    listener: socket.socket | None,
    worker: OutboxWorker | None,
    stop: asyncio.Event,
    on_ready: Callable[[str | None], Any] | None,
    periodic: Sequence[PeriodicJob] = (),
) -> None:
    """Run the HTTP ``server`` on ``listener``, the outbox ``worker`` and the ``periodic`` jobs (each optional) until
    ``stop`` is set or one of them ends; ``on_ready`` gets the URL (None without a server) once the server accepts.
    A server that fails to start raises :class:`DaemonError` after the others have stopped."""
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
        url = url_of(listener) if listener is not None else None
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        log.info("daemon ready", extra={"url": url, "workers": worker is not None, "event_loop": loop})
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
