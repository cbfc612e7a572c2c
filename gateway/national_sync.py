"""The national public-service portal's view of every dossier (DESIGN.md §4.4 and §6): sync through the outbox.

**Fan-out** (:func:`on_change`, called by :func:`gateway.fanout.after_change` inside the transaction of every
recorded change, intake included): when ``[national_portal] base_url`` is configured, each history entry enqueues one
``national.sync`` message (payload ``{"dossier_code", "history_id"}``, target ``national_portal``, ordering key the
dossier code, step ``national:<history id>``). When it is not, the intake records once in the history that the sync
is skipped (a step ``national_sync_skipped``); later changes add nothing.

**Delivery** (:class:`Handler`, built by :class:`gateway.dispatch.GatewayDispatcher` for ``national.sync``): a message
brings the portal up to its history entry *at least*: it reads the dossier and its whole history from the database
when it is handled and sends what the portal does not have yet, so work that queued up while the portal was down
goes in a few batched calls, and the later messages of the dossier find nothing left to do:

* ``DongBoHoSoMC`` with the dossier and its current status (``TrangThaiHoSo`` from the one mapping table,
  :func:`gateway.domain.status.national_code`), when that code is not the one the portal last accepted;
  ``isUpdating`` when the :class:`~gateway.store.models.NationalSync` row says the portal has the dossier (the client
  sends it the other way if the portal disagrees);
* ``CapNhatTienDoHoSoMC`` with every history entry the portal has not accepted yet, in history order, in batches
  (``batch_size``, 10 by default), each with the status code it recorded; records of a half-accepted batch that
  the portal accepted are remembered (``NationalSync.accepted_ids``), so the next attempt sends only the refused
  ones;
* the ``NationalSync`` row (``status_code``, ``history_id`` — the entry up to which everything was accepted —,
  ``synced_at``, ``last_error``) is updated in one unit of work after the calls, failed or not.

A message for an entry the portal already has (an older message handled after a newer one, a repeat, a message
whose work an earlier one did) changes nothing. A message with ``"resync": true`` (``dvc-gateway national reconcile
--resync``) sends the dossier again whatever the row says; with ``"full": true`` too (the portal lost it), the
whole history is sent again.

Errors, as the outbox expects them (:func:`gateway.workers.classify`): the portal unreachable, 5xx, its system
error or a record refused with ``99`` (not stored) or ``13`` (not found yet) are transient: the message is retried
with backoff, and the later messages of the dossier wait behind it, so the work drains in order per dossier when
the portal is back. An expired session is refreshed by the client, mid-batch included. Refused credentials, a
record refused as invalid (``11``, ``12``), an unknown dossier or history entry, or a configuration that cannot be
used are permanent: the message is dead, an operator fixes the cause and redrives it.

Configuration ``[national_portal]``: ``base_url`` (on/off), ``username``, ``password`` (``env:NAME`` / ``file:PATH``
references resolved at each login, never kept or logged), ``dstcode`` (the province's code), ``madonvi`` (the unit
code), ``timeout_seconds`` (15), ``batch_size`` (10).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import AuthError, PermanentError, TransientError, UpstreamError
from adapters.http import ClientFactory, ClientSettings
from adapters.national_portal import Channel, DossierRecord, NationalPortalClient, ProgressRecord, RecordFailure, wire
from adapters.netguard import AddressPolicy

from . import messages, outbox
from .config import Config, ConfigError, resolve_secret
from .domain.status import Status, national_code
from .store.models import Dossier, HistoryEntry, NationalSync, OutboxMessage, utcnow

if TYPE_CHECKING:
    from .dispatch import GatewayDispatcher
    from .workers import MessageView

__all__ = [
    "STEP_SKIPPED",
    "Handler",
    "PortalSettings",
    "enqueue_sync",
    "on_change",
    "open_portal",
]

log = logging.getLogger("gateway.national_sync")

UPSTREAM = messages.NATIONAL_TARGET
SECTION = "national_portal"
#: The history step recorded at intake when the national portal is not configured.
STEP_SKIPPED = "national_sync_skipped"
DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_BATCH_SIZE = 10

#: Per-record codes after which the same record may be accepted later (not stored; the dossier not there yet).
_RETRYABLE_RECORD_CODES = frozenset({wire.CODE_SYSTEM_ERROR, wire.CODE_NOT_FOUND})

#: ``KenhThucHien`` of each submission channel.
CHANNELS: Mapping[str, Channel] = {"in_person": Channel.IN_PERSON, "online": Channel.ONLINE, "post": Channel.POST}

#: ``NoiDungXuLy`` of the history steps that are not status changes (the others: the status's label).
STEP_LABELS_VI: Mapping[str, str] = {
    "fee_paid": "Đã thực hiện nghĩa vụ tài chính",
    "payment_created": "Đã tạo yêu cầu thanh toán trực tuyến",
    "agency_told_fee_paid": "Đã thông báo cơ quan về việc nộp phí, lệ phí",
    "shipment_ordered": "Đã tạo đơn gửi qua bưu chính công ích",
    "shipped": "Đã gửi kết quả qua bưu chính công ích",
    "in_transit": "Bưu chính đang vận chuyển",
    "delivered": "Bưu chính đã phát kết quả cho người nhận",
    "delivery_failed": "Bưu chính phát không thành công",
    "returned_to_sender": "Bưu chính đã hoàn trả",
    "pickup_ordered": "Đã tạo đơn thu gom bản gốc qua bưu chính công ích",
}


def is_local_step(entry: HistoryEntry) -> bool:
    """A step that only says something about the gateway itself (an integration skipped): never sent to the portal."""
    step = (entry.details or {}).get("step")
    return isinstance(step, str) and (step == STEP_SKIPPED or step.endswith("_skipped"))


# --------------------------------------------------------------------------------------------------------------------
# Fan-out


def ordering_key(dossier_code: str) -> str:
    """The dossier's national sync lane: its syncs go in order among themselves, and neither wait behind the
    agency's messages (a dead delivery to the agency must not keep the portal uninformed) nor hold them back."""
    return f"{dossier_code}#national"


