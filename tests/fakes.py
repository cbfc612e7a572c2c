"""In-memory fakes of the ports the flows depend on, for fast flow and use-case tests (no sockets, no simulators).

:class:`FakePaymentProvider` stands for :class:`adapters.payment.PaymentProvider` (its :meth:`sign` also serves as
the payment flow's local URL signing); :class:`FakePostalService` for :class:`adapters.postal.PostalService`;
:class:`FakeNationalPortal` for :class:`adapters.national_portal.NationalPortal`. Each records the calls it receives
and answers from what the test set up. :func:`open_store`, :func:`add_dossier` and :class:`EventLog` give such
tests a migrated database, dossiers in any status and the events the bus handed out.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from adapters.errors import TransientError
from adapters.national_portal import BatchResult, DossierRecord, ProgressRecord, RatingRecord, RecordFailure
from adapters.onestop.port import Acknowledgement, AgencyStatus, DeliveryReceipt
from adapters.payment import (
    InvalidSignature,
    LocalPayment,
    Notification,
    PaymentRequest,
    PaymentState,
    PaymentStatus,
    ReconciliationReport,
)
from adapters.postal import Order, TrackingEvent, TrackingStatus
from gateway.bus import EventHandler, MessageBus, merge_subscriptions
from gateway.catalogue import import_procedures, load_catalogue
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.events import ChangeRecorded, DomainEvent
from gateway.domain.status import Status
from gateway.services.changes import changed, find_dossier, record_change
from gateway.services.context import Context
from gateway.store.database import Database
from gateway.store.models import Dossier, Fee, HistoryEntry
from gateway.unit_of_work import UnitOfWork, in_unit
from signing import Verifier
from signing.trust import TrustStore

__all__ = [
    "EventLog",
    "FakeNationalPortal",
    "FakePaymentProvider",
    "FakePostalService",
    "add_dossier",
    "context_for",
    "move",
    "open_store",
    "submit",
]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "procedures.json"
#: The example catalogue's building permit: 15 working days, one fee ``LP1`` of 150 000 VND.
PROCEDURE = "1.009794"
AGENCY = "000.00.23.H38"
APPLICANT = {
    "kind": "citizen",
    "full_name": "Nguyễn Thị Hồng Nhung",
    "id_number": "001199054321",
    "phone": "0987654321",
    "address": "12 Phố Huế, phường Hàng Bài, quận Hoàn Kiếm, Hà Nội",
}


def open_store(directory: Path) -> Database:
    """A migrated SQLite database in ``directory`` with the example catalogue."""
    db = Database.connect(f"sqlite:///{directory / 'gateway.db'}")
    db.upgrade()
    with db.unit_of_work() as session:
        import_procedures(session, load_catalogue(EXAMPLES))
    return db


def context_for(db: Database, *subscriptions: Mapping[type[DomainEvent], Sequence[EventHandler]]) -> Context:
    """What the use cases need: ``db``, a bus with ``subscriptions``, the default calendar, an empty trust store."""
    bus = MessageBus(merge_subscriptions(*subscriptions))
    return Context(db=db, bus=bus, calendar=OfficeCalendar(), verifier=Verifier(TrustStore(anchors=[])))


def add_dossier(
    session: Session,
    *,
    number: int = 1,
    at: datetime,
    statuses: Sequence[str] = ("submitted",),
    fees: Sequence[tuple[str, int]] = (("LP1", 150_000),),
    return_method: str | None = "post",
    originals_check_required: bool = True,
) -> Dossier:
    """A dossier of the example procedure with one history entry per status (a minute apart, the last at ``at``)."""
    start = at - timedelta(minutes=len(statuses) - 1)
    dossier = Dossier(
        code=f"{AGENCY}-261123-{number:04d}",
        procedure_code=PROCEDURE,
        agency_code=AGENCY,
        lead_agency_code=AGENCY,
        status=statuses[-1],
        channel="online",
        applicant=dict(APPLICANT),
        return_method=return_method,
        delivery_address={"line": APPLICANT["address"], "province": "Hà Nội"},
        originals_check_required=originals_check_required,
        submitted_at=start,
        updated_at=at,
    )
    dossier.fees = [Fee(code=code, name=f"Lệ phí {code}", amount=amount, paid=False) for code, amount in fees]
    dossier.history = [
        HistoryEntry(status=status, at=start + timedelta(minutes=i), actor="test", details={})
        for i, status in enumerate(statuses)
    ]
    session.add(dossier)
    session.flush()
    return dossier


async def submit(ctx: Context, *, at: datetime, **fields: Any) -> str:
    """A dossier submitted (:func:`add_dossier`'s ``fields``), its intake raising the event as the intake use case's
    does; the dossier's code."""

    def work(uow: UnitOfWork) -> str:
        dossier = add_dossier(uow.session, at=at, **fields)
        if len(dossier.history) == 1:
            uow.emit(changed(dossier, dossier.history[-1], previous=None, now=at))
        return dossier.code

    return await in_unit(ctx.db, ctx.bus, work)


async def move(ctx: Context, code: str, status: Status | str, at: datetime, *, actor: str | None = None) -> None:
    """The dossier moved to ``status`` at ``at`` (by its agency unless ``actor``), the change raising its event."""

    def work(uow: UnitOfWork) -> None:
        dossier = find_dossier(uow.session, code, for_update=True)
        details = {"from": dossier.status}
        who = actor or f"agency:{dossier.agency_code}"
        calendar = ctx.calendar
        record_change(
            uow, dossier, status=Status(status), at=at, actor=who, note=None, details=details, calendar=calendar, now=at
        )

    await in_unit(ctx.db, ctx.bus, work)


@dataclass
class EventLog:
    """Records every :class:`ChangeRecorded` the bus hands out (subscribe :attr:`subscriptions`)."""

    events: list[ChangeRecorded] = field(default_factory=list)

    def record(self, event: ChangeRecorded, uow: UnitOfWork) -> None:
        self.events.append(event)

    @property
    def subscriptions(self) -> dict[type[DomainEvent], list[EventHandler]]:
        return {ChangeRecorded: [self.record]}


@dataclass
class FakePaymentProvider:
    """A payment platform in memory: URLs signed locally, queries answered from :attr:`statuses`.

    A notification's parameters are ``{"reference", "amount", "code"}`` plus ``"signature": "ok"`` (anything else is
    a bad signature); ``code`` ``"00"`` is a success.
    """

    payment_url: str = "https://pay.example.vn/pay"
    expire_minutes: int = 1440
    statuses: dict[str, PaymentStatus] = field(default_factory=dict)
    signed: list[str] = field(default_factory=list)
    queries: list[tuple[str, Any]] = field(default_factory=list)

    def sign(
        self, reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str, *, now: datetime
    ) -> PaymentRequest:
        """The payment flow's URL signing (``SignPayment``)."""
        if amount_vnd <= 0:
            raise ValueError("amount_vnd must be positive")
        self.signed.append(reference)
        return PaymentRequest(
            url=f"{self.payment_url}?ref={reference}&amount={amount_vnd}&sig=fake",
            reference=reference,
            expires_at=now + timedelta(minutes=self.expire_minutes),
            created_at=now,
        )

    async def create_payment(
        self, reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str
    ) -> PaymentRequest:
        return self.sign(reference, amount_vnd, description, return_url, client_ip, now=datetime.now(UTC))

    def verify_notification(self, params: Mapping[str, str]) -> Notification:
        if params.get("signature") != "ok":
            raise InvalidSignature("the fake signature is wrong")
        code = params.get("code", "00")
        return Notification(
            reference=params["reference"],
            amount_vnd=int(params["amount"]),
            success=code == "00",
            response_code=code,
            transaction_status=code,
            transaction_no=params.get("transaction_no", "FAKE-1"),
            params=dict(params),
        )

    async def query(self, reference: str, *, transaction_date: Any = None) -> PaymentStatus:
        self.queries.append((reference, transaction_date))
        return self.statuses.get(reference, PaymentStatus(reference, PaymentState.UNKNOWN, response_code="91"))

    def reconcile(self, settlement_csv: str, local: Iterable[LocalPayment]) -> ReconciliationReport:
        return ReconciliationReport(matched=[payment.reference for payment in local])

    def pay(self, reference: str, amount_vnd: int, *, paid_at: datetime | None = None) -> None:
        """The payer paid ``reference``: a query now answers ``paid``."""
        self.statuses[reference] = PaymentStatus(
            reference,
            PaymentState.PAID,
            amount_vnd=amount_vnd,
            transaction_no=f"T-{reference}",
            paid_at=paid_at,
            response_code="00",
            transaction_status="00",
        )


@dataclass
class FakePostalService:
    """The postal service in memory: orders kept by idempotency key, events pushed by the test."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[TrackingEvent]] = field(default_factory=dict)
    tracked: list[str] = field(default_factory=list)
    _by_key: dict[str, Order] = field(default_factory=dict)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))

    async def create_order(
        self,
        kind: str,
        dossier_code: str,
        sender: Mapping[str, Any],
        receiver: Mapping[str, Any],
        items: Sequence[Mapping[str, Any]],
        idempotency_key: str,
    ) -> Order:
        if idempotency_key in self._by_key:
            first = self._by_key[idempotency_key]
            return Order(first.order_code, first.status, kind=kind, dossier_code=dossier_code, duplicate=True)
        order_code = f"EL{next(self._numbers):09d}VN"
        self.orders[order_code] = {
            "kind": kind,
            "dossier_code": dossier_code,
            "sender": dict(sender),
            "receiver": dict(receiver),
            "items": [dict(item) for item in items],
            "idempotency_key": idempotency_key,
        }
        order = Order(order_code, TrackingStatus.ACCEPTED.value, kind=kind, dossier_code=dossier_code)
        self._by_key[idempotency_key] = order
        self.events[order_code] = []
        return order

    async def track(self, order_code: str) -> list[TrackingEvent]:
        self.tracked.append(order_code)
        return sorted(self.events.get(order_code, []), key=lambda event: event.at)

    def push(self, order_code: str, status: str, at: datetime, note: str | None = None) -> TrackingEvent:
        """A new tracking event of ``order_code`` (what the webhook would carry, and the poll will find)."""
        event = TrackingEvent(order_code=order_code, status=TrackingStatus(status), at=at, note=note)
        self.events.setdefault(order_code, []).append(event)
        return event


class FakeNationalPortal:
    """The national portal in memory (:class:`adapters.national_portal.NationalPortal`): what it holds, every call.

    ``refuse_next_progress`` refuses that many of the next progress records with ``refuse_code`` (the portal's
    "not stored"); ``down`` makes every call fail as transient, as an unreachable portal does.
    """

    def __init__(self, *, batch_size: int = 10) -> None:
        self.batch_size = batch_size
        self.dossiers: dict[str, DossierRecord] = {}
        self.progress: dict[str, list[ProgressRecord]] = {}
        self.ratings: dict[str, RatingRecord] = {}
        #: ``(service, isUpdating, dossier codes)`` of every call, in order.
        self.calls: list[tuple[str, bool | None, list[str]]] = []
        self.procedures: list[dict[str, Any]] = []
        self.refuse_next_progress = 0
        self.refuse_code = "99"
        self.down = False

    def _call(self, service: str, updating: bool | None, codes: list[str]) -> None:
        self.calls.append((service, updating, codes))
        if self.down:
            raise TransientError(f"{service}: HTTP 503", upstream="national_portal")

    async def sync_dossiers(self, records: Iterable[DossierRecord], *, updating: bool) -> BatchResult[DossierRecord]:
        items = list(records)
        self._call("DongBoHoSoMC", updating, [record.code for record in items])
        for record in items:
            self.dossiers[record.code] = record
        return BatchResult(accepted=items, calls=1)

    async def update_progress(self, records: Iterable[ProgressRecord]) -> BatchResult[ProgressRecord]:
        items = list(records)
        self._call("CapNhatTienDoHoSoMC", None, [record.dossier_code for record in items])
        result: BatchResult[ProgressRecord] = BatchResult(calls=1)
        for record in items:
            if self.refuse_next_progress > 0:
                self.refuse_next_progress -= 1
                result.failed.append(RecordFailure(record, self.refuse_code, "not stored"))
                continue
            self.progress.setdefault(record.dossier_code, []).append(record)
            result.accepted.append(record)
        return result

    async def send_ratings(self, records: Iterable[RatingRecord]) -> BatchResult[RatingRecord]:
        items = list(records)
        self._call("DanhGiaHaiLongMC", None, [record.dossier_code for record in items])
        self.ratings.update({record.dossier_code: record for record in items})
        return BatchResult(accepted=items, calls=1)

    async def lookup_dossiers(self, codes: Iterable[str]) -> dict[str, int | None]:
        wanted = list(dict.fromkeys(codes))
        self._call("TraCuuHoSoMC", None, wanted)
        return {code: self.dossiers[code].status_code if code in self.dossiers else None for code in wanted}

    async def pull_procedures(self) -> list[dict[str, Any]]:
        self._call("LayDanhSachTTHC", None, [])
        return [dict(entry) for entry in self.procedures]


@dataclass
class FakeOneStop:
    """An agency's one-stop system (:class:`adapters.onestop.port.OneStopClient`) that accepts everything, keeps
    what it was sent, and reports the statuses a test set (``changes`` for the ``changes_since`` feed)."""

    delivered: list[tuple[str, str]] = field(default_factory=list)
    supplements: list[tuple[str, list[str], str]] = field(default_factory=list)
    withdrawals: list[tuple[str, str, str]] = field(default_factory=list)
    payments: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    statuses: dict[str, AgencyStatus] = field(default_factory=dict)
    changes: list[AgencyStatus] = field(default_factory=list)
    closed: bool = False

    async def deliver(self, dossier: Mapping[str, Any], idempotency_key: str) -> DeliveryReceipt:
        duplicate = any(key == idempotency_key for _, key in self.delivered)
        self.delivered.append((str(dossier["code"]), idempotency_key))
        return DeliveryReceipt(dossier_code=str(dossier["code"]), duplicate=duplicate, status_code=201)

    async def get_status(self, code: str) -> AgencyStatus:
        return self.statuses[code]

    async def supplement(self, code: str, components: Sequence[Mapping[str, Any]], key: str) -> Acknowledgement:
        self.supplements.append((code, [str(c["code"]) for c in components], key))
        return Acknowledgement(dossier_code=code)

    async def withdraw(self, code: str, reason: str, idempotency_key: str) -> Acknowledgement:
        self.withdrawals.append((code, reason, idempotency_key))
        return Acknowledgement(dossier_code=code)

    async def fee_paid(self, code: str, payment: Mapping[str, Any], idempotency_key: str) -> Acknowledgement:
        self.payments.append((code, dict(payment), idempotency_key))
        return Acknowledgement(dossier_code=code)

    async def changes_since(self, since: datetime) -> list[AgencyStatus]:
        return [change for change in self.changes if change.at is None or change.at >= since]

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeAgencyClients:
    """The agencies' clients (:class:`gateway.flows.agency.ports.AgencyClients`): one fake per agency code."""

    systems: dict[str, FakeOneStop] = field(default_factory=dict)

    def of(self, agency_code: str) -> FakeOneStop:
        return self.systems.setdefault(agency_code, FakeOneStop())

    @contextlib.asynccontextmanager
    async def use(self, agency_code: str, document: Mapping[str, Any]) -> AsyncIterator[FakeOneStop]:
        yield self.of(agency_code)

    async def aclose(self) -> None:
        for system in self.systems.values():
            await system.aclose()


@dataclass
class FakePortal:
    """The provincial portal's webhook (:class:`adapters.portal.PortalNotifier`): keeps every notice."""

    notices: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    failure: Exception | None = None

    async def notify(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        if self.failure is not None:
            raise self.failure
        self.notices.append((dict(body), idempotency_key))
        return 200

    async def aclose(self) -> None:
        return None
