"""``dvc-gateway simulate agency|national-portal|payment|postal|sms [--port N] [--protocol rest|soap]``: one
upstream.

Every simulator keeps its state in memory and has test controls under ``/_sim`` (not authenticated), so it listens on
127.0.0.1 only. It prints one line with its URL, then serves until SIGTERM or SIGINT (exit code 0).

* ``agency`` (:mod:`gateway.simulators.agency`): ``docs/agency-rest-contract.md``; ``--protocol soap``
  (:mod:`gateway.simulators.soap_agency`): the reference SOAP service at ``/soap``, its WSDL at ``/soap?wsdl``
  (``--mapping-variant``: the deliberately different service that needs a registered mapping). ``--token`` makes
  the contract endpoints require ``Authorization: Bearer <token>``; ``--callback-url`` (the gateway's
  ``/api/v1/agencies/{agency}/events``) and ``--callback-token`` let ``POST /_sim/dossiers/{code}/events`` post the
  agency's events to a gateway.
* ``national-portal`` (:mod:`gateway.simulators.national_portal`): login ``lgsp``, ``dstcode`` ``H38``, password
  ``lgsp-secret`` unless ``--secret``.
* ``payment`` (:mod:`gateway.simulators.payment`): merchant ``DVCH38``, hash secret ``SIMULATOR-SECRET`` unless
  ``--secret``; ``--callback-url`` is where IPNs go (the gateway's ``/api/v1/payments/notify``).
* ``postal`` (:mod:`gateway.simulators.postal`): shared secret ``POSTAL-SIMULATOR-SECRET`` unless ``--secret``;
  ``--callback-url`` is where tracking events go (the gateway's ``/api/v1/postal/events``).
* ``sms`` (:mod:`gateway.simulators.sms`): shared secret ``SMS-SIMULATOR-SECRET`` unless ``--secret``;
  ``--callback-url`` is where injected texts go (the gateway's ``/api/v1/sms/inbound``); sent texts are printed.

Secrets and tokens are literals, ``env:NAME`` or ``file:PATH``. An option that does not apply to the upstream is a
usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..config import ConfigError, SecretRef
from ..errors import EXIT_OK, UsageError
from ..logging import setup_logging
from ..serving import DaemonError, listen_socket, serve_asgi

HOST = "127.0.0.1"
DEFAULT_PORT = 8090
UPSTREAMS = ("agency", "national-portal", "payment", "postal", "sms")
#: Options each upstream takes (beyond --port).
_OPTIONS = {
    "agency": {"protocol", "token", "callback_url", "callback_token", "mapping_variant"},
    "national-portal": {"secret"},
    "payment": {"secret", "callback_url"},
    "postal": {"secret", "callback_url"},
    "sms": {"secret", "callback_url"},
}
_FLAGS = {
    "protocol": "--protocol",
    "token": "--token",
    "callback_url": "--callback-url",
    "callback_token": "--callback-token",
    "mapping_variant": "--mapping-variant",
    "secret": "--secret",
}


#: What each simulator uses unless told otherwise (shown by ``simulate UPSTREAM --help``).
DEFAULTS_HELP = f"""\
defaults (every simulator listens on 127.0.0.1, port {DEFAULT_PORT} unless --port, and prints its URL):
  agency             the reference REST contract: POST /dossiers, GET /dossiers/{{code}}, …; no token required
                     unless --token; POST /_sim/dossiers/{{code}}/events posts the clerk's event to --callback-url,
                     the gateway's full agency events URL, for example
                     http://127.0.0.1:8080/api/v1/agencies/000.00.23.H38/events, with the bearer --callback-token
                     (no callback without --callback-url)
  agency --protocol soap
                     the reference SOAP service at /soap, its WSDL at /soap?wsdl (--mapping-variant: a different
                     service, reached only with a registered mapping); events go as CapNhatTrangThaiHoSo to
                     --callback-url ending in /soap/callback (http://127.0.0.1:8080/soap/callback), any other URL
                     gets the REST event. The callback token is one agency's token (role agency:<code> in the
                     gateway's [[auth.tokens]]): one simulator plays one agency
  national-portal    login username lgsp, password lgsp-secret (--secret), dstcode H38
  payment            merchant code DVCH38, hash secret SIMULATOR-SECRET (--secret); notifications go to
                     --callback-url (http://127.0.0.1:8080/api/v1/payments/notify). The national payment
                     platform is served under /national: partner code H38DVC, secret NATIONAL-SIMULATOR-SECRET;
                     its notifications go to --callback-url + /national
  postal             shared secret POSTAL-SIMULATOR-SECRET (--secret); tracking events go to --callback-url
                     (http://127.0.0.1:8080/api/v1/postal/events)
  sms                shared secret SMS-SIMULATOR-SECRET (--secret); POST /_sim/inbound {"from", "text"} posts a
                     citizen's text to --callback-url (http://127.0.0.1:8080/api/v1/sms/inbound); texts the
                     gateway sends are printed and listed at GET /_sim/messages
tokens and secrets are literals, env:NAME or file:PATH
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "simulate",
        help="run one simulated upstream",
        description="Run a simulated upstream on 127.0.0.1 for demos, tests and agencies' own trials.",
        epilog=DEFAULTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("upstream", choices=UPSTREAMS, help="which upstream to simulate")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    parser.add_argument("--protocol", choices=("rest", "soap"), default=None, help="the agency's protocol (rest)")
    parser.add_argument("--token", metavar="T", help="bearer token the agency requires (literal, env:NAME, file:PATH)")
    parser.add_argument("--callback-url", metavar="URL", help="where the simulator posts its events (the gateway)")
    parser.add_argument("--callback-token", metavar="T", help="bearer token for the callbacks (literal, env:, file:)")
    parser.add_argument(
        "--mapping-variant", action="store_true", default=None, help="SOAP agency: the service that needs a mapping"
    )
    parser.add_argument("--secret", metavar="S", help="portal password, payment secret, postal or SMS shared secret")
    parser.set_defaults(run=run_simulate)


def _secret(value: str | None, option: str) -> str | None:
    """The secret an option gives: a literal, ``env:NAME`` or ``file:PATH`` (relative to the working directory)."""
    if value is None:
        return None
    try:
        reference = SecretRef(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    try:
        return reference.resolve(option)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _check_options(args: argparse.Namespace) -> None:
    allowed = _OPTIONS[args.upstream]
    for name, flag in _FLAGS.items():
        if getattr(args, name) is not None and name not in allowed:
            raise UsageError(f"simulate {args.upstream} does not take {flag}")
    if not 0 <= args.port < 65536:
        raise UsageError("--port must be from 0 to 65535")
    if args.mapping_variant and args.protocol != "soap":
        raise UsageError("--mapping-variant is for simulate agency --protocol soap")
    if args.callback_url is not None and not args.callback_url.startswith(("http://", "https://")):
        raise UsageError("--callback-url must be an http:// or https:// URL")


def _app(args: argparse.Namespace) -> tuple[Any, str, str]:
    """The simulator's ASGI app, its name for people, and the path to show after its URL."""
    secret = _secret(args.secret, "--secret")
    if args.upstream == "agency":
        options = {
            "token": _secret(args.token, "--token"),
            "callback_url": args.callback_url,
            "callback_token": _secret(args.callback_token, "--callback-token"),
        }
        if args.protocol == "soap":
            from ..simulators.soap_agency import create_soap_app

            name = "agency simulator (SOAP, mapping variant)" if args.mapping_variant else "agency simulator (SOAP)"
            return create_soap_app(mapping_variant=bool(args.mapping_variant), **options), name, "/soap?wsdl"
        from ..simulators.agency import create_app as create_agency

        return create_agency(**options), "agency simulator (REST)", ""
    if args.upstream == "national-portal":
        from ..simulators.national_portal import create_app as create_portal

        portal = create_portal(password=secret) if secret else create_portal()
        return portal, "national portal simulator", ""
    if args.upstream == "payment":
        from ..simulators.payment import create_app as create_payment

        national = f"{args.callback_url.rstrip('/')}/national" if args.callback_url else None
        options = {
            "notify_url": args.callback_url,
            "national_notify_url": national,
            **({"secret": secret} if secret else {}),
        }
        return create_payment(**options), "payment platform simulator", ""
    if args.upstream == "sms":
        from ..simulators.sms import create_app as create_sms

        options = {"inbound_url": args.callback_url, "show": True, **({"secret": secret} if secret else {})}
        return create_sms(**options), "SMS gateway simulator", ""
    from ..simulators.postal import create_app as create_postal

    options = {"webhook_url": args.callback_url, **({"secret": secret} if secret else {})}
    return create_postal(**options), "postal service simulator", ""


def run_simulate(args: argparse.Namespace) -> int:
    _check_options(args)
    app, name, path = _app(args)
    try:
        sock = listen_socket(HOST, args.port)
    except DaemonError as exc:
        raise UsageError(str(exc)) from None
    setup_logging()

    def ready(url: str) -> None:
        shown = f" (service description: {url}{path})" if path else ""
        print(f"{name} listening on {url}{shown}", flush=True)

    async def main() -> None:
        await serve_asgi(app, sock, stop=asyncio.Event(), on_ready=ready, handle_signals=True)

    try:
        asyncio.run(main())
    finally:
        sock.close()
    return EXIT_OK
