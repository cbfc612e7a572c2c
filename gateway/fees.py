"""Fee payment (phí, lệ phí) through the payment platform (DESIGN.md §4, §6; issue 6).

The flow:

1. **A payment is created** for a dossier's unpaid fees (those with a non-zero amount) when they fall due: at intake
   when ``[payment] at_submission`` is true (the default: DESIGN.md §4.1, "a payment request if a fee is due"), and
   when an agency moves the dossier to ``fee_requested``. With the VNPay-style provider creating a payment is local
   (a signed URL, no network), so the :class:`~gateway.store.models.Payment` row (a unique reference
   ``<dossier code>-P<n>``, the integer VND amount, the fee codes, the payer's URL) is written in the transaction of
   the change itself. A pending payment that still covers exactly the unpaid fees and has not expired is reused.
   The dossier response's ``payment`` is ``{"reference", "url", "amount", "status"}`` (:func:`payment_view`).
2. **The provider notifies** ``GET|POST /api/v1/payments/notify`` (:mod:`gateway.api.routes_payments`):
   :func:`record_notification` checks reference, amount and currency against the payment; a success marks the
   payment and its fees paid, records the history step ``fee_paid`` (resuming a ``fee_requested`` dossier to the
   status it had before: the wait stops the clock and the deadlines are recomputed), tells the agency
   (``agency.fee_paid`` through the outbox), fans the change out (national portal sync...) and writes an audit
   entry. Repeats answer ``02`` and change nothing. A failed payment (cancelled, refused) is marked ``failed`` and a
   new payment is created while the dossier still awaits its fees.
3. **Notifications that never arrive**: the periodic job :func:`query_pending` asks the provider (``querydr``) about
   pending payments older than ``query_after_minutes``, every ``query_interval_seconds``; a paid answer is applied
   exactly as a notification would be (idempotent), a failed one or one past its expiry marks the payment failed
   (and renews it while the dossier awaits its fees).
4. **The agency is told** by :class:`Handler` (``agency.fee_paid``): ``POST {endpoint}/dossiers/{code}/payments``
   for REST agencies; the reference SOAP contract has no such operation, so for SOAP agencies it is logged and done.
5. **Daily reconciliation** of the provider's settlement file: :func:`local_payments` gives the gateway's side of
   it (``dvc-gateway payment reconcile``, :mod:`gateway.commands.payment`).

Without ``[payment] base_url`` the integration is off: when fees fall due (intake, ``fee_requested``) the step is
recorded once in the history as skipped (``payment_skipped``; the applicant pays at the agency's counter).

Configuration (``[payment]``; secrets as ``env:NAME`` / ``file:PATH``, resolved when needed, never logged):
``base_url`` (the provider's API host), ``merchant_code``, ``secret``, ``return_url`` (where the payer's browser
comes back: the provincial portal's page), ``payment_url`` (default ``{base_url}/paymentv2/vpcpay.html``),
``query_path`` (default ``/merchant_webapi/api/transaction``), ``timeout_seconds`` (10), ``query_interval_seconds``
(300), ``query_after_minutes`` (15), ``expire_minutes`` (1440: how long the payer's URL is valid),
``at_submission`` (true), ``server_ip`` (``vnp_IpAddr``, default ``127.0.0.1``), ``settlement_url`` (optional: where
``payment reconcile --date`` downloads the settlement file, ``{date}`` standing for ``yyyyMMdd``).

The settings reach the state-change hook :func:`on_change` with the fan-out (:class:`gateway.fanout.Fanout`
carries the process's configuration).

Money is ``int`` VND everywhere, never a float.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from adapters.errors import PermanentError, UpstreamError
from adapters.http import ClientFactory, ClientSettings
from adapters.netguard import AddressPolicy
from adapters.payment import (
    IpnCode,
    LocalPayment,
    Notification,
    PaymentState,
    PaymentStatus,
    VNPayProvider,
    decide_ipn,
)
from adapters.payment.vnpay import VNPAY_TIME, format_time

from . import audit, messages, outbox
from .config import Config, ConfigError, resolve_secret
from .domain.status import TERMINAL_STATUSES, Status, check_transition, resume_status
from .periodic import PeriodicJob
from .store.models import Dossier, Fee, HistoryEntry, Payment, utcnow

if TYPE_CHECKING:
    from .dispatch import GatewayDispatcher
    from .domain.calendar import OfficeCalendar
    from .fanout import Fanout
    from .runtime import Runtime
    from .workers import MessageView

__all__ = [
    "PROVIDER",
    "STEP_PAID",
    "STEP_SKIPPED",
    "Handler",
    "PaymentSettings",
    "local_payments",
    "on_change",
    "payment_view",
    "periodic_jobs",
    "provider_for",
    "query_pending",
    "record_notification",
    "record_query",
    "settings_of",
]

log = logging.getLogger("gateway.fees")

PROVIDER = "vnpay"
UPSTREAM = "payment"
#: History steps (``details["step"]``).
STEP_PAID = "fee_paid"
STEP_SKIPPED = "payment_skipped"
#: Payment statuses (``Payment.status``).
PENDING, PAID, FAILED = "pending", "paid", "failed"
_STATES = {PENDING: PaymentState.PENDING, PAID: PaymentState.PAID, FAILED: PaymentState.FAILED}

DEFAULT_PAYMENT_PATH = "/paymentv2/vpcpay.html"
DEFAULT_QUERY_PATH = "/merchant_webapi/api/transaction"
#: How many pending payments one run of the query job looks at.
QUERY_BATCH = 100


# --------------------------------------------------------------------------------------------------------------------
# Settings


def _text(section: Mapping[str, Any], key: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = section.get(key, default)
    if value is None or value == "":
        if required:
            raise ConfigError(f"[payment] {key} is required when [payment] base_url is set")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[payment] {key} must be a string")
    return value


def _number(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"[payment] {key} must be a positive number")
    return float(value)


def _whole(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"[payment] {key} must be a positive whole number")
    return value


def _url(value: str, key: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ConfigError(f"[payment] {key} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"[payment] {key} must be an absolute http:// or https:// URL")
    return value


@dataclass(frozen=True)
class PaymentSettings:
    """The ``[payment]`` section, checked (see the module notes for each key)."""

    base_url: str
    merchant_code: str
    secret: str  # a reference (env:NAME, file:PATH) or the literal; resolved when needed
    payment_url: str
    return_url: str
    query_path: str = DEFAULT_QUERY_PATH
    timeout_seconds: float = 10.0
    query_interval_seconds: float = 300.0
    query_after_minutes: int = 15
    expire_minutes: int = 1440
    at_submission: bool = True
    server_ip: str = "127.0.0.1"
    settlement_url: str | None = None

    def __repr__(self) -> str:  # the secret reference is not shown either
        return f"PaymentSettings(base_url={self.base_url!r}, merchant_code={self.merchant_code!r}, secret=***)"

    @classmethod
    def from_config(cls, config: Config) -> PaymentSettings | None:
        """The settings, or ``None`` when the integration is off (no ``base_url``); :class:`ConfigError` if bad."""
        section = config.section("payment")
        base_url = _text(section, "base_url")
        if base_url is None:
            return None
        _url(base_url, "base_url")
        provider = section.get("provider", PROVIDER)
        if provider != PROVIDER:
            raise ConfigError(f"[payment] provider {provider!r} is not supported (supported: {PROVIDER})")
        at_submission = section.get("at_submission", True)
        if not isinstance(at_submission, bool):
            raise ConfigError("[payment] at_submission must be true or false")
        payment_url = _text(section, "payment_url") or base_url.rstrip("/") + DEFAULT_PAYMENT_PATH
        return_url = _text(section, "return_url", required=True)
        settlement_url = _text(section, "settlement_url")
        query_path = _text(section, "query_path", default=DEFAULT_QUERY_PATH) or DEFAULT_QUERY_PATH
        if not query_path.startswith("/"):
            raise ConfigError("[payment] query_path must start with '/'")
        return cls(
            base_url=base_url,
            merchant_code=_text(section, "merchant_code", required=True) or "",
            secret=_text(section, "secret", required=True) or "",
            payment_url=_url(payment_url, "payment_url"),
            return_url=_url(return_url or "", "return_url"),
            query_path=query_path,
            timeout_seconds=_number(section, "timeout_seconds", 10.0),
            query_interval_seconds=_number(section, "query_interval_seconds", 300.0),
            query_after_minutes=_whole(section, "query_after_minutes", 15),
            expire_minutes=_whole(section, "expire_minutes", 1440),
            at_submission=at_submission,
            server_ip=_text(section, "server_ip", default="127.0.0.1") or "127.0.0.1",
            settlement_url=_url(settlement_url, "settlement_url") if settlement_url else None,
        )

    def resolve_secret(self) -> str:
        """The merchant's secret, now (:class:`ConfigError` when the reference cannot be resolved)."""
        value = resolve_secret(self.secret, key="[payment] secret")
        if not value:
            raise ConfigError("[payment] secret is empty")
        return value

    def client_settings(self) -> ClientSettings:
        """How to reach the provider's API (the operator's own configuration: private addresses allowed)."""
        return ClientSettings(
            base_url=self.base_url,
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=min(5.0, self.timeout_seconds),
            total_timeout_seconds=max(self.timeout_seconds, 1.0) * 2,
            address_policy=AddressPolicy(allow_private=True),
        )


