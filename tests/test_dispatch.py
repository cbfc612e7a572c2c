"""The gateway's dispatcher: agency deliveries through the REST simulator on a real uvicorn server, the mapping of
failures to transient and permanent errors, the client cache, and the portal webhook.

Everything listens on 127.0.0.1; every wait has a limit.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.errors import AuthError, PermanentError, TransientError
from gateway import messages, outbox
from gateway.auth import Principal
from gateway.bootstrap import Composition
from gateway.catalogue import import_procedures, parse_catalogue
from gateway.daemon import listen_socket, serve_asgi
from gateway.outbox import RetryPolicy
from gateway.registry import Registration, register
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.agency import create_app as create_simulator
from gateway.store.models import utcnow
from gateway.workers import MessageView, OutboxWorker
from tests.core_support import reconfigured, submit
from tests.databases import BACKENDS, open_database
from tests.documents import make_pdf

AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
OUTBOUND_TOKEN = "sim-outbound-token-0123456789"
CATALOGUE = json.dumps(
    [
        {
            "code": PROCEDURE,
            "name": "Cấp giấy phép xây dựng",
            "agencies": [AGENCY, "000.00.10.H38"],
            "processing_days": 15,
            "components": [
                {"code": "TP1", "name": "Đơn đề nghị", "required": True, "must_be_signed": False},
                {"code": "TP2", "name": "Bản vẽ", "required": False, "must_be_signed": False},
            ],
            "fees": [],
        }
    ]
)


@dataclass
class Served:
    url: str
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        with anyio.fail_after(15):
            await self.task


async def serve(app: Any) -> Served:
    """``app`` on a real uvicorn server on a free loopback port."""
    sock = listen_socket("127.0.0.1", 0)
    ready = asyncio.Event()
    stop = asyncio.Event()
    task = asyncio.create_task(serve_asgi(app, sock, stop=stop, on_ready=lambda _url: ready.set()))
    with anyio.fail_after(15):
        while not ready.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    host, port = sock.getsockname()[:2]
    return Served(url=f"http://{host}:{port}", stop=stop, task=task)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "outbound-token"
    path.write_text(OUTBOUND_TOKEN, encoding="utf-8")
    return path


@pytest.fixture(params=BACKENDS)
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on a migrated database (SQLite, and PostgreSQL when configured) with the test catalogue."""
    with open_database(request.param, tmp_path) as db:
        settings = Settings.from_raw({"registry": {"allow_private_endpoints": True}, "portal": {}}, tmp_path)
        rt = Runtime(settings=settings, db=db)
        with db.unit_of_work() as session:
            import_procedures(session, parse_catalogue(CATALOGUE))
        yield rt
        if "verifier" in rt.__dict__:
            rt.verifier.close()


@pytest.fixture
async def agency() -> AsyncIterator[tuple[Served, AgencySimulator]]:
    app = create_simulator(token=OUTBOUND_TOKEN)
    served = await serve(app)
    yield served, app.state.simulator
    await served.close()


def registration(url: str, token_file: Path, *, code: str = AGENCY, **changes: Any) -> Registration:
    document = {
        "code": code,
        "name": "Sở Xây dựng",
        "protocol": "rest",
        "endpoint": url,
        "procedures": [PROCEDURE],
        "auth": {"type": "bearer", "token": f"file:{token_file}"},
        **changes,
    }
    return Registration.model_validate(document)


def register_agency(runtime: Runtime, reg: Registration, *, replace: bool = False) -> None:
    with runtime.db.unit_of_work() as session:
        register(session, reg, replace=replace)


async def submit_dossier(runtime: Runtime, *, agency: str = AGENCY) -> str:
    pdf = make_pdf("Don de nghi")
    document = {
        "procedure_code": PROCEDURE,
        "agency_code": agency,
        "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        "components": [
            {"code": "TP1", "filename": "don.pdf", "content_base64": base64.b64encode(pdf).decode()},
            {"code": "TP2", "filename": "ban-ve.pdf", "content_base64": base64.b64encode(make_pdf("Ban ve")).decode()},
        ],
    }
    answer = await submit(runtime, Principal("portal"), document, idempotency_key=None, now=utcnow())
    assert answer.status == 201, answer.body
    return answer.body["code"]


