"""The database schema (SQLAlchemy 2 declarative models).

One schema for SQLite (the embedded default) and PostgreSQL. Times are stored as aware UTC; JSON columns hold
documents whose shape is owned by the domain (applicant, components' verification reports, registration documents).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every engine (SQLite keeps no zone: values are normalised on the way in and out)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Procedure(Base):
    """One administrative procedure (thủ tục hành chính) of the catalogue."""

    __tablename__ = "procedures"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    processing_days: Mapped[int] = mapped_column(Integer)
    agencies: Mapped[list[Any]] = mapped_column(JSON, default=list)
    components: Mapped[list[Any]] = mapped_column(JSON, default=list)
    fees: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: Shares of the legal time for inter-agency (liên thông) processing, by agency code; empty = equal shares.
    transfer_shares: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The result may be handed over before the fees are paid (otherwise fees come first).
    fees_after_result: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: What status 8 (suspended) means for this procedure: ``pause`` (the clock stops, processing resumes) or
    #: ``stop`` (processing stopped for good).
    suspension: Mapped[str] = mapped_column(String(8), default="pause", server_default="pause")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Agency(Base):
    """A registered agency and its one-stop system endpoint (the registration document, validated)."""

    __tablename__ = "agencies"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    protocol: Mapped[str] = mapped_column(String(8))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Blob(Base):
    """File content, stored once per sha256 whatever the name a client gave it."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DaySequence(Base):
    """The daily dossier sequence per agency: incremented atomically, so codes are unique across processes."""

    __tablename__ = "day_sequences"

    agency_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(6), primary_key=True)  # yymmdd, Asia/Ho_Chi_Minh
    last: Mapped[int] = mapped_column(Integer, default=0)


class Dossier(Base):
    __tablename__ = "dossiers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(96), unique=True)
    procedure_code: Mapped[str] = mapped_column(String(64), index=True)
    agency_code: Mapped[str] = mapped_column(String(64), index=True)
    #: The agency that returns the result (the first one, in liên thông); ``agency_code`` is the one handling it now.
    lead_agency_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), index=True)
    channel: Mapped[str] = mapped_column(String(16), default="online")
    applicant: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    return_method: Mapped[str | None] = mapped_column(String(16), default=None)
    delivery_address: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: Fields of the submission the gateway does not interpret, kept as given.
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    originals_check_required: Mapped[bool] = mapped_column(Boolean, default=True)
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    received_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledge_by: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: The office calendar that computed the stored deadlines (``vn-2026.1+holidays-0.109``).
    calendar_version: Mapped[str | None] = mapped_column(String(96), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    components: Mapped[list[Component]] = relationship(
        back_populates="dossier", order_by="Component.id", cascade="all, delete-orphan"
    )
    fees: Mapped[list[Fee]] = relationship(back_populates="dossier", order_by="Fee.id", cascade="all, delete-orphan")
    history: Mapped[list[HistoryEntry]] = relationship(
        back_populates="dossier", order_by="HistoryEntry.id", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class Component(Base):
    """One document of a dossier (thành phần hồ sơ); a supplement adds a newer revision of the same code."""

    __tablename__ = "components"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    detached_signature_sha256: Mapped[str | None] = mapped_column(ForeignKey("blobs.sha256"), default=None)
    verification: Mapped[dict[str, Any]] = mapped_column(JSON)
    originals_check_required: Mapped[bool] = mapped_column(Boolean, default=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dossier: Mapped[Dossier] = relationship(back_populates="components")


class Fee(Base):
    __tablename__ = "fees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text, default="")
    amount: Mapped[int] = mapped_column(BigInteger)  # VND, an integer: never a float
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)

    dossier: Mapped[Dossier] = relationship(back_populates="fees")


class HistoryEntry(Base):
    """One accepted status change (or a notable step) of a dossier, in order."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    dossier: Mapped[Dossier] = relationship(back_populates="history")


#: The outbox's open messages (still to deliver), and those that hold a later message of their ordering key back: the
#: predicates of its partial indexes, written the same way in the claim's statements so that planners match them.
OUTBOX_OPEN_SQL = "state IN ('pending', 'in_flight')"
#: The partial index of the open messages, in id order: the claim names it on SQLite.
OUTBOX_OPEN_INDEX = "ix_outbox_open"
OUTBOX_BLOCKING_SQL = "state IN ('pending', 'in_flight', 'dead')"


class OutboxMessage(Base):
    """Work to do outside the database, written in the same transaction as the change that caused it.

    Workers claim due rows (``state = pending``, ``next_attempt_at <= now``) by setting a lease; a claim whose lease
    has expired is taken over. Messages of one dossier (``ordering_key``) are delivered in ``id`` order.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(48))
    target: Mapped[str] = mapped_column(String(96))
    ordering_key: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(96), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        # The deadline watch reads its recent alerts (one kind, since a time) at every run.
        Index("ix_outbox_kind_created", "kind", "created_at"),
        # A claim reads the messages still to deliver in id order: from a partial index of the open ones, however
        # many delivered ones the table keeps.
        Index(OUTBOX_OPEN_INDEX, "id", sqlite_where=text(OUTBOX_OPEN_SQL), postgresql_where=text(OUTBOX_OPEN_SQL)),
        # It also looks for an earlier message of the same ordering key still blocking: one look-up in a partial index
        # that answers it whole, which a planner prefers even on stale statistics (without it, PostgreSQL has been
        # seen to intersect the ordering key's index with the states' index for every candidate: seconds a claim).
        Index(
            "ix_outbox_blocking",
            "ordering_key",
            "id",
            sqlite_where=text(OUTBOX_BLOCKING_SQL),
            postgresql_where=text(OUTBOX_BLOCKING_SQL),
        ),
    )