def provider_for(
    settings: PaymentSettings, *, client: httpx.AsyncClient | None = None, now: datetime | None = None
) -> VNPayProvider:
    """The provider the settings describe (``client``: for queries; ``now``: the creation time of payments)."""
    options: dict[str, Any] = {}
    if now is not None:
        options["clock"] = lambda: now
    try:
        return VNPayProvider(
            client,
            merchant_code=settings.merchant_code,
            secret=settings.resolve_secret,
            payment_url=settings.payment_url,
            query_path=settings.query_path,
            expire_minutes=settings.expire_minutes,
            server_ip=settings.server_ip,
            upstream=UPSTREAM,
            **options,
        )
    except ValueError as exc:
        raise ConfigError(f"[payment] {exc}") from None


def settings_of(runtime: Runtime) -> PaymentSettings | None:
    """``runtime``'s ``[payment]`` settings (none when payment is off); :class:`ConfigError` for a bad section."""
    return PaymentSettings.from_config(runtime.config)


# --------------------------------------------------------------------------------------------------------------------
# Reading


def _unpaid(dossier: Dossier) -> list[Fee]:
    return [fee for fee in dossier.fees if not fee.paid and fee.amount > 0]


def _payments(session: Session, dossier: Dossier) -> list[Payment]:
    return list(session.scalars(select(Payment).where(Payment.dossier_id == dossier.id).order_by(Payment.id)))


