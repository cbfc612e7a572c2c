"""``dvc-gateway simulate agency [--port N] [--protocol rest] [--token T]``: run one simulated upstream.

The simulated agency one-stop system (:mod:`gateway.simulators.agency`) speaks the reference REST contract, keeps its
state in memory and has test controls under ``/_sim`` (faults, state, reset, status events). It listens on 127.0.0.1
only: the controls are not authenticated. ``--token`` makes the contract endpoints require ``Authorization: Bearer
<token>`` (a literal, ``env:NAME`` or ``file:PATH``); ``--callback-url`` (the gateway's
``/api/v1/agencies/{agency}/events``) and ``--callback-token`` let ``POST /_sim/dossiers/{code}/events`` post the
agency's events to a gateway.

It prints one line with its URL, then serves until SIGTERM or SIGINT (exit code 0). The SOAP agency and the national
portal, payment and postal simulators are not available yet (exit code 2).
"""

from __future__ import annotations

import argparse
import asyncio

from ..config import ConfigError, resolve_secret
from ..daemon import DaemonError, listen_socket, serve_asgi
from ..errors import EXIT_OK, UsageError
from ..logging import setup_logging

HOST = "127.0.0.1"
DEFAULT_PORT = 8090
UPSTREAMS = ("agency", "national-portal", "payment", "postal")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "simulate",
        help="run one simulated upstream",
        description="Run a simulated upstream on 127.0.0.1 for demos, tests and agencies' own trials.",
    )
    parser.add_argument("upstream", choices=UPSTREAMS, help="which upstream to simulate")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    parser.add_argument("--protocol", choices=("rest", "soap"), default="rest", help="the agency's protocol")
    parser.add_argument("--token", metavar="T", help="bearer token the agency requires (literal, env:NAME, file:PATH)")
    parser.add_argument("--callback-url", metavar="URL", help="where the agency posts its status events")
    parser.add_argument("--callback-token", metavar="T", help="bearer token for the callbacks (literal, env:, file:)")
    parser.set_defaults(run=run_simulate)


def _secret(value: str | None, option: str) -> str | None:
    try:
        return resolve_secret(value, key=option)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def run_simulate(args: argparse.Namespace) -> int:
    if args.upstream != "agency":
        raise UsageError(f"simulate {args.upstream} is not available yet (available: agency)")
    if args.protocol == "soap":
        raise UsageError("simulate agency --protocol soap is not available yet (use --protocol rest)")
    if not 0 <= args.port < 65536:
        raise UsageError("--port must be from 0 to 65535")
    if args.callback_url is not None and not args.callback_url.startswith(("http://", "https://")):
        raise UsageError("--callback-url must be an http:// or https:// URL")

    from ..simulators.agency import create_app

    app = create_app(
        token=_secret(args.token, "--token"),
        callback_url=args.callback_url,
        callback_token=_secret(args.callback_token, "--callback-token"),
    )
    try:
        sock = listen_socket(HOST, args.port)
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    setup_logging()

    def ready(url: str) -> None:
        print(f"agency simulator (REST) listening on {url}", flush=True)

    async def main() -> None:
        await serve_asgi(app, sock, stop=asyncio.Event(), on_ready=ready, handle_signals=True)

    try:
        asyncio.run(main())
    finally:
        sock.close()
    return EXIT_OK
