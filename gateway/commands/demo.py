"""``dvc-gateway demo``: a self-contained walk-through on simulated upstreams; it ends by itself.

In a temporary directory, with a temporary SQLite database and a generated configuration (random tokens for the
portal, the admin and the agency; ``[registry] allow_private_endpoints = true``; the sample trust anchors of
``examples/trust``), it:

1. starts the simulated agency, national public-service portal, payment platform and postal service, and the daemon
   (API, outbox worker and periodic jobs) in this process, on free loopback ports;
2. imports ``examples/procedures.json`` and registers the simulated agency through the admin API;
3. submits two dossiers through the portal API: one whose components are all validly signed (the signed PDF
   ``examples/documents/don-de-nghi.pdf`` among them: exempt from the originals check), one unsigned;
4. waits until the outbox worker has delivered both to the simulated agency;
5. makes the agency's clerk act through the simulator's ``/_sim/dossiers/{code}/events``, which posts each event
   back to the gateway: the first dossier is received and its fee requested; the applicant pays on the payment
   platform, whose notification marks the fee paid and resumes the dossier; it is processed and completed; the
   postal service is ordered to deliver the result, and its tracking webhook brings ``delivered`` → ``returned``.
   At each step the national portal simulator holds the same status. The second dossier (unsigned scans, sent by
   post) gets a pickup order for its originals, is found incomplete (``supplement_requested``), the applicant sends
   the signed form through the portal API, and it is received;
6. prints each dossier's journey: its status history with times, the verification verdict of every component,
   whether the originals must be checked, and the due date.

Everything stays on 127.0.0.1 and in the temporary directory, which is removed at the end. It takes a few seconds;
a failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from ..catalogue import CatalogueError, import_procedures, load_catalogue
from ..config import load_config
from ..daemon import listen_socket, run_daemon, serve_asgi
from ..domain.calendar import VIETNAM_TZ
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..logging import setup_logging
from .serve import open_runtime

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
#: The whole walk-through must end within this many seconds.
DEADLINE_SECONDS = 50.0
#: Each wait (a delivery, a callback) within this many.
WAIT_SECONDS = 20.0


#: The simulators' credentials (their demo defaults).
NATIONAL_USER, NATIONAL_PASSWORD, NATIONAL_DSTCODE = "lgsp", "lgsp-secret", "H38"
MERCHANT_CODE, MERCHANT_SECRET = "DVCH38", "SIMULATOR-SECRET"
POSTAL_SECRET = "POSTAL-SIMULATOR-SECRET"  # noqa: S105 - the simulator's demo secret


class DemoError(Exception):
    """The walk-through failed; the message is one line."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="a self-contained walk-through on a simulated agency",
        description="Run the gateway and a simulated agency in this process, send two dossiers through their "
        "journey, print it, and stop. Nothing is left behind.",
    )
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    for needed in ("procedures.json", "trust/root.pem", "trust/ca.pem", "documents/don-de-nghi.pdf"):
        if not (EXAMPLES / needed).exists():
            raise UsageError(f"the demo needs examples/{needed} from a source checkout of dvc-gateway")
    setup_logging("ERROR")  # the walk-through is the output; only errors are logged (JSON lines on stderr)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="dvc-gateway-demo-") as work:
            journeys = asyncio.run(_walk_through(Path(work), console))
    except DemoError as exc:
        print(f"dvc-gateway: error: demo: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
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

[postal]
base_url = "{urls["postal"]}"
secret = "{POSTAL_SECRET}"
office_name = "Bộ phận Một cửa (mô phỏng)"
office_phone = "02393123456"
office_address = "1 Nguyễn Du, TP Hà Tĩnh"

"""


def _config_text(work: Path, gateway_port: int, tokens: dict[str, str], urls: dict[str, str] | None = None) -> str:
    trust = EXAMPLES / "trust"
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
"""


def _file(name: str, code: str, *, signature: str | None = None) -> dict[str, Any]:
    path = EXAMPLES / "documents" / name
    item: dict[str, Any] = {
        "code": code,
        "filename": name,
        "content_base64": base64.b64encode(path.read_bytes()).decode("ascii"),
    }
    if signature is not None:
        item["detached_signature_base64"] = base64.b64encode((EXAMPLES / "documents" / signature).read_bytes()).decode(
            "ascii"
        )
    return item


def _submission(components: list[dict[str, Any]], summary: str, applicant: dict[str, Any]) -> dict[str, Any]:
    return {
        "procedure_code": PROCEDURE,
        "agency_code": AGENCY,
        "channel": "online",
        "applicant": applicant,
        "summary": summary,
        "components": components,
        "fees": [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": 150000}],
        "return_method": "post",
        "delivery_address": {"province": "Hà Tĩnh", "line": "Số 1, đường Mẫu"},
    }


SAMPLE_APPLICANTS = (
    {"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345", "phone": "0912345678"},
    {"kind": "citizen", "full_name": "Trần Thị B", "id_number": "001199054321", "phone": "0987654321"},
)


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def _expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        try:
            detail = response.json().get("message") or response.json().get("error") or ""
        except (ValueError, AttributeError):
            detail = ""
        raise DemoError(f"{what}: HTTP {response.status_code}{': ' + str(detail)[:200] if detail else ''}")
    body = response.json()
    if not isinstance(body, dict):
        raise DemoError(f"{what}: the answer is not a JSON object")
    return body


async def _walk_through(work: Path, console: Console) -> list[dict[str, Any]]:
    try:
        async with asyncio.timeout(DEADLINE_SECONDS):
            return await _run(work, console)
    except TimeoutError:
        raise DemoError(f"the walk-through did not finish within {DEADLINE_SECONDS:g} s") from None
    except httpx.HTTPError as exc:
        raise DemoError(f"HTTP failure: {type(exc).__name__}: {exc}") from None


async def _run(work: Path, console: Console) -> list[dict[str, Any]]:
    from ..simulators import national_portal, payment, postal
    from ..simulators.agency import create_app as create_agency

    tokens = {role: secrets.token_urlsafe(24) for role in ("portal", "admin", "agency", "outbound")}
    (work / "agency-outbound-token").write_text(tokens["outbound"], encoding="utf-8")
    names = ("agency", "national", "payment", "postal")
    socks = {name: listen_socket("127.0.0.1", 0) for name in names}
    urls = {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in socks.items()}
    gateway_sock = listen_socket("127.0.0.1", 0)
    gateway_port = gateway_sock.getsockname()[1]
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    config_path = work / "gateway.toml"
    config_path.write_text(_config_text(work, gateway_port, tokens, urls), encoding="utf-8")

    def done(text: str) -> None:
        console.print(f"  [green]✓[/] {text}")

    sim_stop, gateway_stop = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    with console.status("Starting the gateway and the simulated upstreams…") as status:
        config = load_config(config_path, environ={})
        runtime = open_runtime(config)
        try:
            specs = load_catalogue(EXAMPLES / "procedures.json")
            with runtime.db.unit_of_work() as session:
                import_procedures(session, specs)
        except CatalogueError as exc:
            runtime.close()
            raise DemoError(str(exc)) from None
        apps = {
            "agency": create_agency(
                token=tokens["outbound"],
                callback_url=f"{gateway_url}/api/v1/agencies/{AGENCY}/events",
                callback_token=tokens["agency"],
            ),
            "national": national_portal.create_app(
                username=NATIONAL_USER, password=NATIONAL_PASSWORD, dstcode=NATIONAL_DSTCODE
            ),
            "payment": payment.create_app(
                merchant_code=MERCHANT_CODE, secret=MERCHANT_SECRET, notify_url=f"{gateway_url}/api/v1/payments/notify"
            ),
            "postal": postal.create_app(secret=POSTAL_SECRET, webhook_url=f"{gateway_url}/api/v1/postal/events"),
        }
        ready = {name: asyncio.Event() for name in (*names, "gateway")}
        for name in names:
            event = ready[name]
            tasks.append(
                asyncio.create_task(
                    serve_asgi(apps[name], socks[name], stop=sim_stop, on_ready=lambda _u, e=event: e.set())
                )
            )
        tasks.append(
            asyncio.create_task(
                run_daemon(
                    runtime,
                    sock=gateway_sock,
                    stop=gateway_stop,
                    handle_signals=False,
                    on_ready=lambda _u: ready["gateway"].set(),
                    worker_options={"poll_interval": 0.1},
                )
            )
        )
        try:
            await _until("the servers to start", _started(tasks, *ready.values()))
            done(f"gateway on {gateway_url}, database in a temporary directory")
            done(
                f"simulated upstreams: agency {urls['agency']}, national portal {urls['national']}, "
                f"payment {urls['payment']}, postal service {urls['postal']}"
            )
            done(f"{len(specs)} procedures imported from examples/procedures.json")
            async with contextlib.AsyncExitStack() as stack:
                clients = {
                    name: await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30, trust_env=False))
                    for name, url in {"gateway": gateway_url, **urls}.items()
                }
                return await _story(clients, tokens, work, urls["agency"], status, done)
        finally:
            status.update("Stopping…")
            gateway_stop.set()
            sim_stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for sock in (*socks.values(), gateway_sock):
                sock.close()
            for result in results:
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    raise DemoError(f"a server stopped on an error: {type(result).__name__}: {result}")


