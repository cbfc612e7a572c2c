"""The payment flow and the settlement use cases over an in-memory payment provider (no sockets): payments created
when fees fall due, the skipped step when payment is off, a notification settling a ``fee_requested`` dossier (the
change raised for the other flows), failures renewing the payment, the query job, and the agency's notice."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.errors import PermanentError
from adapters.payment import IpnCode, Notification
from adapters.payment.vnpay import format_time
from gateway import audit, messages
from gateway.bootstrap.upstreams import build_signer
from gateway.domain.events import ChangeRecorded
from gateway.domain.status import Status
from gateway.flows.payment.agency_notice import fee_paid_notice
from gateway.flows.payment.jobs import periodic_jobs, query_pending
from gateway.flows.payment.reactions import STEP_SKIPPED, subscriptions
from gateway.flows.payment.settings import PaymentSettings
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.services.changes import find_dossier
from gateway.services.context import Context
from gateway.services.payments import online_payment
from gateway.services.reconciliation import local_payments
from gateway.services.settlement import settle_notification
from gateway.store.database import Database
from gateway.store.models import AuditEntry, Dossier, OutboxMessage, Payment
from gateway.unit_of_work import UnitOfWork, in_unit
from tests.fakes import (
    AGENCY,
    PROCEDURE,
    EventLog,
    FakePaymentProvider,
    add_dossier,
    context_for,
    move,
    open_store,
    submit,
)

#: Monday 23 November 2026, 09:00 in Hà Nội.
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
FEE = 150_000


def payment_settings(**changes: Any) -> PaymentSettings:
    section = {
        "base_url": "https://pay.example.vn",
        "merchant_code": "DVCH38",
        "secret": "MERCHANT-SECRET",
        "return_url": "https://dichvucong.example.vn/thanh-toan/ket-qua",
        "at_submission": False,
        "query_after_minutes": 10,
        "query_interval_seconds": 60,
        **changes,
    }
    return PaymentSettings.model_validate(section)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_store(tmp_path)
    yield database
    database.dispose()


def rows(db: Database, model: Any, **where: Any) -> list[Any]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(model).filter_by(**where).order_by(model.id)))


def dossier(db: Database, code: str) -> Dossier:
    with db.unit_of_work() as session:
        found = find_dossier(session, code)
        _ = found.history, found.fees
        return found


async def fee_requested(ctx: Context, *, number: int = 1) -> str:
    """A dossier received, processing, then asked for its fees."""

    def work(uow: UnitOfWork) -> str:
        return add_dossier(uow.session, number=number, at=NOW, statuses=("submitted", "received", "processing")).code

    code = await in_unit(ctx.db, ctx.bus, work)
    await move(ctx, code, Status.FEE_REQUESTED, NOW + timedelta(minutes=1))
    return code


def paid(reference: str, amount: int = FEE, *, success: bool = True) -> Notification:
    code = "00" if success else "24"
    return Notification(
        reference=reference,
        amount_vnd=amount,
        success=success,
        response_code=code,
        transaction_status="00" if success else "02",
        transaction_no="14123456",
        paid_at=NOW + timedelta(days=2),
    )


# ----------------------------------------------------------------------------------------------------------------------
# Payments created when fees fall due


async def test_payment_created_when_the_agency_asks_for_the_fees(db: Database) -> None:
    provider = FakePaymentProvider()
    settings = payment_settings()
    ctx = context_for(db, subscriptions(settings, provider.sign))
    code = await submit(ctx, at=NOW)
    assert rows(db, Payment) == []  # at_submission = false: nothing is due at intake
    await move(ctx, code, Status.RECEIVED, NOW)
    await move(ctx, code, Status.FEE_REQUESTED, NOW + timedelta(minutes=5))
    [payment] = rows(db, Payment)
    assert payment.reference == f"{code}-P1" and payment.amount == FEE and type(payment.amount) is int
    assert (payment.status, payment.currency, payment.provider, payment.fee_codes) == (
        "pending",
        "VND",
        "vnpay",
        ["LP1"],
    )
    assert payment.url.startswith(provider.payment_url) and provider.signed == [payment.reference]
    created = NOW + timedelta(minutes=5)
    assert payment.details == {
        "create_date": format_time(created),
        "expires_at": (created + timedelta(minutes=1440)).isoformat(),
    }
    # Asked again while the payment is valid: the same payment.
    await move(ctx, code, Status.PROCESSING, NOW + timedelta(minutes=6))
    await move(ctx, code, Status.FEE_REQUESTED, NOW + timedelta(minutes=7))
    assert len(rows(db, Payment)) == 1


async def test_payment_created_at_intake_with_the_providers_signing(db: Database) -> None:
    settings = payment_settings(at_submission=True)
    ctx = context_for(
        db, subscriptions(settings, build_signer(settings))
    )  # the configured provider's own (local) signing
    code = await submit(ctx, at=NOW)
    [payment] = rows(db, Payment)
    assert payment.reference == f"{code}-P1"
    assert payment.url.startswith(f"{settings.payment_url}?") and "vnp_Amount=15000000&" in payment.url
    assert "vnp_SecureHash=" in payment.url and "MERCHANT-SECRET" not in payment.url


async def test_a_bad_secret_leaves_the_change_recorded_without_a_payment(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DVC_TEST_NO_SUCH_SECRET", raising=False)
    settings = payment_settings(at_submission=True, secret="env:DVC_TEST_NO_SUCH_SECRET")
    ctx = context_for(db, subscriptions(settings, build_signer(settings)))
    code = await submit(ctx, at=NOW)
    assert rows(db, Payment) == [] and dossier(db, code).status == "submitted"
    assert "payment not created" in caplog.text


async def test_without_payment_the_step_is_shown_once_as_skipped(db: Database) -> None:
    ctx = context_for(db, subscriptions(None, None))
    code = await submit(ctx, at=NOW)
    await move(ctx, code, Status.RECEIVED, NOW)
    await move(ctx, code, Status.FEE_REQUESTED, NOW + timedelta(minutes=1))
    history = dossier(db, code).history
    skipped = [entry for entry in history if (entry.details or {}).get("step") == STEP_SKIPPED]
    assert len(skipped) == 1 and skipped[0].status == "submitted" and skipped[0].actor == "payment"
    assert "[payment] base_url" in (skipped[0].note or "")
    assert rows(db, Payment) == []


# ----------------------------------------------------------------------------------------------------------------------
# Settlement


async def test_notification_settles_the_fees_resumes_the_dossier_and_raises_the_change(db: Database) -> None:
    provider = FakePaymentProvider()
    settings = payment_settings()
    events = EventLog()
    seen_before_agency: list[int] = []

    def agency_messages_so_far(event: ChangeRecorded, uow: UnitOfWork) -> None:
        statement = select(OutboxMessage).where(OutboxMessage.kind == messages.AGENCY_FEE_PAID)
        seen_before_agency.append(len(list(uow.session.scalars(statement))))

    watch = {ChangeRecorded: [agency_messages_so_far]}
    ctx = context_for(db, subscriptions(settings, provider.sign), events.subscriptions, watch)
    code = await fee_requested(ctx)
    waiting = dossier(db, code)
    [payment] = rows(db, Payment)
    events.events.clear()
    seen_before_agency.clear()

    later = NOW + timedelta(days=2)
    online = online_payment(settings, provider.sign)
    notice = paid(payment.reference)
    assert await settle_notification(ctx, notice, currency="VND", online=online, now=later) is IpnCode.OK
    assert await settle_notification(ctx, notice, currency="VND", online=online, now=later) is IpnCode.ALREADY_CONFIRMED

    after = dossier(db, code)
    assert after.status == "processing" and [fee.paid for fee in after.fees] == [True]
    assert after.due_at is not None and waiting.due_at is not None and after.due_at > waiting.due_at
    last = after.history[-1]
    assert (last.status, last.actor) == ("processing", "payment:vnpay")
    assert last.details == {"step": "fee_paid", "payment": payment.reference, "amount": FEE, "from": "fee_requested"}
    [event] = events.events  # the repeat raised nothing
    assert (event.status, event.previous, event.step, event.history_id) == (
        "processing",
        "fee_requested",
        "fee_paid",
        last.id,
    )
    assert seen_before_agency == [0]  # the change's followers enqueue before the agency's message
    [message] = rows(db, OutboxMessage, kind=messages.AGENCY_FEE_PAID)
    assert message.idempotency_key == f"{code}:fee_paid:{payment.reference}" and message.ordering_key == code
    assert message.payload == {"dossier_code": code, "agency_code": AGENCY, "reference": payment.reference}
    [settled] = rows(db, Payment)
    assert (settled.status, settled.provider_transaction, settled.paid_at) == ("paid", "14123456", notice.paid_at)
    with db.unit_of_work() as session:
        assert audit.verify(session) == []
    assert [e.action for e in rows(db, AuditEntry, subject=code)].count("payment.paid") == 1


async def test_refused_notifications_change_nothing(db: Database) -> None:
    provider = FakePaymentProvider()
    settings = payment_settings()
    ctx = context_for(db, subscriptions(settings, provider.sign))
    code = await fee_requested(ctx)
    [payment] = rows(db, Payment)
    online = online_payment(settings, provider.sign)
    answers = [
        await settle_notification(ctx, paid(payment.reference, 100_000), currency="VND", online=online, now=NOW),
        await settle_notification(ctx, paid(payment.reference), currency="USD", online=online, now=NOW),
        await settle_notification(ctx, paid(f"{code}-P9"), currency=None, online=online, now=NOW),
    ]
    assert answers == [IpnCode.AMOUNT_MISMATCH, IpnCode.AMOUNT_MISMATCH, IpnCode.UNKNOWN_REFERENCE]
    assert dossier(db, code).status == "fee_requested" and [p.status for p in rows(db, Payment)] == ["pending"]
    assert rows(db, OutboxMessage, kind=messages.AGENCY_FEE_PAID) == []


async def test_a_cancelled_payment_fails_and_the_next_one_is_made(db: Database) -> None:
    provider = FakePaymentProvider()
    settings = payment_settings()
    ctx = context_for(db, subscriptions(settings, provider.sign))
    code = await fee_requested(ctx)
    [payment] = rows(db, Payment)
    online = online_payment(settings, provider.sign)
    cancelled = paid(payment.reference, success=False)
    assert await settle_notification(ctx, cancelled, currency="VND", online=online, now=NOW) is IpnCode.OK
    assert [(p.reference, p.status) for p in rows(db, Payment)] == [
        (f"{code}-P1", "failed"),
        (f"{code}-P2", "pending"),
    ]
    assert rows(db, Payment)[0].details["failure"] == "response code 24"
    assert dossier(db, code).status == "fee_requested"


# ----------------------------------------------------------------------------------------------------------------------
# The query job, reconciliation


async def test_query_job_settles_a_payment_whose_notification_was_lost(db: Database) -> None:
    provider = FakePaymentProvider()
    settings = payment_settings()
    events = EventLog()
    ctx = context_for(db, subscriptions(settings, provider.sign), events.subscriptions)
    code = await fee_requested(ctx)
    [payment] = rows(db, Payment)
    [job] = periodic_jobs(ctx, settings, provider, sign=provider.sign)
    assert (job.name, job.interval_seconds) == ("payment-query", 60)
    assert periodic_jobs(ctx, None, provider, sign=None) == []
    assert periodic_jobs(ctx, settings, None, sign=provider.sign) == []

    query = functools.partial(query_pending, ctx, settings, provider, sign=provider.sign)
    created = NOW + timedelta(minutes=1)
    assert await query(now=created + timedelta(minutes=5)) == {}  # too young to ask about
    assert provider.queries == []
    assert await query(now=created + timedelta(minutes=11)) == {"pending": 1}  # the payer has not paid yet
    provider.pay(payment.reference, FEE, paid_at=created + timedelta(minutes=20))
    assert await query(now=created + timedelta(minutes=11, seconds=30)) == {}  # asked once per interval
    events.events.clear()
    assert await query(now=created + timedelta(minutes=25)) == {"paid": 1}
    assert await query(now=created + timedelta(minutes=40)) == {}  # no longer pending: nothing asked
    assert provider.queries == [(payment.reference, format_time(created))] * 2

    after = dossier(db, code)
    assert after.status == "processing" and after.fees[0].paid
    assert [event.step for event in events.events] == ["fee_paid"]
    [settled] = rows(db, Payment)
    assert settled.details["confirmed_by"] == "query"
    assert len(rows(db, OutboxMessage, kind=messages.AGENCY_FEE_PAID)) == 1
    day = created + timedelta(minutes=20)
    with db.unit_of_work() as session:
        [local] = local_payments(session, [], [day])
    assert (local.reference, local.amount_vnd, local.state.value) == (payment.reference, FEE, "paid")


async def test_an_expired_payment_is_failed_and_renewed(db: Database) -> None:
    provider = FakePaymentProvider(expire_minutes=30)
    settings = payment_settings()
    ctx = context_for(db, subscriptions(settings, provider.sign))
    code = await fee_requested(ctx)
    later = NOW + timedelta(hours=2)
    assert await query_pending(ctx, settings, provider, later, sign=provider.sign) == {"failed": 1}
    assert [(p.status, (p.details or {}).get("failure")) for p in rows(db, Payment)] == [
        ("failed", "expired"),
        ("pending", None),
    ]
    assert rows(db, Payment)[1].reference == f"{code}-P2"


# ----------------------------------------------------------------------------------------------------------------------
# The agency's notice


async def test_fee_paid_notice_names_the_payment_and_its_fees(db: Database) -> None:
    provider = FakePaymentProvider()
    settings = payment_settings()
    ctx = context_for(db, subscriptions(settings, provider.sign))
    code = await fee_requested(ctx)
    [payment] = rows(db, Payment)
    online = online_payment(settings, provider.sign)
    await settle_notification(ctx, paid(payment.reference), currency="VND", online=online, now=NOW)
    document = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": "rest",
        "endpoint": "http://127.0.0.1:9/api",
        "procedures": [PROCEDURE],
        "auth": {"type": "none"},
        "status_updates": {"mode": "callback"},
    }
    with db.unit_of_work() as session:
        reg = validate_registration(
            document, settings=RegistrySettings(allow_private_endpoints=True), known_procedures={PROCEDURE}
        )
        register(session, reg)
    with db.unit_of_work() as session:
        notice = fee_paid_notice(session, code, AGENCY, payment.reference)
        with pytest.raises(PermanentError, match="no payment"):
            fee_paid_notice(session, code, AGENCY, f"{code}-P9")
        with pytest.raises(PermanentError, match="not registered"):
            fee_paid_notice(session, code, "000.00.99.H38", payment.reference)
    assert notice.protocol == "rest" and notice.document["endpoint"] == "http://127.0.0.1:9/api"
    assert notice.body == {
        "reference": payment.reference,
        "provider": "vnpay",
        "amount": FEE,
        "currency": "VND",
        "status": "paid",
        "paid_at": "2026-11-25T09:00:00+07:00",
        "transaction_no": "14123456",
        "fees": [{"code": "LP1", "name": "Lệ phí LP1", "amount": FEE}],
    }