def view(kind: str, payload: dict[str, Any], key: str, *, target: str = AGENCY, message_id: int = 1) -> MessageView:
    return MessageView(
        id=message_id, kind=kind, target=target, payload=payload, idempotency_key=key, attempts=1, ordering_key=None
    )


def deliver_view(code: str, agency: str = AGENCY) -> MessageView:
    payload = {"dossier_code": code, "agency_code": agency}
    return view(messages.AGENCY_DELIVER, payload, outbox.message_key(code, f"deliver:{agency}"), target=agency)


# ----------------------------------------------------------------------------------------------------------------------
# Delivery through the simulator


async def test_worker_delivers_a_submitted_dossier_through_the_rest_simulator(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    worker = OutboxWorker(runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01))
    try:
        with anyio.fail_after(20):
            while code not in sim.dossiers:
                await worker.run_once()
                await asyncio.sleep(0.01)
    finally:
        await dispatcher.aclose()

    received = sim.dossiers[code]["received"]
    assert received["code"] == code
    assert received["procedure_code"] == PROCEDURE
    assert received["applicant"]["full_name"] == "Nguyễn Văn A"
    assert [c["code"] for c in received["components"]] == ["TP1", "TP2"]
    assert base64.b64decode(received["components"][0]["content_base64"]).startswith(b"%PDF")
    assert sim.effects["deliver"] == 1
    # The idempotency key is the message's: a repeat is replayed, not applied again.
    assert f"{code}:deliver:{AGENCY}" in sim.answers
    with runtime.db.unit_of_work() as session:
        assert outbox.stats(session)["done"] == 1