def _started(tasks: list[asyncio.Task[None]], *events: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        for task in tasks:
            if task.done():
                error = task.exception()
                raise DemoError(f"a server failed to start: {type(error).__name__}: {error}" if error else "stopped")
        return all(event.is_set() for event in events)

    return check


async def _story(
    clients: dict[str, httpx.AsyncClient],
    tokens: dict[str, str],
    work: Path,
    sim_url: str,
    status: Any,
    done: Callable[[str], None],
) -> list[dict[str, Any]]:
    gateway, agency, national = clients["gateway"], clients["agency"], clients["national"]
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    portal = {"Authorization": f"Bearer {tokens['portal']}"}

    async def read(code: str) -> dict[str, Any]:
        return _expect(await gateway.get(f"/api/v1/dossiers/{code}", headers=portal), 200, f"reading {code}")

    async def national_code_of(code: str) -> int | None:
        response = await national.get(f"/_sim/dossiers/{code}")
        if response.status_code == 404:
            return None
        return int(_expect(response, 200, "the national portal's record")["TrangThaiHoSo"])

    async def step(code: str, what: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait until the dossier is as ``wanted`` and the national portal holds its status; say so."""
        view: dict[str, Any] = {}

        async def reached() -> bool:
            nonlocal view
            view = await read(code)
            return wanted(view) and await national_code_of(code) == view["national_status_code"]

        try:
            await _until(f"{code}: {what}", reached)
        except DemoError as exc:
            held = await national_code_of(code)
            seen = f"status {view.get('status')}, shipments {view.get('shipments')}, national portal {held}"
            raise DemoError(f"{exc} (seen: {seen})") from None
        done(f"{code}: {what} (national portal: TrangThaiHoSo {view['national_status_code']}, as here)")
        return view

    status.update("Registering the simulated agency…")
    registration = {
        "code": AGENCY,
        "name": "Sở Xây dựng (mô phỏng)",
        "protocol": "rest",
        "endpoint": sim_url,
        "procedures": [PROCEDURE],
        "auth": {"type": "bearer", "token": f"file:{work / 'agency-outbound-token'}"},
        "status_updates": {"mode": "callback"},
    }
    _expect(await gateway.post("/api/v1/admin/agencies", json=registration, headers=admin), 201, "registration")
    done(f"agency {AGENCY} registered through the admin API (REST, bearer token by file: reference)")

    status.update("Submitting two dossiers through the portal API…")
    signed = _submission(
        [
            _file("don-de-nghi.pdf", "TP1"),
            _file("anh-cccd.jpg", "TP2", signature="anh-cccd.jpg.p7s"),
            _file("to-khai.xml", "TP3"),
        ],
        "Cấp giấy phép xây dựng nhà ở riêng lẻ (hồ sơ ký số)",
        SAMPLE_APPLICANTS[0],
    )
    unsigned = _submission(
        [_file("ban-sao.pdf", code) for code in ("TP1", "TP2", "TP3")],
        "Cấp giấy phép xây dựng nhà ở riêng lẻ (hồ sơ giấy scan)",
        SAMPLE_APPLICANTS[1],
    )
    answers = await asyncio.gather(
        gateway.post("/api/v1/dossiers", json=signed, headers={**portal, "Idempotency-Key": "demo-signed"}),
        gateway.post("/api/v1/dossiers", json=unsigned, headers={**portal, "Idempotency-Key": "demo-unsigned"}),
    )
    first = _expect(answers[0], 201, "submitting the signed dossier")
    second = _expect(answers[1], 201, "submitting the unsigned dossier")
    codes = [first["code"], second["code"]]
    done(
        f"dossier {codes[0]} submitted (all components signed: originals check "
        f"{'required' if first.get('originals_check_required') else 'not required'})"
    )
    done(
        f"dossier {codes[1]} submitted (unsigned scans: originals check "
        f"{'required' if second.get('originals_check_required') else 'not required'})"
    )

    status.update("Waiting for the outbox worker to deliver both dossiers to the agency…")

    async def state() -> dict[str, Any]:
        return _expect(await agency.get("/_sim/state"), 200, "the simulator's state")

    async def delivered() -> bool:
        received = (await state())["dossiers"]
        return all(code in received for code in codes)

    await _until("the deliveries to the agency", delivered)
    done("both dossiers delivered to the agency's one-stop system (idempotency keys: <code>:deliver:<agency>)")

    async def clerk(code: str, event: dict[str, Any]) -> None:
        """The agency's clerk changes the dossier's status in the simulator, which posts the event to the gateway."""
        body = _expect(await agency.post(f"/_sim/dossiers/{code}/events", json=event), 200, f"{event['status']} event")
        callback = body.get("callback") or {}
        if callback.get("status_code") != 200 or callback.get("error"):
            raise DemoError(f"the agency's {event['status']} callback for {code} failed: {callback.get('error')}")

    first_code, second_code = codes

    def shipment(kind: str) -> Callable[[dict[str, Any]], bool]:
        return lambda view: any(s["kind"] == kind and s.get("order_code") for s in view.get("shipments") or [])

    status.update("The postal service is asked to collect the unsigned dossier's originals…")
    await step(second_code, "pickup of the paper originals ordered from the postal service", shipment("pickup"))

    status.update("The agency receives the signed dossier and asks for the fee…")
    await clerk(first_code, {"status": "received", "note": "Hồ sơ đầy đủ, hợp lệ"})
    await step(first_code, "received by the agency", lambda view: view["status"] == "received")
    await clerk(first_code, {"status": "fee_requested", "note": "Đề nghị nộp lệ phí cấp phép"})
    view = await step(
        first_code, "fee requested, payment created", lambda view: (view.get("payment") or {}).get("url") is not None
    )
    payment = view["payment"]
    done(
        f"{first_code}: the applicant is sent to the payment platform (reference {payment['reference']}, "
        f"{payment['amount']:,} VND)"
    )

    status.update("The applicant pays the fee online…")
    _expect(await clients["payment"].post("/_sim/pay-url", json={"url": payment["url"]}), 200, "paying the fee")
    await step(
        first_code,
        "fee paid (the platform's signed notification) → received again, the agency told",
        lambda view: view["status"] == "received" and all(fee["paid"] for fee in view["fees"]),
    )

    status.update("The agency processes and completes the signed dossier…")
    await clerk(first_code, {"status": "processing", "note": "Chuyển phòng chuyên môn thẩm định"})
    await step(first_code, "processing", lambda view: view["status"] == "processing")
    await clerk(first_code, {"status": "completed", "note": "Đã cấp giấy phép xây dựng"})
    view = await step(first_code, "completed; result shipped by post", shipment("delivery"))
    order = next(s["order_code"] for s in view["shipments"] if s["kind"] == "delivery")

    status.update("The postal service delivers the result…")
    for _ in range(5):
        answer = await clients["postal"].post(f"/_sim/orders/{order}/advance", json={})
        if answer.status_code != 200 or answer.json().get("status") == "delivered":
            break
    await step(
        first_code,
        f"order {order} delivered (the postal service's signed tracking events) → returned",
        lambda view: view["status"] == "returned",
    )

    status.update("The agency finds the unsigned dossier incomplete…")
    await clerk(
        codes[1],
        {
            "status": "supplement_requested",
            "reason": "Đơn đề nghị chưa được ký số",
            "components": ["TP1"],
            "note": "Bổ sung đơn đề nghị có chữ ký số",
        },
    )
    done(f"{codes[1]}: supplement_requested (TP1: the application form must be signed)")

    status.update("The applicant sends the signed form through the portal…")
    supplement = {"components": [_file("don-de-nghi.pdf", "TP1")], "note": "Đơn đề nghị đã ký số"}
    _expect(
        await gateway.post(
            f"/api/v1/dossiers/{codes[1]}/supplements",
            json=supplement,
            headers={**portal, "Idempotency-Key": "demo-supplement"},
        ),
        200,
        "the supplement",
    )

    async def supplemented() -> bool:
        record = (await state())["dossiers"].get(codes[1]) or {}
        return bool(record.get("supplements"))

    await _until("the supplement's delivery to the agency", supplemented)
    done(f"{codes[1]}: supplement received by the gateway and delivered to the agency → received")

    status.update("Reading the dossiers' journeys…")
    journeys = [await read(code) for code in codes]
    effects = (await state())["effects"]
    done(
        f"the agency saw {effects.get('deliver', 0)} deliveries and {effects.get('supplement', 0)} supplement: "
        "each exactly once"
    )
    return journeys


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
        table = Table(
            title=f"Dossier {dossier.get('code')}: {dossier.get('status')} "
            f"(national code {dossier.get('national_status_code')})",
            title_justify="left",
        )
        table.add_column("time (Asia/Ho_Chi_Minh)", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("by", no_wrap=True)
        table.add_column("note", overflow="fold")
        for entry in dossier.get("history", []):
            what = entry.get("status", "") + (f" · {entry['step']}" if entry.get("step") else "")
            table.add_row(_time(entry.get("at")), what, entry.get("actor", ""), entry.get("note") or "")
        console.print(table)
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
