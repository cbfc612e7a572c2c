"""``dvc-gateway demo``: a self-contained walk-through on simulated upstreams; it ends by itself.

In a temporary directory, with a temporary SQLite database and a generated configuration (random tokens for the
portal, the admin and the agency; ``[registry] allow_private_endpoints = true``; the sample trust anchors), it:

1. starts the simulated agency, national public-service portal, payment platforms, postal service and SMS gateway,
   and the daemon
   (API, outbox worker and periodic jobs) in this process, on free loopback ports;
2. imports the sample catalogue and registers the simulated agency through the admin API;
3. submits two dossiers through the portal API: one whose components are all validly signed (the signed PDF
   ``don-de-nghi.pdf`` among them: exempt from the originals check), one unsigned;
4. waits until the outbox worker has delivered both to the simulated agency;
5. makes the agency's clerk act through the simulator's ``/_sim/dossiers/{code}/events``, which posts each event
   back to the gateway: the first dossier is received and its fee requested; the applicant pays on the payment
   platform, whose notification marks the fee paid and resumes the dossier; it is processed and completed; the
   postal service is ordered to deliver the result, and its tracking webhook brings ``delivered`` → ``returned``.
   At each step the national portal simulator holds the same status; the applicant then texts ``TRACUU <code>`` to
   the SMS gateway simulator and gets the status back by SMS. The second dossier (unsigned scans, sent by post) gets
   a pickup order for its originals, is found incomplete (``supplement_requested``), the applicant sends the signed
   form through the portal API, and it is received. A third dossier, at a second agency whose fees go through the
   national payment platform (``[payment] by_agency``), is received, asked for its fees and paid there. The
   applicant rates the returned dossier (the rating reaches the national portal simulator), and a citizen's question
   goes to the simulated agency, is answered there and reaches the portal's webhook (a receiver served here too);
6. prints each dossier's journey: its status history with times, the verification verdict of every component,
   whether the originals must be checked, and the due date.

The sample catalogue, documents and trust material are package data (``gateway/demo_data``, a copy of part of
``examples/``), so the demo runs from an installed wheel in any folder. Everything stays on 127.0.0.1 and in the
temporary directory, which is removed at the end. It takes a few seconds; a failure is one line on stderr and exit
code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from ..catalogue import CatalogueError, import_procedures, load_catalogue
from ..daemon import listen_socket, run_daemon, serve_asgi
from ..domain.calendar import VIETNAM_TZ
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..logging import setup_logging
from ..runtime import Runtime
from ..settings import load_settings
from .demo_citizens import play_citizens, portal_hook_app
from .demo_output import demo_console, print_history
from .demo_story import AGENCY, DEMO_DATA, NATIONAL_AGENCY, SAMPLE_FILES, DemoError, _until, play_story
from .demo_story import SAMPLE_APPLICANTS as SAMPLE_APPLICANTS
from .demo_story import _file as _file
from .demo_story import _submission as _submission
from .serve import open_runtime

#: The whole walk-through must end within this many seconds.
DEADLINE_SECONDS = 50.0


#: The simulators' credentials (their demo defaults).
NATIONAL_USER, NATIONAL_PASSWORD, NATIONAL_DSTCODE = "lgsp", "lgsp-secret", "H38"
MERCHANT_CODE, MERCHANT_SECRET = "DVCH38", "SIMULATOR-SECRET"
POSTAL_SECRET = "POSTAL-SIMULATOR-SECRET"  # noqa: S105 - the simulator's demo secret
NATIONAL_PARTNER, NATIONAL_PAY_SECRET = "H38DVC", "NATIONAL-SIMULATOR-SECRET"
SMS_SECRET = "SMS-SIMULATOR-SECRET"  # noqa: S105 - the simulator's demo secret


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="a self-contained walk-through on a simulated agency",
        description="Run the gateway and a simulated agency in this process, send two dossiers through their "
        "journey, print it, and stop. Nothing is left behind.",
    )
    parser.add_argument(
        "--keep-serving",
        action="store_true",
        help="after the walk-through, keep the gateway (its console at /console/, its lookup page at /lookup) and the "
        "simulators running until Ctrl-C",
    )
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    for needed in SAMPLE_FILES:
        if not (DEMO_DATA / needed).is_file():
            raise UsageError(f"the demo's sample file {DEMO_DATA / needed} is missing: reinstall dvc-gateway")
    setup_logging("ERROR")  # the walk-through is the output; only errors are logged (JSON lines on stderr)
    console = demo_console()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="dvc-gateway-demo-") as work:
            journeys = asyncio.run(_walk_through(Path(work), console, keep_serving=args.keep_serving))
    except KeyboardInterrupt:
        console.print("\nStopped.")
        return EXIT_OK
    except DemoError as exc:
        print(f"dvc-gateway: error: demo: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    if args.keep_serving:
        console.print("\nStopped.")
        return EXIT_OK
    _print_journeys(console, journeys)
    console.print(f"\nWalk-through finished in {time.perf_counter() - started:.1f} s.")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------------------------------
# The walk-through


def _upstreams_text(urls: dict[str, str]) -> str:
    """The national portal, payment and postal sections, pointing at the simulators at ``urls``."""
    return f"""[national_portal]