def enqueue_sync(
    session: Session, dossier_code: str, history_id: int, *, resync: bool = False, full: bool = False
) -> OutboxMessage:
    """A ``national.sync`` message bringing the portal up to history entry ``history_id`` (in the caller's unit of
    work). ``resync`` sends the dossier again whatever the portal is known to hold (``full``: its whole history)."""
    payload: dict[str, Any] = {"dossier_code": dossier_code, "history_id": history_id}
    step = f"national:{history_id}"
    if resync:
        payload.update(resync=True, full=full)
        step = f"national:{history_id}:resync:{utcnow().strftime('%Y%m%dT%H%M%S.%fZ')}"
    return outbox.enqueue(
        session,
        kind=messages.NATIONAL_SYNC,
        target=messages.NATIONAL_TARGET,
        payload=payload,
        idempotency_key=outbox.message_key(dossier_code, step),
        ordering_key=ordering_key(dossier_code),
    )


def on_change(
    session: Session, dossier: Dossier, entry: HistoryEntry, *, enabled: bool, previous: str | None, now: datetime
) -> None:
    """The national portal's part of a recorded change: a sync message, or (once, at intake) a skipped step."""
    if enabled:
        if is_local_step(entry):
            return
        enqueue_sync(session, dossier.code, entry.id)
        return
    if previous is not None:
        return
    if any((h.details or {}).get("step") == STEP_SKIPPED for h in dossier.history):
        return
    dossier.history.append(
        HistoryEntry(
            status=dossier.status,
            at=entry.at,
            actor="gateway",
            note="National portal sync skipped: [national_portal] base_url is not configured",
            details={"step": STEP_SKIPPED},
        )
    )
    session.flush()


# --------------------------------------------------------------------------------------------------------------------
# Configuration and client


