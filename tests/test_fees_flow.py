"""Fee payment end to end: the gateway, the payment platform simulator and the agency simulator on real loopback
servers. Fee requested → payment created (URL and reference in the dossier) → the simulator pays and notifies →
fees paid, dossier resumed (the wait does not count), the agency told through the outbox, history and audit; and the
failures: duplicate, forged, wrong amount, unknown reference, lost notification (the query job), reconciliation.

Every server binds 127.0.0.1; every wait has a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from adapters.errors import PermanentError
from adapters.http import default_factory
from adapters.payment import sign
from gateway import audit, messages
from gateway.api import create_app
from gateway.bootstrap import Composition, context_of
from gateway.bootstrap.upstreams import build_provider, build_signer
from gateway.cli import main
from gateway.flows.payment.jobs import periodic_jobs, query_pending
from gateway.outbox import RetryPolicy
from gateway.periodic import PeriodicJob
from gateway.registry import Registration, RegistrySettings, register, validate_registration
from gateway.runtime import Runtime
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.agency import create_app as create_agency
from gateway.simulators.payment import PAYMENT_PAGE_PATH, PaymentSimulator
from gateway.simulators.payment import create_app as create_payment_platform
from gateway.store.models import AuditEntry, OutboxMessage, Payment
from gateway.workers import MessageView, OutboxWorker
from tests.api_support import (
    AGENCY,
    AGENCY_AUTH,
    JOINT,
    PERSONAL_STRINGS,
    PORTAL,
    PROCEDURE,
    Clock,
    open_runtime,
    registration,
    submission,
)
from tests.databases import BACKENDS
from tests.servers import ServerThread

pytest_plugins = ("tests.api_fixtures",)

MERCHANT = "DVCH38"
SECRET = "SIMULATOR-SECRET"  # the simulator's demo secret
SECRET_ENV = "DVC_TEST_PAYMENT_SECRET"
RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"
FEE = 150_000


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[str, PaymentSimulator]]:
    """The payment platform simulator on a loopback server (reset for each test)."""
    app = create_payment_platform(merchant_code=MERCHANT, secret=SECRET)
    with ServerThread(app) as server:
        yield server.base_url, app.state.simulator


@pytest.fixture(scope="module")
def agency_sim() -> Iterator[tuple[str, AgencySimulator]]:
    app = create_agency()
    with ServerThread(app) as server:
        yield server.base_url, app.state.simulator


@dataclass
class Flow:
    runtime: Runtime
    clock: Clock
    client: httpx.AsyncClient  # the gateway's API over the network
    gateway_url: str
    platform_url: str
    platform: PaymentSimulator
    agency_url: str
    agency: AgencySimulator

    @property
    def notify_url(self) -> str:
        return f"{self.gateway_url}/api/v1/payments/notify"

    async def submit(self, **overrides: Any) -> dict[str, Any]:
        response = await self.client.post("/api/v1/dossiers", json=submission(**overrides), headers=PORTAL)
        assert response.status_code == 201, response.text
        return response.json()

    async def event(self, code: str, status: str, **fields: Any) -> dict[str, Any]:
        body = {"dossier_code": code, "status": status, "at": self.clock.now.isoformat(), **fields}
        response = await self.client.post(f"/api/v1/agencies/{AGENCY}/events", json=body, headers=AGENCY_AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    async def get(self, code: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/dossiers/{code}", headers=PORTAL)
        assert response.status_code == 200, response.text
        return response.json()

    async def pay(self, url: str, **options: Any) -> dict[str, Any]:
        """The payer opens the payment URL at the platform and pays (the platform then notifies the gateway)."""
        async with httpx.AsyncClient(base_url=self.platform_url, trust_env=False, timeout=20) as payer:
            response = await payer.post("/_sim/pay-url", json={"url": url, **options})
        assert response.status_code == 200, response.text
        return response.json()

    async def notify(self, params: dict[str, str]) -> dict[str, str]:
        response = await self.client.get("/api/v1/payments/notify", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def requested(self, *, wait_days: int = 0) -> tuple[str, dict[str, Any]]:
        """A dossier received, processing, then asked for its fees; the dossier after ``wait_days`` days."""
        code = (await self.submit())["code"]
        await self.event(code, "received")
        await self.event(code, "processing")
        await self.event(code, "fee_requested", note="Nộp lệ phí cấp phép")
        if wait_days:
            self.clock.advance(days=wait_days)
        return code, await self.get(code)

    def rows(self, model: Any, **where: Any) -> list[Any]:
        with self.runtime.db.unit_of_work() as session:
            statement = select(model).filter_by(**where).order_by(model.id)
            return list(session.scalars(statement))

    def fee_paid_messages(self, code: str) -> list[OutboxMessage]:
        return [m for m in self.rows(OutboxMessage, ordering_key=code) if m.kind == messages.AGENCY_FEE_PAID]

    async def drain(self, done: Any) -> None:
        """Run the outbox (through the real dispatcher) until ``done()``."""
        dispatcher = Composition(self.runtime)
        worker = OutboxWorker(self.runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01))
        try:
            with anyio.fail_after(30):
                while not done():
                    await worker.run_once()
                    await asyncio.sleep(0.01)
        finally:
            await dispatcher.aclose()


def payment_section(platform_url: str, **changes: Any) -> dict[str, Any]:
    section = {
        "base_url": platform_url,
        "merchant_code": MERCHANT,
        "secret": f"env:{SECRET_ENV}",
        "return_url": RETURN_URL,
        "at_submission": False,
        "query_after_minutes": 10,
        "query_interval_seconds": 60,
        "settlement_url": f"{platform_url}/_sim/settlement?date={{date}}",
    }
    section.update(changes)
    return section


def point_agency_at(runtime: Runtime, url: str) -> None:
    document = {**registration(AGENCY, [PROCEDURE, JOINT]), "endpoint": url}
    settings = RegistrySettings(allow_private_endpoints=True)
    with runtime.db.unit_of_work() as session:
        reg = validate_registration(document, settings=settings, known_procedures={PROCEDURE, JOINT, "2.001610"})
        register(session, reg, replace=True)


async def open_flow(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: tuple[str, PaymentSimulator],
    agency_sim: tuple[str, AgencySimulator],
    **payment: Any,
) -> AsyncIterator[Flow]:
    """The gateway (``[payment]`` changed by ``payment``) served on loopback, with the two simulators."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    platform_url, sim = platform
    agency_url, agency = agency_sim
    sim.reset()
    agency.reset()
    with open_runtime(backend, tmp_path, payment=payment_section(platform_url, **payment)) as runtime:
        point_agency_at(runtime, agency_url)
        clock = Clock()
        with ServerThread(create_app(runtime, clock=clock)) as server:
            sim.configure({"notify_url": f"{server.base_url}/api/v1/payments/notify", "duplicate_ipn": False})
            async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=20) as client:
                yield Flow(runtime, clock, client, server.base_url, platform_url, sim, agency_url, agency)
            sim.configure({"notify_url": None})