async def test_repeated_delivery_is_applied_once(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        await dispatcher.dispatch(deliver_view(code))
        await dispatcher.dispatch(deliver_view(code))  # at-least-once: the answer was lost, say
    finally:
        await dispatcher.aclose()
    assert sim.effects["deliver"] == 1
    assert sim.counters["replayed"] == 1


async def test_supplement_and_withdraw_reach_the_agency(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        await dispatcher.dispatch(deliver_view(code))
        supplement = {"dossier_code": code, "agency_code": AGENCY, "components": ["TP2"]}
        await dispatcher.dispatch(view(messages.AGENCY_SUPPLEMENT, supplement, f"{code}:supplement:1"))
        withdraw = {"dossier_code": code, "agency_code": AGENCY, "reason": "Không còn nhu cầu"}
        await dispatcher.dispatch(view(messages.AGENCY_WITHDRAW, withdraw, f"{code}:withdraw"))
    finally:
        await dispatcher.aclose()
    record = sim.dossiers[code]
    assert [[c["code"] for c in batch] for batch in record["supplements"]] == [["TP2"]]
    assert record["supplements"][0][0]["content_base64"]
    assert record["status"] == "withdrawn"
    assert record["withdraw_reason"] == "Không còn nhu cầu"


# ----------------------------------------------------------------------------------------------------------------------
# Failures: transient or permanent


async def test_server_errors_are_transient_and_refusals_permanent(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        sim.faults.update({"fail_next": 1, "fail_status": 503})
        with pytest.raises(TransientError):
            await dispatcher.dispatch(deliver_view(code))
        sim.faults.update({"html_next": 1})
        with pytest.raises(TransientError):  # a proxy's HTML page: an unreadable answer, retried
            await dispatcher.dispatch(deliver_view(code))
        sim.faults.update({"fail_next": 1, "fail_status": 400})
        with pytest.raises(PermanentError) as refused:
            await dispatcher.dispatch(deliver_view(code))
        assert not isinstance(refused.value, TransientError)
        assert sim.effects["deliver"] == 0
        await dispatcher.dispatch(deliver_view(code))
        assert sim.effects["deliver"] == 1
    finally:
        await dispatcher.aclose()


async def test_wrong_credentials_are_an_auth_error(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], tmp_path: Path
) -> None:
    served, _sim = agency
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-0123456789", encoding="utf-8")
    register_agency(runtime, registration(served.url, wrong))
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        with pytest.raises(AuthError):
            await dispatcher.dispatch(deliver_view(code))
    finally:
        await dispatcher.aclose()


async def test_unavailable_secret_is_permanent(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, _sim = agency
    monkeypatch.delenv("DVC_TEST_MISSING_TOKEN", raising=False)
    reg = Registration.model_validate(
        {
            "code": AGENCY,
            "name": "Sở Xây dựng",
            "protocol": "rest",
            "endpoint": served.url,
            "procedures": [PROCEDURE],
            "auth": {"type": "bearer", "token": "env:DVC_TEST_MISSING_TOKEN"},
        }
    )
    register_agency(runtime, reg)
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        with pytest.raises(AuthError, match="DVC_TEST_MISSING_TOKEN"):
            await dispatcher.dispatch(deliver_view(code))
    finally:
        await dispatcher.aclose()


async def test_unreachable_agency_is_transient(runtime: Runtime, token_file: Path) -> None:
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    register_agency(runtime, registration(f"http://127.0.0.1:{port}", token_file))
    code = await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        with pytest.raises(TransientError):
            await dispatcher.dispatch(deliver_view(code))
    finally:
        await dispatcher.aclose()


async def test_private_endpoints_need_the_registry_setting(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    strict = Runtime(settings=Settings.from_raw({}, runtime.settings.base_dir), db=runtime.db)
    dispatcher = Composition(strict)
    try:
        with pytest.raises(PermanentError, match="loopback"):
            await dispatcher.dispatch(deliver_view(code))
    finally:
        await dispatcher.aclose()
    assert sim.counters["requests"] == 0


async def test_missing_agency_dossier_soap_and_unknown_kind_are_permanent(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, _sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    soap = Registration.model_validate(
        {
            "code": "000.00.10.H38",
            "name": "Sở Kế hoạch và Đầu tư",
            "protocol": "soap",
            "wsdl": "https://motcua.example.vn/soap?wsdl",
            "procedures": [PROCEDURE],
            "mapping": {"operations": {"nop": "X"}},  # stored unchecked: the client cannot be built from it
        }
    )
    register_agency(runtime, soap)
    dispatcher = Composition(runtime)
    try:
        with pytest.raises(PermanentError, match="not registered"):
            await dispatcher.dispatch(deliver_view(code, agency="000.00.99.H38"))
        with pytest.raises(PermanentError, match="no dossier"):
            await dispatcher.dispatch(deliver_view("000.00.23.H38-261123-9999"))
        with pytest.raises(PermanentError, match=r"cannot reach the agency as registered: .*unknown operation 'nop'"):
            await dispatcher.dispatch(deliver_view(code, agency="000.00.10.H38"))
        with pytest.raises(PermanentError, match="unknown message kind"):
            await dispatcher.dispatch(view("national_portal.sync", {"dossier_code": code}, "k"))
        with pytest.raises(PermanentError):
            await dispatcher.dispatch(view(messages.AGENCY_DELIVER, {}, "k2"))
    finally:
        await dispatcher.aclose()


async def test_permanent_failure_parks_the_message_as_dead(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path
) -> None:
    served, sim = agency
    register_agency(runtime, registration(served.url, token_file))
    code = await submit_dossier(runtime)
    sim.faults.update({"fail_next": 1, "fail_status": 422})
    dispatcher = Composition(runtime)
    worker = OutboxWorker(runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01))
    try:
        with anyio.fail_after(20):
            while True:
                await worker.run_once()
                with runtime.db.unit_of_work() as session:
                    if outbox.stats(session)["dead"] == 1:
                        dead = outbox.list_messages(session, outbox.DEAD)[0]
                        break
                await asyncio.sleep(0.01)
    finally:
        await dispatcher.aclose()
    assert dead.ordering_key == code
    assert "HTTP 422" in (dead.last_error or "")
    assert dead.attempts == 1


# ----------------------------------------------------------------------------------------------------------------------
# The client cache


async def test_client_is_cached_and_rebuilt_when_the_registration_changes(
    runtime: Runtime, agency: tuple[Served, AgencySimulator], token_file: Path, tmp_path: Path
) -> None:
    served, sim = agency
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-0123456789", encoding="utf-8")
    register_agency(runtime, registration(served.url, wrong))
    first, second = await submit_dossier(runtime), await submit_dossier(runtime)
    dispatcher = Composition(runtime)
    try:
        with pytest.raises(AuthError):
            await dispatcher.dispatch(deliver_view(first))
        cached = dispatcher.agency_clients._entries[AGENCY].client
        with pytest.raises(AuthError):
            await dispatcher.dispatch(deliver_view(first))
        assert dispatcher.agency_clients._entries[AGENCY].client is cached
        # The operator fixes the registration: the next delivery uses a new client with the new credentials.
        register_agency(runtime, registration(served.url, token_file), replace=True)
        await dispatcher.dispatch(deliver_view(first))
        assert dispatcher.agency_clients._entries[AGENCY].client is not cached
        await dispatcher.dispatch(deliver_view(second))
        assert sim.effects["deliver"] == 2
        await asyncio.sleep(0)  # the retired client closes in the background
        assert cached._client.is_closed
    finally:
        await dispatcher.aclose()
    assert dispatcher.agency_clients._entries == {}


# ----------------------------------------------------------------------------------------------------------------------
# The provincial portal's webhook


class PortalReceiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []

        async def hook(request: Request) -> JSONResponse:
            self.received.append((dict(request.headers), json.loads(await request.body())))
            return JSONResponse({"ok": self.status < 300}, status_code=self.status)

        self.app = Starlette(routes=[Route("/hooks/dvc", hook, methods=["POST"])])


def webhook_view(code: str = "000.00.23.H38-261123-0001") -> MessageView:
    event = {"status": "received", "at": "2026-11-23T08:00:00+07:00", "actor": "agency:000.00.23.H38", "note": None}
    return view(
        messages.PORTAL_WEBHOOK,
        {"dossier_code": code, "event": event},
        f"{code}:webhook:7",
        target=messages.PORTAL_TARGET,
    )


async def test_webhook_posts_the_event_with_bearer_token_and_idempotency_key(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = PortalReceiver()
    served = await serve(receiver.app)
    monkeypatch.setenv("DVC_TEST_PORTAL_TOKEN", "portal-hook-token")
    portal = {"webhook_url": f"{served.url}/hooks/dvc", "token": "env:DVC_TEST_PORTAL_TOKEN", "timeout_seconds": 5}
    dispatcher = Composition(reconfigured(runtime, portal=portal))
    try:
        await dispatcher.dispatch(webhook_view())
    finally:
        await dispatcher.aclose()
        await served.close()
    [(headers, body)] = receiver.received
    assert headers["authorization"] == "Bearer portal-hook-token"
    assert headers["idempotency-key"] == "000.00.23.H38-261123-0001:webhook:7"
    assert headers["content-type"] == "application/json"
    assert body["dossier_code"] == "000.00.23.H38-261123-0001"
    assert body["event"]["status"] == "received"
    assert body["event"]["national_status_code"] == 2


async def test_webhook_failures_and_missing_configuration(runtime: Runtime) -> None:
    receiver = PortalReceiver(status=502)
    served = await serve(receiver.app)
    unconfigured = Composition(runtime)
    dispatcher = Composition(reconfigured(runtime, portal={"webhook_url": f"{served.url}/hooks/dvc"}))
    try:
        with pytest.raises(PermanentError, match="webhook_url"):
            await unconfigured.dispatch(webhook_view())
        with pytest.raises(TransientError):
            await dispatcher.dispatch(webhook_view())
        receiver.status = 404
        with pytest.raises(PermanentError):
            await dispatcher.dispatch(webhook_view())
    finally:
        await unconfigured.aclose()
        await dispatcher.aclose()
        await served.close()
    assert "authorization" not in receiver.received[0][0]