def payment_view(session: Session, dossier: Dossier) -> dict[str, Any] | None:
    """The dossier response's ``payment``: its latest payment (``reference``, ``url``, ``amount``, ``status``)."""
    if dossier.id is None:
        return None
    latest = session.scalars(
        select(Payment).where(Payment.dossier_id == dossier.id).order_by(Payment.id.desc()).limit(1)
    ).first()
    if latest is None:
        return None
    return {"reference": latest.reference, "url": latest.url, "amount": latest.amount, "status": latest.status}


def _iso(value: datetime | None) -> str | None:
    from .dossiers import iso

    return iso(value)


# --------------------------------------------------------------------------------------------------------------------
# Creating payments


def _expired(payment: Payment, now: datetime) -> bool:
    expires = (payment.details or {}).get("expires_at")
    if not isinstance(expires, str):
        return False
    try:
        return datetime.fromisoformat(expires) <= now
    except ValueError:
        return False


def _awaits_fees(dossier: Dossier, settings: PaymentSettings) -> bool:
    """Whether the dossier still expects the applicant to pay online."""
    status = Status(dossier.status)
    if status in TERMINAL_STATUSES or not _unpaid(dossier):
        return False
    return status is Status.FEE_REQUESTED or settings.at_submission


def _create(session: Session, dossier: Dossier, settings: PaymentSettings, now: datetime) -> Payment:
    """A new pending payment of ``dossier``'s unpaid fees (the signed URL built locally)."""
    fees = _unpaid(dossier)
    amount = sum(fee.amount for fee in fees)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("fee amounts must be int VND")
    number = 1 + len(_payments(session, dossier))
    reference = f"{dossier.code}-P{number}"
    request = provider_for(settings, now=now).build_payment(
        reference,
        amount,
        f"Thanh toan phi, le phi ho so {dossier.code}",
        settings.return_url,
        settings.server_ip,
    )
    created = request.created_at or now
    payment = Payment(
        dossier_id=dossier.id,
        provider=PROVIDER,
        reference=request.reference,
        amount=amount,
        currency="VND",
        fee_codes=[fee.code for fee in fees],
        status=PENDING,
        url=request.url,
        created_at=now,
        details={
            "create_date": format_time(created),
            "expires_at": request.expires_at.astimezone(UTC).isoformat() if request.expires_at else None,
        },
    )
    session.add(payment)
    session.flush()
    log.info("payment created", extra={"dossier_code": dossier.code, "reference": reference, "amount": amount})
    return payment