base_url = "{urls["national"]}"
username = "{NATIONAL_USER}"
password = "{NATIONAL_PASSWORD}"
dstcode = "{NATIONAL_DSTCODE}"
madonvi = "000.00.00.H38"

[payment]
base_url = "{urls["payment"]}"
merchant_code = "{MERCHANT_CODE}"
secret = "{MERCHANT_SECRET}"
return_url = "https://dichvucong.example.gov.vn/thanh-toan/ket-qua"
at_submission = false
by_agency = {{ "{NATIONAL_AGENCY}" = "national" }}

[payment.national]
base_url = "{urls["payment"]}/national"
partner_code = "{NATIONAL_PARTNER}"
secret = "{NATIONAL_PAY_SECRET}"

[portal]
webhook_url = "{urls["portal"]}/hooks"

[sms]
base_url = "{urls["sms"]}"
secret = "{SMS_SECRET}"

[postal]
base_url = "{urls["postal"]}"
secret = "{POSTAL_SECRET}"
office_name = "Bộ phận Một cửa (mô phỏng)"
office_phone = "02393123456"
office_address = "1 Nguyễn Du, TP Hà Tĩnh"

"""


def _config_text(work: Path, gateway_port: int, tokens: dict[str, str], urls: dict[str, str] | None = None) -> str:
    trust = DEMO_DATA / "trust"
    return f"""# Generated by dvc-gateway demo
[server]
host = "127.0.0.1"
port = {gateway_port}

[database]
url = "sqlite:///{work / "gateway.db"}"

[registry]
allow_private_endpoints = true

[signing]
trust_anchors = [{json.dumps(str(trust / "root.pem"))}]
intermediates = [{json.dumps(str(trust / "ca.pem"))}]
crls = [{json.dumps(str(trust / "crls"))}]
online_revocation = false

{_upstreams_text(urls) if urls else ""}[outbox]
backoff_initial_seconds = 0.2
backoff_max_seconds = 2.0
jitter_seconds = 0.1

[[auth.tokens]]
token = "{tokens["portal"]}"
role = "portal"

[[auth.tokens]]
token = "{tokens["admin"]}"
role = "admin"

[[auth.tokens]]
token = "{tokens["agency"]}"
role = "agency:{AGENCY}"

[[auth.tokens]]
token = "{tokens["agency2"]}"
role = "agency:{NATIONAL_AGENCY}"
"""


async def _walk_through(work: Path, console: Console, *, keep_serving: bool = False) -> list[dict[str, Any]]:
    try:
        async with asyncio.timeout(DEADLINE_SECONDS) as deadline:
            return await _run(work, console, deadline if keep_serving else None)
    except TimeoutError:
        raise DemoError(f"the walk-through did not finish within {DEADLINE_SECONDS:g} s") from None
    except httpx.HTTPError as exc:
        raise DemoError(f"HTTP failure: {type(exc).__name__}: {exc}") from None


#: The simulated upstreams, each served on its own loopback port.
SIMULATORS = ("agency", "national", "payment", "postal", "sms", "portal")


def _setting(event: asyncio.Event) -> Callable[[str], None]:
    """A server's ``on_ready`` that sets ``event`` (its URL unused)."""
    return lambda _url: event.set()