def _text_setting(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[{SECTION}] {key} is required when base_url is set")
    return value.strip()


@dataclass(frozen=True)
class PortalSettings:
    """``[national_portal]`` as the client needs it (the password as its reference: resolved at each login)."""

    base_url: str
    username: str
    password_ref: str = field(repr=False)
    dstcode: str
    madonvi: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    batch_size: int = DEFAULT_BATCH_SIZE

    @classmethod
    def from_config(cls, config: Config) -> PortalSettings:
        """The settings, or :class:`~gateway.config.ConfigError` (one line) when they cannot be used."""
        section = config.section(SECTION)
        base_url = section.get("base_url")
        if not isinstance(base_url, str) or not base_url:
            raise ConfigError(f"[{SECTION}] base_url is not configured: the national portal integration is off")
        timeout = section.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"[{SECTION}] timeout_seconds must be a positive number")
        batch = section.get("batch_size", DEFAULT_BATCH_SIZE)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"[{SECTION}] batch_size must be a positive integer")
        password = section.get("password")
        if not isinstance(password, str) or not password:
            raise ConfigError(f"[{SECTION}] password is required when base_url is set (literal, env:NAME, file:PATH)")
        settings = cls(
            base_url=base_url,
            username=_text_setting(section, "username"),
            password_ref=password,
            dstcode=_text_setting(section, "dstcode"),
            madonvi=_text_setting(section, "madonvi"),
            timeout_seconds=float(timeout),
            batch_size=batch,
        )
        settings.client_settings()  # the URL is checked now
        return settings

    def client_settings(self) -> ClientSettings:
        try:
            return ClientSettings(
                base_url=self.base_url,
                timeout_seconds=self.timeout_seconds,
                connect_timeout_seconds=min(5.0, self.timeout_seconds),
                total_timeout_seconds=max(self.timeout_seconds, 1.0) * 2,
                # The operator's own configuration: the province's network is allowed, link-local never.
                address_policy=AddressPolicy(allow_private=True),
            )
        except ValueError as exc:
            raise ConfigError(f"[{SECTION}] base_url: {exc}") from None

    def password(self) -> str:
        """The password, resolved now (a reference that cannot be resolved is an :class:`AuthError`)."""
        try:
            value = resolve_secret(self.password_ref, key=f"[{SECTION}] password")
        except ConfigError as exc:
            raise AuthError(f"credentials unavailable: {exc}", upstream=UPSTREAM) from None
        return value or ""

    def client(self, http: httpx.AsyncClient) -> NationalPortalClient:
        return NationalPortalClient(
            http,
            username=self.username,
            password=self.password,
            dstcode=self.dstcode,
            madonvi=self.madonvi,
            batch_size=self.batch_size,
            upstream=UPSTREAM,
        )


@contextlib.asynccontextmanager
async def open_portal(config: Config, factory: ClientFactory) -> AsyncIterator[NationalPortalClient]:
    """A client of the configured portal for one piece of work (the CLI's); its HTTP client closed after."""
    settings = PortalSettings.from_config(config)
    async with factory.client(UPSTREAM, settings.client_settings()) as http:
        yield settings.client(http)


# --------------------------------------------------------------------------------------------------------------------
# Records


def _received_at(dossier: Dossier) -> datetime:
    return dossier.received_at or dossier.submitted_at


def dossier_record(session: Session, dossier: Dossier, entries: Sequence[HistoryEntry]) -> DossierRecord:
    """``DongBoHoSoMC``'s record of ``dossier`` with the status of the last of ``entries`` (its history)."""
    from .catalogue import get_procedure  # the catalogue is read only here

    status = Status(entries[-1].status)
    spec = get_procedure(session, dossier.procedure_code)
    applicant = dossier.applicant or {}
    completed = status in (Status.COMPLETED, Status.RETURNED)
    returned_at = next((e.at for e in entries if e.status == Status.RETURNED.value), None)

    def text(key: str) -> str | None:
        value = applicant.get(key)
        return value if isinstance(value, str) and value.strip() else None

    return DossierRecord(
        code=dossier.code,
        procedure_code=dossier.procedure_code,
        procedure_name=spec.name if spec is not None else None,
        status_code=national_code(status),
        received_at=_received_at(dossier),
        due_at=dossier.due_at,
        channel=CHANNELS.get(dossier.channel, Channel.ONLINE),
        summary=dossier.summary or None,
        processing_unit=dossier.agency_code,
        applicant_kind=1 if applicant.get("kind", "citizen") == "citizen" else 2,
        applicant_name=text("full_name"),
        applicant_id=text("id_number"),
        email=text("email"),
        phone=text("phone"),
        return_by_post=dossier.return_method == "post" if dossier.return_method else None,
        completed_at=(dossier.completed_at or entries[-1].at) if completed else None,
        returned_at=returned_at if status is Status.RETURNED else None,
    )