def _ensure_payment(session: Session, dossier: Dossier, settings: PaymentSettings, now: datetime) -> Payment | None:
    """The pending payment of the unpaid fees: an existing one still valid, or a new one."""
    fees = _unpaid(dossier)
    if not fees:
        return None
    codes = sorted(fee.code for fee in fees)
    amount = sum(fee.amount for fee in fees)
    for payment in reversed(_payments(session, dossier)):
        if (
            payment.status == PENDING
            and sorted(payment.fee_codes) == codes
            and payment.amount == amount
            and not _expired(payment, now)
        ):
            return payment
    return _create(session, dossier, settings, now)


def _record_skipped(dossier: Dossier, entry: HistoryEntry) -> None:
    if any((h.details or {}).get("step") == STEP_SKIPPED for h in dossier.history):
        return
    dossier.history.append(
        HistoryEntry(
            status=dossier.status,
            at=entry.at,
            actor="payment",
            note="Online fee payment skipped: the payment integration is off ([payment] base_url)",
            details={"step": STEP_SKIPPED},
        )
    )


def on_change(
    session: Session,
    dossier: Dossier,
    entry: HistoryEntry,
    *,
    enabled: bool,
    previous: str | None,
    now: datetime,
    config: Config | None = None,
) -> None:
    """Create the payment when fees fall due (intake, ``fee_requested``); record the skip when payment is off."""
    requested = entry.status == Status.FEE_REQUESTED and previous != Status.FEE_REQUESTED
    at_intake = previous is None
    if not (requested or at_intake) or not _unpaid(dossier):
        return
    if not enabled:
        _record_skipped(dossier, entry)
        session.flush()
        return
    try:
        settings = PaymentSettings.from_config(config) if config is not None else None
    except ConfigError as exc:
        log.error("payment not created: %s", exc, extra={"dossier_code": dossier.code})
        return
    if settings is None:
        log.error("payment not created: no [payment] settings given", extra={"dossier_code": dossier.code})
        return
    if at_intake and not settings.at_submission:
        return
    try:
        _ensure_payment(session, dossier, settings, now)
    except (ConfigError, ValueError) as exc:
        # The dossier's change must not fail for the payment's sake; the operator fixes the configuration.
        log.error("payment not created: %s", exc, extra={"dossier_code": dossier.code})


# --------------------------------------------------------------------------------------------------------------------
# Notifications and query results


def _lock_dossier(session: Session, dossier_id: int) -> Dossier:
    statement = select(Dossier).where(Dossier.id == dossier_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).one()