@dataclass
class _Servers:
    """The loopback sockets of the simulated upstreams and of the gateway, and the tasks serving them."""

    socks: dict[str, socket.socket]
    gateway_sock: socket.socket
    sim_stop: asyncio.Event = field(default_factory=asyncio.Event)
    gateway_stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: dict[str, asyncio.Event] = field(
        default_factory=lambda: {name: asyncio.Event() for name in (*SIMULATORS, "gateway")}
    )
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def listen(cls) -> _Servers:
        """Bind a free loopback port for each simulator and one for the gateway."""
        socks = {name: listen_socket("127.0.0.1", 0) for name in SIMULATORS}
        return cls(socks, listen_socket("127.0.0.1", 0))

    @property
    def urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in self.socks.items()}

    @property
    def gateway_port(self) -> int:
        port: int = self.gateway_sock.getsockname()[1]
        return port

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, runtime: Runtime, apps: dict[str, Any]) -> None:
        """Serve each simulator's app and run the daemon (API, outbox worker, periodic jobs) on their sockets."""
        for name in SIMULATORS:
            on_ready = _setting(self.ready[name])
            self.tasks.append(
                asyncio.create_task(serve_asgi(apps[name], self.socks[name], stop=self.sim_stop, on_ready=on_ready))
            )
        self.tasks.append(
            asyncio.create_task(
                run_daemon(
                    runtime,
                    sock=self.gateway_sock,
                    stop=self.gateway_stop,
                    handle_signals=False,
                    on_ready=lambda _u: self.ready["gateway"].set(),
                    worker_options={"poll_interval": 0.1},
                )
            )
        )

    async def stop(self) -> None:
        """Stop the gateway and the simulators, close the sockets, and fail if a server stopped on an error."""
        self.gateway_stop.set()
        self.sim_stop.set()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for sock in (*self.socks.values(), self.gateway_sock):
            sock.close()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise DemoError(f"a server stopped on an error: {type(result).__name__}: {result}")


async def _run(work: Path, console: Console, keep: asyncio.Timeout | None = None) -> list[dict[str, Any]]:
    """The walk-through; with ``keep`` (its deadline, lifted then), the servers keep running afterwards."""
    tokens = {role: secrets.token_urlsafe(24) for role in ("portal", "admin", "agency", "agency2", "outbound")}
    (work / "agency-outbound-token").write_text(tokens["outbound"], encoding="utf-8")
    servers = _Servers.listen()
    config_path = work / "gateway.toml"
    config_path.write_text(_config_text(work, servers.gateway_port, tokens, servers.urls), encoding="utf-8")

    def done(text: str) -> None:
        console.print(f"  [green]✓[/] {text}")

    with console.status("Starting the gateway and the simulated upstreams…") as status:
        runtime, procedures = _open_gateway(config_path)
        servers.start(runtime, _simulator_apps(tokens, servers.gateway_url))
        try:
            await _until("the servers to start", _started(servers.tasks, *servers.ready.values()))
            _report_started(done, servers, procedures)
            async with contextlib.AsyncExitStack() as stack:
                clients = {
                    name: await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30, trust_env=False))
                    for name, url in {"gateway": servers.gateway_url, **servers.urls}.items()
                }
                journeys = await play_story(clients, tokens, work, servers.urls["agency"], status, done)
                await play_citizens(clients, tokens, status, done, journeys[0]["code"])
            if keep is not None:
                keep.reschedule(None)
                status.update("Serving until Ctrl-C…")
                _print_serving(console, journeys, servers.gateway_url, tokens["admin"])
                await _until_signalled()
            return journeys
        finally:
            status.update("Stopping…")
            await servers.stop()