def progress_record(dossier: Dossier, entry: HistoryEntry) -> ProgressRecord:
    """``CapNhatTienDoHoSoMC``'s record of one history entry."""
    from .dossiers import STATUS_LABELS_VI  # the read model imports the services: import it when first needed

    status = Status(entry.status)
    step = (entry.details or {}).get("step")
    if isinstance(step, str) and step:
        label = STEP_LABELS_VI.get(step) or f"{STATUS_LABELS_VI[status]} ({step})"
    else:
        label = STATUS_LABELS_VI[status]
    content = f"{label}: {entry.note}" if entry.note else label
    return ProgressRecord(
        dossier_code=dossier.code,
        at=entry.at,
        content=content[:2000],
        status_code=national_code(status),
        handler=entry.actor or None,
        department=dossier.agency_code,
        due_at=dossier.due_at,
    )


# --------------------------------------------------------------------------------------------------------------------
# Delivery


@dataclass
class _Plan:
    """What one message sends, read in one unit of work."""

    dossier: DossierRecord | None
    updating: bool
    progress: list[tuple[int, ProgressRecord]]
    #: Every history entry, in order (the watermark moves along them).
    entry_ids: list[int]
    #: Entries never sent (gateway-only steps): they count as accepted.
    local_ids: set[int]
    full: bool


@dataclass
class _Outcome:
    status_code: int | None = None
    accepted: set[int] = field(default_factory=set)
    error: str | None = None


def _plan(code: str, history_id: int, resync: bool, full: bool, session: Session) -> _Plan | None:
    dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
    if dossier is None:
        raise PermanentError(f"no dossier {code}", upstream=UPSTREAM)
    entries = list(dossier.history)
    if all(entry.id != history_id for entry in entries):
        raise PermanentError(f"dossier {code} has no history entry {history_id}", upstream=UPSTREAM)
    row = session.get(NationalSync, code)
    if full:
        row = None
    elif row is not None and not resync and row.history_id >= history_id:
        return None  # the portal is already up to this entry (or past it)
    watermark = row.history_id if row is not None else 0
    accepted = set(row.accepted_ids or []) if row is not None else set()
    target = national_code(entries[-1].status)
    send_dossier = resync or row is None or row.status_code != str(target)
    local_ids = {e.id for e in entries if is_local_step(e)}
    try:
        progress = [
            (e.id, progress_record(dossier, e))
            for e in entries
            if e.id > watermark and e.id not in accepted and e.id not in local_ids
        ]
        record = dossier_record(session, dossier, entries) if send_dossier else None
    except ValueError as exc:  # a value the portal's record cannot carry: sending it again will not help
        raise PermanentError(f"dossier {code} cannot be sent: {exc}", upstream=UPSTREAM) from None
    return _Plan(
        dossier=record,
        updating=row is not None and row.status_code is not None,
        progress=progress,
        entry_ids=[e.id for e in entries],
        local_ids=local_ids,
        full=full,
    )


def _save(code: str, plan: _Plan, outcome: _Outcome, now: datetime, session: Session) -> None:
    row = session.get(NationalSync, code)
    if row is None:
        row = NationalSync(dossier_code=code, history_id=0, accepted_ids=[])
        session.add(row)
    if plan.full:
        row.history_id, row.accepted_ids = 0, []
    if outcome.status_code is not None:
        row.status_code = str(outcome.status_code)
    accepted = set(row.accepted_ids or []) | outcome.accepted | plan.local_ids
    watermark = row.history_id or 0
    for entry_id in plan.entry_ids:
        if entry_id <= watermark:
            continue
        if entry_id not in accepted:
            break
        watermark = entry_id
    row.history_id = watermark
    row.accepted_ids = sorted(i for i in accepted if i > watermark)
    if outcome.error is None:
        row.last_error = None
        row.synced_at = now
    else:
        row.last_error = outcome.error[:2000]