def _find_payment(session: Session, reference: str) -> Payment | None:
    """The payment ``reference`` with its dossier locked, then itself (locks in the order dossier, payment)."""
    found = session.scalars(select(Payment).where(Payment.reference == reference)).one_or_none()
    if found is None:
        return None
    _lock_dossier(session, found.dossier_id)
    statement = select(Payment).where(Payment.id == found.id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.scalars(statement.execution_options(populate_existing=True)).one()


def _local(payment: Payment) -> LocalPayment:
    return LocalPayment(payment.reference, payment.amount, _STATES.get(payment.status, PaymentState.PENDING))


def _settle(
    session: Session,
    payment: Payment,
    *,
    paid_at: datetime | None,
    transaction_no: str | None,
    source: str,
    calendar: OfficeCalendar,
    fanout: Fanout,
    now: datetime,
) -> None:
    """Mark ``payment`` and its fees paid; history step, resumption, the agency told, fan-out, audit."""
    from .dossiers import _record, _status_before_wait

    dossier = session.get(Dossier, payment.dossier_id)  # locked by _find_payment
    assert dossier is not None
    # The provider's time of payment is kept on the payment and the fees (reconciliation goes by it); the history
    # records when the gateway learnt of it, in its own clock, as for every other change.
    when = paid_at or now
    payment.status = PAID
    payment.paid_at = when
    payment.provider_transaction = transaction_no
    payment.details = {**(payment.details or {}), "confirmed_by": source}
    codes = set(payment.fee_codes or [])
    settled = []
    for fee in dossier.fees:
        if fee.code in codes and not fee.paid:
            fee.paid = True
            fee.paid_at = when
            settled.append(fee.code)
    if not settled:
        log.warning(
            "payment received for fees already paid: refund to be arranged",
            extra={"dossier_code": dossier.code, "reference": payment.reference},
        )
    source_status = Status(dossier.status)
    target = source_status
    details: dict[str, Any] = {"step": STEP_PAID, "payment": payment.reference, "amount": payment.amount}
    if source_status is Status.FEE_REQUESTED and not _unpaid(dossier):
        target = resume_status(_status_before_wait(dossier))
        check_transition(source_status, target)
        details["from"] = source_status.value
    note = f"Fees paid online: {payment.amount} VND (reference {payment.reference})"
    entry = _record(
        session,
        dossier,
        status=target,
        at=now,
        actor=f"payment:{payment.provider}",
        note=note,
        details=details,
        calendar=calendar,
        now=now,
        fanout=fanout,
    )
    outbox.enqueue(
        session,
        kind=messages.AGENCY_FEE_PAID,
        target=dossier.agency_code,
        payload={"dossier_code": dossier.code, "agency_code": dossier.agency_code, "reference": payment.reference},
        idempotency_key=outbox.message_key(dossier.code, f"fee_paid:{payment.reference}"),
        ordering_key=dossier.code,
    )
    audit.append(
        session,
        f"payment:{payment.provider}",
        "payment.paid",
        dossier.code,
        {
            "reference": payment.reference,
            "amount": payment.amount,
            "fees": settled,
            "source": source,
            "to": target.value,
            "history_id": entry.id,
        },
        at=now,
    )
    log.info(
        "fees paid",
        extra={"dossier_code": dossier.code, "reference": payment.reference, "source": source, "status": target.value},
    )


def _fail(
    session: Session,
    payment: Payment,
    *,
    reason: str,
    settings: PaymentSettings | None,
    now: datetime,
) -> None:
    """Mark ``payment`` failed and, while its dossier still awaits the fees, create the next one."""
    payment.status = FAILED
    payment.details = {**(payment.details or {}), "failure": reason}
    dossier = session.get(Dossier, payment.dossier_id)  # locked by _find_payment
    assert dossier is not None
    log.info("payment failed", extra={"dossier_code": dossier.code, "reference": payment.reference, "reason": reason})
    if settings is not None and _awaits_fees(dossier, settings):
        try:
            _ensure_payment(session, dossier, settings, now)
        except (ConfigError, ValueError) as exc:
            log.error("payment not renewed: %s", exc, extra={"dossier_code": dossier.code})


def record_notification(
    session: Session,
    notification: Notification,
    *,
    currency: str | None,
    settings: PaymentSettings | None,
    calendar: OfficeCalendar,
    fanout: Fanout,
    now: datetime,
) -> IpnCode:
    """Apply a verified notification (one unit of work): the answer code (DESIGN.md §6).

    ``01`` unknown reference, ``02`` already confirmed (a repeat: nothing changes), ``04`` amount (or currency)
    mismatch (nothing changes), ``00`` recorded: paid (see the module notes) or failed.
    """
    audit.lock_for_write(session)
    payment = _find_payment(session, notification.reference)
    local = None if payment is None else _local(payment)
    code = decide_ipn(notification, local)
    if code is IpnCode.OK and currency not in (None, "") and currency != payment.currency:  # type: ignore[union-attr]
        code = IpnCode.AMOUNT_MISMATCH
    if code is not IpnCode.OK:
        return code
    assert payment is not None
    if notification.success:
        _settle(
            session,
            payment,
            paid_at=notification.paid_at,
            transaction_no=notification.transaction_no,
            source="notification",
            calendar=calendar,
            fanout=fanout,
            now=now,
        )
    else:
        _fail(session, payment, reason=f"response code {notification.response_code}", settings=settings, now=now)
    return code


def record_query(
    session: Session,
    reference: str,
    status: PaymentStatus,
    *,
    settings: PaymentSettings | None,
    calendar: OfficeCalendar,
    fanout: Fanout,
    now: datetime,
) -> str:
    """Apply a transaction query's answer to a pending payment (idempotent): what happened, in one word.

    ``paid`` as a notification would; ``failed`` for a refused or cancelled payment, or one past its expiry the
    provider does not hold as paid; ``pending`` otherwise; ``mismatch`` when the provider's amount differs
    (nothing changes, logged); ``settled`` when the payment was no longer pending.
    """
    audit.lock_for_write(session)
    payment = _find_payment(session, reference)
    if payment is None or payment.status != PENDING:
        return "settled"
    if status.state is PaymentState.PAID:
        if status.amount_vnd != payment.amount:
            log.warning(
                "payment query: amount differs from the provider's",
                extra={"reference": reference, "local": payment.amount, "provider": status.amount_vnd},
            )
            return "mismatch"
        _settle(
            session,
            payment,
            paid_at=status.paid_at,
            transaction_no=status.transaction_no,
            source="query",
            calendar=calendar,
            fanout=fanout,
            now=now,
        )
        return "paid"
    if status.state is PaymentState.FAILED:
        _fail(session, payment, reason=f"query: response code {status.transaction_status}", settings=settings, now=now)
        return "failed"
    grace = timedelta(minutes=settings.query_after_minutes if settings else 15)
    expires = (payment.details or {}).get("expires_at")
    if isinstance(expires, str) and datetime.fromisoformat(expires) + grace <= now:
        _fail(session, payment, reason="expired", settings=settings, now=now)
        return "failed"
    return "pending"


# --------------------------------------------------------------------------------------------------------------------
# The periodic transaction query


def _due_for_query(session: Session, now: datetime, settings: PaymentSettings) -> list[tuple[int, str, str | None]]:
    created_before = now - timedelta(minutes=settings.query_after_minutes)
    checked_before = now - timedelta(seconds=settings.query_interval_seconds)
    rows = session.execute(
        select(Payment.id, Payment.reference, Payment.details)
        .where(
            Payment.status == PENDING,
            Payment.created_at <= created_before,
            or_(Payment.last_checked_at.is_(None), Payment.last_checked_at <= checked_before),
        )
        .order_by(Payment.id)
        .limit(QUERY_BATCH)
    ).all()
    return [(row.id, row.reference, (row.details or {}).get("create_date")) for row in rows]


def _claim(session: Session, payment_id: int, now: datetime, settings: PaymentSettings) -> bool:
    """Take one payment's query for this run (compare-and-set on ``last_checked_at``: one process wins)."""
    checked_before = now - timedelta(seconds=settings.query_interval_seconds)
    result = session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == PENDING,
            or_(Payment.last_checked_at.is_(None), Payment.last_checked_at <= checked_before),
        )
        .values(last_checked_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def query_pending(
    runtime: Runtime, dispatcher: GatewayDispatcher, *, now: datetime | None = None
) -> dict[str, int]:
    """One run of the query job: ask the provider about pending payments with no news; outcomes counted."""
    from .fanout import Fanout

    settings = settings_of(runtime)
    counts: dict[str, int] = {}
    if settings is None:
        return counts
    now = now or utcnow()
    handler: Handler = dispatcher.flow(__name__)
    provider = handler.provider(settings)
    fanout = Fanout.from_runtime(runtime)
    due = await runtime.db.run(functools.partial(_due_for_query, now=now, settings=settings))
    for payment_id, reference, create_date in due:
        claimed = await runtime.db.run(functools.partial(_claim, payment_id=payment_id, now=now, settings=settings))
        if not claimed:
            continue
        try:
            status = await provider.query(reference, transaction_date=create_date)
        except UpstreamError as exc:
            log.warning("payment query failed", extra={"reference": reference, "error": f"{type(exc).__name__}: {exc}"})
            counts["error"] = counts.get("error", 0) + 1
            continue
        outcome = await runtime.db.run(
            functools.partial(
                record_query,
                reference=reference,
                status=status,
                settings=settings,
                calendar=runtime.calendar,
                fanout=fanout,
                now=now,
            )
        )
        counts[outcome] = counts.get(outcome, 0) + 1
    if due:
        log.info("payment queries done", extra={"counts": counts})
    return counts


def periodic_jobs(runtime: Runtime, dispatcher: GatewayDispatcher) -> list[PeriodicJob]:
    """The transaction query job, when payment is configured (``[payment] query_interval_seconds``)."""
    settings = settings_of(runtime)
    if settings is None:
        return []
    run = functools.partial(query_pending, runtime, dispatcher)
    return [PeriodicJob("payment-query", settings.query_interval_seconds, run)]


# --------------------------------------------------------------------------------------------------------------------
# Telling the agency (agency.fee_paid)


@dataclass(frozen=True)
class _FeePaidWork:
    protocol: str
    document: dict[str, Any]
    body: dict[str, Any]


def _fee_paid_work(code: str, agency_code: str, reference: str, session: Session) -> _FeePaidWork:
    from .registry import get_agency

    upstream = f"agency:{agency_code}"
    registration = get_agency(session, agency_code)
    if registration is None:
        raise PermanentError(f"agency {agency_code} is not registered", upstream=upstream)
    payment = session.scalars(select(Payment).where(Payment.reference == reference)).one_or_none()
    dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
    if payment is None or dossier is None or payment.dossier_id != dossier.id:
        raise PermanentError(f"no payment {reference} of dossier {code}", upstream=upstream)
    codes = set(payment.fee_codes or [])
    body = {
        "reference": payment.reference,
        "provider": payment.provider,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "paid_at": _iso(payment.paid_at),
        "transaction_no": payment.provider_transaction,
        "fees": [{"code": f.code, "name": f.name, "amount": f.amount} for f in dossier.fees if f.code in codes],
    }
    return _FeePaidWork(protocol=registration.protocol, document=registration.document(), body=body)


class Handler:
    """The ``agency.fee_paid`` messages of a dispatcher, and the provider client of the query job."""

    def __init__(self, dispatcher: GatewayDispatcher) -> None:
        self.dispatcher = dispatcher
        self.runtime = dispatcher.runtime
        self._client: httpx.AsyncClient | None = None
        self._provider: VNPayProvider | None = None

    def provider(self, settings: PaymentSettings) -> VNPayProvider:
        """The provider with its API client, built on first use through the dispatcher's factory (so recording,
        replay and the address policy apply) and closed with the dispatcher."""
        if self._provider is None:
            factory: ClientFactory = self.dispatcher.factory
            try:
                self._client = factory.client(UPSTREAM, settings.client_settings())
            except ValueError as exc:
                raise ConfigError(f"[payment] base_url: {exc}") from None
            self._provider = provider_for(settings, client=self._client)
        return self._provider

    async def handle(self, message: MessageView) -> None:
        payload = message.payload
        code, agency_code, reference = (payload.get(k) for k in ("dossier_code", "agency_code", "reference"))
        agency_code = agency_code or message.target
        if not all(isinstance(v, str) and v for v in (code, agency_code, reference)):
            raise PermanentError("the message names no dossier, agency or payment", upstream=message.target)
        work = await self.runtime.db.run(functools.partial(_fee_paid_work, code, agency_code, reference))
        if work.protocol == "soap":
            log.info(
                "agency not told of the payment: the reference SOAP contract has no such operation",
                extra={"dossier_code": code, "agency_code": agency_code, "reference": reference},
            )
            return
        client = self.dispatcher.agency_client(agency_code, work.document)
        try:
            await client.fee_paid(code, work.body, message.idempotency_key)  # type: ignore[union-attr]
        except ValueError as exc:
            raise PermanentError(f"cannot send: {exc}", upstream=f"agency:{agency_code}") from None
        log.info("agency told of the payment", extra={"dossier_code": code, "agency_code": agency_code})

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._provider = None
        if client is not None:
            await client.aclose()


# --------------------------------------------------------------------------------------------------------------------
# Reconciliation


def vietnam_day_bounds(day: datetime) -> tuple[datetime, datetime]:
    """The UTC bounds of the day (in Vietnam's time) ``day`` falls on."""
    local = day.astimezone(VNPAY_TIME).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC), (local + timedelta(days=1)).astimezone(UTC)


def local_payments(session: Session, references: Iterable[str], days: Iterable[datetime]) -> list[LocalPayment]:
    """The gateway's side of a settlement: the payments named in it, and those paid on ``days`` (Vietnam's time)."""
    wanted = set(references)
    found: dict[str, Payment] = {}
    names = sorted(wanted)
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for payment in session.scalars(select(Payment).where(Payment.reference.in_(chunk))):
            found[payment.reference] = payment
    for day in days:
        low, high = vietnam_day_bounds(day)
        statement = select(Payment).where(Payment.status == PAID, Payment.paid_at >= low, Payment.paid_at < high)
        for payment in session.scalars(statement):
            found[payment.reference] = payment
    return [_local(payment) for payment in sorted(found.values(), key=lambda p: p.id)]