class IdempotencyRecord(Base):
    """The first answer to a request carrying an ``Idempotency-Key``, replayed for repeats."""

    __tablename__ = "idempotency"

    principal: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """The append-only, hash-chained audit trail: each entry's hash covers its content and the previous hash."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The chain the entry belongs to (``gateway.audit``: concurrent writers spread over a few chains).
    chain: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (
        UniqueConstraint("chain", "prev_hash", name="uq_audit_chain_prev_hash"),
        Index("ix_audit_chain_id", "chain", "id"),
    )


class Payment(Base):
    """A payment requested from the payment platform for a dossier's unpaid fees (amounts: integer VND)."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: The transaction reference the provider echoes back (``vnp_TxnRef``), unique across dossiers.
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="VND")
    #: The fee codes this payment settles.
    fee_codes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: ``pending`` | ``paid`` | ``failed``.
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    provider_transaction: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    last_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Shipment(Base):
    """A postal order of a dossier: ``pickup`` of the originals or ``delivery`` of the result."""

    __tablename__ = "shipments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: The postal service's order code (none until the order is accepted).
    order_code: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    #: ``requested`` (not yet ordered) | ``accepted`` | ``in_transit`` | ``delivered`` | ``failed`` | ``returned``.
    status: Mapped[str] = mapped_column(String(16), default="requested", index=True)
    last_event_at: Mapped[datetime | None] = mapped_column(default=None)
    last_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (UniqueConstraint("dossier_id", "kind", name="uq_shipments_dossier_kind"),)


class NationalSync(Base):
    """What the national portal is known to hold for a dossier (for ``isUpdating`` and reconciliation)."""

    __tablename__ = "national_sync"

    dossier_code: Mapped[str] = mapped_column(String(96), primary_key=True)
    #: The national status code last accepted by the portal (none: never synced).
    status_code: Mapped[str | None] = mapped_column(String(8), default=None)
    #: The last history entry whose progress the portal accepted, and every one before it.
    history_id: Mapped[int] = mapped_column(Integer, default=0)
    #: History entries after ``history_id`` whose progress the portal already accepted (a half-accepted batch:
    #: only the others are sent again).
    accepted_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    synced_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class AgencyPoll(Base):
    """Where polling of an agency registered for ``status_updates.mode = "poll"`` stands."""

    __tablename__ = "agency_polls"

    agency_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The agency's position (the time of the last change seen), as it reported it.
    position: Mapped[datetime | None] = mapped_column(default=None)
    next_poll_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_polled_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class Rating(Base):
    """The applicant's satisfaction rating of a returned dossier: one per dossier, scores 1 to 5 per criterion."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), unique=True)
    dossier_code: Mapped[str] = mapped_column(String(96))
    #: The agency that returned the result (the lead agency) and the procedure: what the reports average over.
    agency_code: Mapped[str] = mapped_column(String(64), index=True)
    procedure_code: Mapped[str] = mapped_column(String(64))
    #: ``{criterion: score}`` (:data:`gateway.domain.ratings.CRITERIA`).
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    rated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    #: When the national portal accepted it (none: not yet, or the integration is off).
    synced_at: Mapped[datetime | None] = mapped_column(default=None)


class Question(Base):
    """A citizen's question to the competent agency and, once given, the agency's answer."""

    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency_code: Mapped[str] = mapped_column(String(64), index=True)
    procedure_code: Mapped[str | None] = mapped_column(String(64), default=None)
    text: Mapped[str] = mapped_column(Text)
    #: ``portal`` | ``email`` | ``sms`` | ``post``: how the portal relays the answer to the asker.
    reply_channel: Mapped[str] = mapped_column(String(16))
    #: The asker's contact details (personal data: never logged, never sent to the agency).
    contact: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: How it reaches the agency: ``rest`` (posted through the outbox) or ``poll`` (the agency fetches it).
    route: Mapped[str] = mapped_column(String(8))
    asked_at: Mapped[datetime] = mapped_column(default=utcnow)
    answer_by: Mapped[datetime] = mapped_column()
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    answered_by: Mapped[str | None] = mapped_column(Text, default=None)
    answered_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class ConsoleSessionRecord(Base):
    """An operator's console session. The cookie carries a random id; only its SHA-256 is kept here, with the
    session's CSRF token and an HMAC of the admin token's digest (never the token), so that logging out, expiry and
    removing the token from the configuration all end it, in every process sharing the database."""

    __tablename__ = "console_sessions"

    #: SHA-256 (hex) of the random id the session cookie carries.
    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    #: HMAC-SHA256 (hex) of the digest of the admin token that opened it (:meth:`gateway.auth.TokenStore.holds`).
    token_binding: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class GatewayKey(Base):
    """A random key the gateway draws for itself when the configuration names none (the console's session key), kept
    so that every process sharing the database, and every restart, uses the same one."""

    __tablename__ = "gateway_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