def _refusal(what: str, failures: Sequence[RecordFailure[Any]]) -> UpstreamError:
    """The error a refused record makes of the message: transient when sending it again may succeed."""
    codes = sorted({failure.code for failure in failures})
    first = failures[0]
    text = f"{what}: {len(failures)} record(s) refused (error_code {', '.join(codes)}: {first.message})"
    if all(failure.code in _RETRYABLE_RECORD_CODES for failure in failures):
        return TransientError(text, upstream=UPSTREAM)
    return PermanentError(text, upstream=UPSTREAM)


class Handler:
    """Delivers ``national.sync`` messages for a :class:`~gateway.dispatch.GatewayDispatcher` (see the module notes).

    One :class:`~adapters.national_portal.NationalPortalClient` (one session) per handler, built on first use through
    the dispatcher's client factory (recording, replay and the address policy apply).
    """

    def __init__(self, dispatcher: GatewayDispatcher) -> None:
        self.dispatcher = dispatcher
        self.runtime = dispatcher.runtime
        self._http: httpx.AsyncClient | None = None
        self._client: NationalPortalClient | None = None
        self.clock: Callable[[], datetime] = utcnow

    def portal(self) -> NationalPortalClient:
        """The cached client (a configuration that cannot be used is a :class:`PermanentError`)."""
        if self._client is None:
            try:
                settings = PortalSettings.from_config(self.runtime.config)
            except ConfigError as exc:
                raise PermanentError(str(exc), upstream=UPSTREAM) from None
            self._http = self.dispatcher.factory.client(UPSTREAM, settings.client_settings())
            self._client = settings.client(self._http)
        return self._client

    async def aclose(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.aclose()

    async def handle(self, message: MessageView) -> None:
        payload = message.payload
        code, history_id = payload.get("dossier_code"), payload.get("history_id")
        if not isinstance(code, str) or not code or isinstance(history_id, bool) or not isinstance(history_id, int):
            raise PermanentError("the message names no dossier or history entry", upstream=UPSTREAM)
        resync, full = payload.get("resync") is True, payload.get("full") is True
        plan = await self.runtime.db.run(functools.partial(_plan, code, history_id, resync, full))
        if plan is None:
            log.info("national portal already up to date", extra={"dossier_code": code, "history_id": history_id})
            return
        client = self.portal()
        outcome = _Outcome()
        try:
            await self._send(client, plan, outcome)
        except UpstreamError as exc:
            outcome.error = str(exc)
            await self.runtime.db.run(functools.partial(_save, code, plan, outcome, self.clock()))
            raise
        await self.runtime.db.run(functools.partial(_save, code, plan, outcome, self.clock()))
        log.info(
            "national portal synced",
            extra={
                "dossier_code": code,
                "history_id": history_id,
                "status_code": outcome.status_code,
                "progress": len(outcome.accepted),
            },
        )

    @staticmethod
    async def _send(client: NationalPortalClient, plan: _Plan, outcome: _Outcome) -> None:
        if plan.dossier is not None:
            synced = await client.sync_dossiers([plan.dossier], updating=plan.updating)
            if synced.failed:
                raise _refusal(wire.SERVICE_SYNC, synced.failed)
            outcome.status_code = plan.dossier.status_code
        if not plan.progress:
            return
        ids = {id(record): entry_id for entry_id, record in plan.progress}
        failed: list[RecordFailure[ProgressRecord]] = []
        size = client.batch_size
        # One batch per call here, so that a failure on a later batch keeps what the earlier ones had accepted.
        for start in range(0, len(plan.progress), size):
            result = await client.update_progress([record for _, record in plan.progress[start : start + size]])
            outcome.accepted.update(ids[id(record)] for record in result.accepted)
            failed.extend(result.failed)
        if failed:
            raise _refusal(wire.SERVICE_PROGRESS, failed)
