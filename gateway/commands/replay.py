"""``dvc-gateway replay serve DIR [--port N] [--host H] [--latency [FACTOR]] [--config FILE]``.

Serves a cassette directory (HAR files) as fake upstreams: any method and path is answered from the recordings
(:mod:`gateway.recording.server`). It listens on 127.0.0.1 unless ``--host`` says otherwise, prints one line with
its URL, then serves until SIGTERM or SIGINT (exit code 0). ``--config`` takes the ``[recording]`` matching and
redaction settings. A directory without cassettes (no ``*.har`` file) is refused (exit code 2). Answers carry the
recorded ``Date`` header, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, UsageError
from ..logging import setup_logging
from ..serving import DaemonError, listen_socket, run_together, signals_to, uvicorn_server
from .cassette import settings_from

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8099


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "replay", help="serve recorded exchanges", description="Serve recorded exchanges as fake upstreams."
    )
    actions = parser.add_subparsers(dest="replay_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    serve = actions.add_parser(
        "serve",
        help="serve a cassette directory over HTTP",
        description="Answer any request from the recordings of a cassette directory (HAR files), until SIGTERM or "
        "SIGINT.",
    )
    serve.add_argument("directory", metavar="DIR", help="cassette directory (HAR files)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument(
        "--latency",
        type=float,
        nargs="?",
        const=1.0,
        default=None,
        metavar="FACTOR",
        help="replay the recorded latency (times FACTOR, default 1)",
    )
    serve.add_argument("--config", metavar="FILE", help="configuration file ([recording] section)")
    serve.set_defaults(run=run_serve)


async def _serve(app: Any, sock: socket.socket, on_ready: Callable[[str], None]) -> None:
    """Serve ``app`` as :func:`gateway.serving.serve_asgi` does, without uvicorn's own ``Date`` header: a replayed
    answer carries the recorded one, and a second would contradict it."""
    server = uvicorn_server(app)
    server.config.date_header = False
    stop = asyncio.Event()

    def force() -> None:
        server.force_exit = True

    with signals_to(stop, force, True):
        await run_together(server, sock, None, stop, lambda url: on_ready(url or ""))


def run_serve(args: argparse.Namespace) -> int:
    from ..recording.har import HarError, har_files
    from ..recording.server import create_replay_app

    directory = Path(args.directory)
    if not directory.exists():
        raise UsageError(f"{directory}: no such cassette directory")
    if not har_files(directory):
        raise UsageError(f"no cassettes in {directory} (no .har file): record some, or import them with 'cassette'")
    if not 0 <= args.port < 65536:
        raise UsageError("--port must be from 0 to 65535")
    if args.latency is not None and args.latency < 0:
        raise UsageError("--latency must not be negative")
    settings = settings_from(args.config)
    try:
        app = create_replay_app(directory, settings, latency=args.latency)
    except (HarError, ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    try:
        sock = listen_socket(args.host, args.port)
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    setup_logging()

    def ready(url: str) -> None:
        print(f"replaying {directory} on {url}", flush=True)

    try:
        asyncio.run(_serve(app, sock, ready))
    finally:
        sock.close()
    return EXIT_OK