@pytest.fixture(params=BACKENDS)
async def flow(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: tuple[str, PaymentSimulator],
    agency_sim: tuple[str, AgencySimulator],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Flow]:
    async for opened in open_flow(request.param, tmp_path, monkeypatch, platform, agency_sim):
        yield opened


@pytest.fixture(params=BACKENDS)
async def flow_paying_at_submission(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: tuple[str, PaymentSimulator],
    agency_sim: tuple[str, AgencySimulator],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Flow]:
    async for opened in open_flow(request.param, tmp_path, monkeypatch, platform, agency_sim, at_submission=True):
        yield opened


Query = Callable[..., Awaitable[dict[str, int]]]


@contextlib.asynccontextmanager
async def payment_queries(runtime: Runtime) -> AsyncIterator[tuple[list[PeriodicJob], Query]]:
    """The payment query job of ``runtime``'s settings and one run of it (``query(now=...)``): the provider over a
    client of the default factory, the use cases' context of the runtime."""
    settings = runtime.settings.payment
    assert settings is not None
    async with default_factory.client(messages.PAYMENT_TARGET, settings.client_settings()) as http:
        provider = build_provider(settings, http)
        ctx = context_of(runtime)
        sign = build_signer(settings)
        yield (
            periodic_jobs(ctx, settings, provider, sign=sign),
            functools.partial(query_pending, ctx, settings, provider, sign=sign),
        )