async def _until_signalled() -> None:
    """Wait for SIGINT (Ctrl-C) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


def _print_serving(console: Console, journeys: list[dict[str, Any]], url: str, admin_token: str) -> None:
    _print_journeys(console, journeys)
    codes = [j["code"] for j in journeys if isinstance(j.get("code"), str)]
    console.print(f"\nThe gateway keeps serving at {url}:")
    console.print(f"  console: {url}/console/ (log in with the admin token {admin_token})")
    if codes:
        console.print(f"  citizens' lookup: {url}/lookup?code={codes[0]}")
    console.print("Press Ctrl-C to stop.")


def _open_gateway(config_path: Path) -> tuple[Runtime, int]:
    """Open the gateway's runtime on the generated configuration and import the sample procedures; return how many."""
    runtime = open_runtime(load_settings(config_path, environ={}))
    try:
        specs = load_catalogue(DEMO_DATA / "procedures.json")
        with runtime.db.unit_of_work() as session:
            import_procedures(session, specs)
    except CatalogueError as exc:
        runtime.close()
        raise DemoError(str(exc)) from None
    return runtime, len(specs)


def _simulator_apps(tokens: dict[str, str], gateway_url: str) -> dict[str, Any]:
    """The simulated agency, national portal, payment platform and postal service, calling back ``gateway_url``."""
    from ..simulators import national_portal, payment, postal, sms
    from ..simulators.agency import create_app as create_agency

    return {
        "agency": create_agency(
            token=tokens["outbound"],
            callback_url=f"{gateway_url}/api/v1/agencies/{AGENCY}/events",
            callback_token=tokens["agency"],
        ),
        "national": national_portal.create_app(
            username=NATIONAL_USER, password=NATIONAL_PASSWORD, dstcode=NATIONAL_DSTCODE
        ),
        "payment": payment.create_app(
            merchant_code=MERCHANT_CODE,
            secret=MERCHANT_SECRET,
            notify_url=f"{gateway_url}/api/v1/payments/notify",
            national_notify_url=f"{gateway_url}/api/v1/payments/notify/national",
        ),
        "sms": sms.create_app(secret=SMS_SECRET, inbound_url=f"{gateway_url}/api/v1/sms/inbound"),
        "portal": portal_hook_app(),
        "postal": postal.create_app(secret=POSTAL_SECRET, webhook_url=f"{gateway_url}/api/v1/postal/events"),
    }


def _report_started(done: Callable[[str], None], servers: _Servers, procedures: int) -> None:
    urls = servers.urls
    done(f"gateway on {servers.gateway_url}, database in a temporary directory")
    done(
        f"simulated upstreams: agency {urls['agency']}, national portal {urls['national']}, "
        f"payment {urls['payment']} (national payment platform under /national), postal service {urls['postal']}, "
        f"SMS gateway {urls['sms']}, the portal's webhook {urls['portal']}/hooks"
    )
    done(f"{procedures} procedures imported from the sample catalogue")


def _started(tasks: list[asyncio.Task[None]], *events: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        for task in tasks:
            if task.done():
                error = task.exception()
                raise DemoError(f"a server failed to start: {type(error).__name__}: {error}" if error else "stopped")
        return all(event.is_set() for event in events)

    return check


# ----------------------------------------------------------------------------------------------------------------------
# Output


def _time(value: str | None) -> str:
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value).astimezone(VIETNAM_TZ)
    except ValueError:
        return value
    return moment.strftime("%d/%m/%Y %H:%M:%S")


def _print_journeys(console: Console, journeys: list[dict[str, Any]]) -> None:
    for dossier in journeys:
        console.print()
        print_history(console, dossier, _time)
        for component in dossier.get("components", []):
            report = component.get("verification") or {}
            console.print(
                f"  component {component.get('code')} {component.get('filename')}: "
                f"signature {report.get('verdict', '?')} ({report.get('format', '?')})"
            )
        check = (
            "required" if dossier.get("originals_check_required") else "not required (every component validly signed)"
        )
        console.print(f"  originals check: {check}")
        payment = dossier.get("payment")
        if payment:
            amount = f"{payment.get('amount'):,} VND"
            console.print(f"  payment {payment.get('reference')}: {amount}, {payment.get('status')}")
        for shipment in dossier.get("shipments") or []:
            order = f"postal {shipment.get('kind')} order {shipment.get('order_code')}"
            console.print(f"  {order}: {shipment.get('status')}")
        console.print(
            f"  received {_time(dossier.get('received_at'))}, acknowledge by {_time(dossier.get('acknowledge_by'))}, "
            f"due {_time(dossier.get('due_at'))}"
        )