def history_steps(view: dict[str, Any]) -> list[str | None]:
    return [h.get("step") for h in view["history"]]


# ----------------------------------------------------------------------------------------------------------------------
# The whole flow


async def test_fee_requested_paid_notified_resumed_and_agency_told(flow: Flow) -> None:
    code = (await flow.submit())["code"]
    await flow.event(code, "received")
    await flow.event(code, "processing")
    before = await flow.get(code)
    assert before["payment"] is None  # at_submission = false: nothing is due yet
    await flow.event(code, "fee_requested", note="Nộp lệ phí cấp phép")
    view = await flow.get(code)
    payment = view["payment"]
    assert set(payment) == {"reference", "url", "amount", "status"}
    assert payment["reference"] == f"{code}-P1"
    assert payment["amount"] == FEE and type(payment["amount"]) is int
    assert payment["status"] == "pending"
    assert payment["url"].startswith(f"{flow.platform_url}{PAYMENT_PAGE_PATH}?")
    assert "vnp_Amount=15000000&" in payment["url"] and "vnp_SecureHash=" in payment["url"]
    assert view["status"] == "fee_requested" and view["fees"][0]["paid"] is False

    flow.clock.advance(days=2)  # Wednesday 09:00: two working days waiting for the applicant
    paid = await flow.pay(payment["url"], duplicate=True)  # the platform notifies twice, as platforms do
    assert [d["answer"] for d in paid["ipn"]] == [
        {"RspCode": "00", "Message": "Confirm Success"},
        {"RspCode": "02", "Message": "Order already confirmed"},
    ]

    after = await flow.get(code)
    assert after["status"] == "processing"  # back to where it was before the wait
    assert after["fees"] == [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": FEE, "paid": True}]
    assert after["payment"]["status"] == "paid" and after["payment"]["reference"] == payment["reference"]
    last = after["history"][-1]
    assert last["step"] == "fee_paid" and last["status"] == "processing" and last["actor"] == "payment:vnpay"
    assert history_steps(after).count("fee_paid") == 1  # the duplicate changed nothing
    # The two days waited do not count: the due date moved by them.
    assert after["due_at"] > view["due_at"]
    assert after["due_at"] == "2026-12-16T17:00:00+07:00"  # 15 working days from Mon 23 Nov + 2 waited (Wed → Wed)

    [message] = flow.fee_paid_messages(code)
    assert message.idempotency_key == f"{code}:fee_paid:{payment['reference']}"
    assert message.target == AGENCY
    assert message.payload == {"dossier_code": code, "agency_code": AGENCY, "reference": payment["reference"]}

    await flow.drain(lambda: flow.agency.effects["fee_paid"] >= 1)
    [told] = flow.agency.dossiers[code]["payments"]
    assert told["reference"] == payment["reference"]
    assert told["amount"] == FEE and type(told["amount"]) is int
    assert told["currency"] == "VND" and told["status"] == "paid" and told["transaction_no"]
    assert told["fees"] == [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": FEE}]
    assert flow.agency.effects["fee_paid"] == 1

    with flow.runtime.db.unit_of_work() as session:
        assert audit.verify(session) == []
        actions = [e.action for e in session.scalars(select(AuditEntry).where(AuditEntry.subject == code))]
    assert actions.count("payment.paid") == 1


async def test_payment_created_at_submission_when_fees_are_due_then(flow_paying_at_submission: Flow) -> None:
    flow = flow_paying_at_submission
    body = await flow.submit()
    assert body["payment"]["reference"] == f"{body['code']}-P1" and body["payment"]["status"] == "pending"
    # Asked again later: the pending payment still covers the fees, so it is the same one.
    await flow.event(body["code"], "received")
    await flow.event(body["code"], "fee_requested")
    assert (await flow.get(body["code"]))["payment"] == body["payment"]
    assert len(flow.rows(Payment)) == 1


async def test_the_intake_answer_with_its_payment_is_the_dossier_as_read(flow_paying_at_submission: Flow) -> None:
    body = await flow_paying_at_submission.submit()
    assert body["payment"] is not None and body["payment_status"] == "pending"
    assert await flow_paying_at_submission.get(body["code"]) == body


async def test_cancelled_payment_is_failed_and_a_new_one_is_made(flow: Flow) -> None:
    code, view = await flow.requested()
    outcome = await flow.pay(view["payment"]["url"], response_code="24")  # the payer cancelled
    assert outcome["ipn"][0]["answer"]["RspCode"] == "00"
    after = await flow.get(code)
    assert after["status"] == "fee_requested" and after["fees"][0]["paid"] is False
    assert after["payment"]["reference"] == f"{code}-P2" and after["payment"]["status"] == "pending"
    assert [p.status for p in flow.rows(Payment)] == ["failed", "pending"]
    assert flow.fee_paid_messages(code) == []


async def test_soap_agencies_are_not_called_and_bad_messages_are_permanent(
    flow: Flow, caplog: pytest.LogCaptureFixture
) -> None:
    code, view = await flow.requested()
    await flow.pay(view["payment"]["url"])
    [message] = flow.fee_paid_messages(code)
    soap = Registration.model_validate(
        {
            "code": AGENCY,
            "name": "Sở Xây dựng",
            "protocol": "soap",
            "wsdl": "https://motcua.example.vn/soap?wsdl",  # never fetched: there is nothing to call
            "procedures": [PROCEDURE, JOINT],
        }
    )
    with flow.runtime.db.unit_of_work() as session:
        register(session, soap, replace=True)
    caplog.set_level(logging.INFO, logger="gateway")
    dispatcher = Composition(flow.runtime)
    try:
        await dispatcher.dispatch(MessageView.of(message))
        assert dispatcher.counters[messages.AGENCY_FEE_PAID] == 1
        wrong = MessageView.of(message)
        with pytest.raises(PermanentError, match="no payment"):
            await dispatcher.dispatch(replace(wrong, payload={**wrong.payload, "reference": f"{code}-P9"}))
        with pytest.raises(PermanentError, match="names no dossier"):
            await dispatcher.dispatch(replace(wrong, payload={"dossier_code": code}))
    finally:
        await dispatcher.aclose()
    assert "agency not told of the payment: its contract has no such operation" in caplog.text
    assert flow.agency.effects["fee_paid"] == 0


# ----------------------------------------------------------------------------------------------------------------------
# Refused notifications


async def test_forged_signature_is_refused_changes_nothing_and_is_logged(
    flow: Flow, caplog: pytest.LogCaptureFixture
) -> None:
    code, view = await flow.requested()
    reference = view["payment"]["reference"]
    outcome = await flow.pay(view["payment"]["url"], notify=False)
    params = flow.platform.result_params(flow.platform.transactions[reference])
    forged = {**params, "vnp_SecureHash": sign(params, "not-the-merchant-secret")}
    tampered = {**params, "vnp_Amount": "100"}  # signed for 150000, claims 1
    caplog.set_level(logging.INFO)
    for bad in (forged, tampered, {k: v for k, v in params.items() if k != "vnp_SecureHash"}):
        assert await flow.notify(bad) == {"RspCode": "97", "Message": "Invalid signature"}
    after = await flow.get(code)
    assert after == view  # nothing changed
    assert [p.status for p in flow.rows(Payment)] == ["pending"]
    assert flow.fee_paid_messages(code) == []
    # The gateway's own log lines (the test's HTTP client logs the URLs it calls: not the gateway's doing).
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("gateway"))
    assert "bad signature" in logged
    for secret in (SECRET, params["vnp_SecureHash"], forged["vnp_SecureHash"], outcome["transaction_no"]):
        assert secret not in logged
    for personal in PERSONAL_STRINGS:
        assert personal not in logged


async def test_amount_mismatch_unknown_reference_and_other_merchant(flow: Flow) -> None:
    code, view = await flow.requested()
    outcome = await flow.pay(view["payment"]["url"], amount_vnd=100_000)  # notifies 100000 for a 150000 payment
    assert outcome["ipn"][0]["answer"] == {"RspCode": "04", "Message": "Invalid amount"}
    assert (await flow.get(code)) == view

    unknown = {
        "vnp_Amount": "15000000",
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TmnCode": MERCHANT,
        "vnp_TxnRef": "000.00.23.H38-261123-9999-P1",
        "vnp_TransactionNo": "1",
    }
    assert await flow.notify({**unknown, "vnp_SecureHash": sign(unknown, SECRET)}) == {
        "RspCode": "01",
        "Message": "Order not found",
    }
    other = {**unknown, "vnp_TmnCode": "OTHER", "vnp_TxnRef": view["payment"]["reference"]}
    assert (await flow.notify({**other, "vnp_SecureHash": sign(other, SECRET)}))["RspCode"] == "97"
    wrong_currency = {**unknown, "vnp_TxnRef": view["payment"]["reference"], "vnp_CurrCode": "USD"}
    signed = {**wrong_currency, "vnp_SecureHash": sign(wrong_currency, SECRET)}
    assert (await flow.notify(signed))["RspCode"] == "04"
    assert (await flow.get(code)) == view
    assert flow.fee_paid_messages(code) == []


async def test_notify_accepts_post_forms_and_refuses_repeated_parameters(flow: Flow) -> None:
    code, view = await flow.requested()
    reference = view["payment"]["reference"]
    await flow.pay(view["payment"]["url"], notify=False)
    params = flow.platform.result_params(flow.platform.transactions[reference])
    twice = httpx.QueryParams([*params.items(), ("vnp_Amount", "1")])
    response = await flow.client.get("/api/v1/payments/notify", params=twice)
    assert response.json()["RspCode"] == "99"
    response = await flow.client.post("/api/v1/payments/notify", data=params)
    assert response.json() == {"RspCode": "00", "Message": "Confirm Success"}
    response = await flow.client.post("/api/v1/payments/notify", json=params)
    assert response.json()["RspCode"] == "02"
    assert (await flow.get(code))["status"] == "processing"


async def test_notify_is_not_found_when_payment_is_off(gw: Any) -> None:
    response = await gw.client.get("/api/v1/payments/notify", params={"vnp_TxnRef": "X"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_without_payment_the_step_is_shown_once_as_skipped(gw: Any) -> None:
    body = await gw.submitted()
    code = body["code"]
    assert body["payment"] is None
    assert (await gw.event(code, "received")).status_code == 200
    assert (await gw.event(code, "fee_requested")).status_code == 200
    view = await gw.get(code)
    assert view["payment"] is None
    assert history_steps(view).count("payment_skipped") == 1
    skipped = next(h for h in view["history"] if h.get("step") == "payment_skipped")
    assert "[payment] base_url" in skipped["note"]


# ----------------------------------------------------------------------------------------------------------------------
# The notification that never arrives; reconciliation


async def test_query_job_marks_a_payment_paid_when_the_notification_is_lost(flow: Flow) -> None:
    code, view = await flow.requested()
    reference = view["payment"]["reference"]
    lost = await flow.pay(view["payment"]["url"], notify=False)
    assert lost["ipn"] == "lost" and lost["status"] == "paid"
    async with payment_queries(flow.runtime) as (jobs, query):
        [job] = jobs
        assert job.name == "payment-query" and job.interval_seconds == 60
        # Too young to be asked about (query_after_minutes = 10): nothing is asked.
        assert await query(now=flow.clock.advance(minutes=5)) == {}
        assert flow.platform.counters["queries"] == 0
        assert await query(now=flow.clock.advance(minutes=10)) == {"paid": 1}
        # Applied once: the payment is no longer pending, the next run asks nothing.
        assert await query(now=flow.clock.advance(minutes=10)) == {}
    assert flow.platform.counters["queries"] == 1
    after = await flow.get(code)
    assert after["status"] == "processing" and after["fees"][0]["paid"] is True
    assert after["payment"] == {**view["payment"], "status": "paid"}
    assert history_steps(after).count("fee_paid") == 1
    assert len(flow.fee_paid_messages(code)) == 1
    # The notification arriving late after all is a duplicate.
    params = flow.platform.result_params(flow.platform.transactions[reference])
    assert (await flow.notify(params))["RspCode"] == "02"
    assert history_steps(await flow.get(code)).count("fee_paid") == 1


async def test_query_job_leaves_unpaid_payments_pending(flow: Flow) -> None:
    code, _ = await flow.requested()
    async with payment_queries(flow.runtime) as (_, query):
        # The payer never opened the URL: the platform does not know the reference yet.
        assert await query(now=flow.clock.advance(minutes=15)) == {"pending": 1}
        # Asked again only after query_interval_seconds.
        assert await query(now=flow.clock.advance(seconds=30)) == {}
    assert (await flow.get(code))["payment"]["status"] == "pending"


def write_config(flow: Flow, tmp_path: Path) -> Path:
    url = flow.runtime.settings.database.url
    section = payment_section(flow.platform_url)
    lines = ["[database]", f'url = "{url}"', "[payment]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in section.items()]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_reconcile_reports_a_lost_notification_and_exits_1(
    flow: Flow, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, view1 = await flow.requested()
    await flow.pay(view1["payment"]["url"])  # notified: paid on both sides
    _, view2 = await flow.requested()
    await flow.pay(view2["payment"]["url"], notify=False)  # paid at the provider, still pending here
    config = write_config(flow, tmp_path)
    day = next(iter(flow.platform.transactions.values())).pay_date[:8]
    async with httpx.AsyncClient(base_url=flow.platform_url, trust_env=False, timeout=20) as admin:
        settlement = (await admin.get("/_sim/settlement", params={"date": day})).text
    csv_file = tmp_path / "settlement.csv"
    csv_file.write_text(settlement, encoding="utf-8")

    capsys.readouterr()
    code = await asyncio.to_thread(main, ["payment", "reconcile", str(csv_file), "--json", "--config", str(config)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    assert report["matched"] == 1
    assert report["status_mismatches"] == [
        {"reference": view2["payment"]["reference"], "local": "pending", "provider": "paid"}
    ]
    assert report["missing_locally"] == report["missing_at_provider"] == report["amount_mismatches"] == []

    # Downloaded for --date, in words: the same finding.
    iso_day = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    code = await asyncio.to_thread(main, ["payment", "reconcile", "--date", iso_day, "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"status differs: {view2['payment']['reference']}: gateway pending, provider paid" in out

    # Once the query job caught up, everything matches.
    async with payment_queries(flow.runtime) as (_, query):
        await query(now=flow.clock.advance(minutes=30))
    code = await asyncio.to_thread(main, ["payment", "reconcile", str(csv_file), "--json", "--config", str(config)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True and report["matched"] == 2


async def test_reconcile_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/g.db"\n', encoding="utf-8")
    assert main(["payment", "reconcile", "--config", str(config)]) == 2
    assert "give the settlement FILE" in capsys.readouterr().err
    assert main(["payment", "reconcile", "--date", "2026-11-23", "--config", str(config)]) == 2
    assert "settlement_url" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["payment", "reconcile", str(bad), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing columns" in err


def test_bad_payment_configuration_is_refused_at_startup(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    payment = {"base_url": "http://127.0.0.1:1", "merchant_code": "X", "return_url": RETURN_URL}
    with (
        pytest.raises(ConfigError, match=r"\[payment\] secret: is required"),
        open_runtime("sqlite", tmp_path, payment=payment) as runtime,
    ):
        create_app(runtime)
