"""Agency events: one use case for a status event, whether it came by REST, the SOAP callback or polling.

Decisions where the rules are silent:

* The events of a dossier are accepted from its current agency and from its lead agency (which returns the result
  of an inter-agency dossier); any other agency is refused.
* Idempotency: an event is identified by (dossier, status, ``at``) from the same agency; a repeat is accepted and
  changes nothing. An event without ``at`` is stamped with the gateway's clock. An ``at`` more than five minutes in
  the future is refused; an ``at`` earlier than the dossier's last history entry is recorded at that entry's time,
  the agency's own time kept in ``details.event_at``.
* ``received`` starts the legal clock; a ``due_at`` the agency gives is recorded (``details.agency_due_at`` and the
  note), never trusted over the law. Waiting statuses stop the clock; the due date moves when the wait ends.
* ``transfer_to`` (*liên thông*), only with ``processing``: another registered agency competent for the procedure
  takes over, the lead stays; an ``agency.deliver`` to it is enqueued; its own deadline, its share of the time left
  (:func:`gateway.domain.hops.transfer_deadline`), is recorded as ``details.transfer_due_at``.
* ``completed`` and ``refused`` may carry ``result`` (the result, or the signed refusal notice): files decoded,
  sniffed, verified like components and stored content-addressed in ``Dossier.result``.
* Fees before results: ``returned`` is refused (:class:`~gateway.errors.FeeUnpaid`, 409) while a fee is unpaid,
  unless the procedure has ``fees_after_result``. ``fees_paid: true`` on any event says the applicant paid at the
  agency's counter: the unpaid fees are marked paid (``details.fees_paid``) before the rule is checked.
* A procedure whose ``suspension`` is ``stop`` makes ``suspended`` final: no event moves the dossier out of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator
from sqlalchemy.orm import Session

from gateway import audit
from gateway.auth import Principal
from gateway.catalogue import ProcedureSpec
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.dossier import (
    RESULT_STATUSES,
    EventFacts,
    Recorded,
    decide_event,
    event_problems,
    fees_hold_result,
    is_repeat,
    unpaid_blocks_result,
)
from gateway.domain.hops import transfer_deadline
from gateway.domain.status import Status, national_code
from gateway.domain.times import aware, iso, utc_key
from gateway.errors import FeeUnpaid, Forbidden, Invalid, problem
from gateway.services.agency_outbox import enqueue_delivery
from gateway.services.changes import find_dossier, procedure_of, record_change
from gateway.services.context import Context
from gateway.services.files import FileIn, PreparedFile, prepare_files, store_blob, verify_files
from gateway.services.intake import Code, check_component_codes
from gateway.services.payments import unpaid
from gateway.store.models import Agency, Dossier
from gateway.unit_of_work import UnitOfWork, in_unit
from gateway.validation import parse_model

__all__ = ["AgencyEvent", "EventOutcome", "apply_event", "prepare_result_files", "record_event"]

Note = Annotated[StrictStr, Field(max_length=4000)]


class AgencyEvent(BaseModel):
    """``POST /api/v1/agencies/{agency}/events`` (``docs/api.md``; ``components`` added for ``supplement_requested``).

    Fields the gateway does not know are ignored (agency systems differ; a mapping renames theirs). Times without an
    offset are read in Vietnam's time.
    """

    model_config = ConfigDict(extra="ignore")

    dossier_code: Annotated[StrictStr, Field(min_length=1, max_length=96)]
    status: Status
    at: datetime | None = None
    note: Note | None = None
    reason: Note | None = None
    due_at: datetime | None = None
    transfer_to: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    components: list[Code] | None = None
    result: dict[str, Any] | None = None
    fees_paid: StrictBool = False

    _aware_at = field_validator("at", "due_at")(aware)

    def facts(self) -> EventFacts:
        return EventFacts(
            status=self.status,
            at=self.at,
            note=self.note,
            reason=self.reason,
            due_at=self.due_at,
            transfer_to=self.transfer_to,
            components=tuple(self.components) if self.components else None,
            has_result=self.result is not None,
        )


class ResultFiles(BaseModel):
    """The ``files`` of a ``completed`` or ``refused`` event's ``result``; other keys of ``result`` are kept."""

    model_config = ConfigDict(extra="allow")

    files: list[FileIn] = Field(default_factory=list)


@dataclass(frozen=True)
class EventOutcome:
    """The answer to an agency's event: the dossier after it, and whether the event was a repeat."""

    dossier_code: str
    status: str
    agency_code: str
    received_at: datetime | None
    due_at: datetime | None
    duplicate: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "dossier_code": self.dossier_code,
            "status": self.status,
            "national_status_code": national_code(self.status),
            "agency_code": self.agency_code,
            "received_at": iso(self.received_at),
            "due_at": iso(self.due_at),
            "duplicate": self.duplicate,
        }


def _result_file_items(event: AgencyEvent) -> list[tuple[str, str | None, FileIn]]:
    if event.result is None:
        return []
    try:
        files = parse_model(ResultFiles, event.result).files
    except Invalid as exc:
        raise Invalid([{"field": f"result.{e['field']}", "message": e["message"]} for e in exc.errors]) from None
    return [(f"result.files[{i}]", None, item) for i, item in enumerate(files)]


async def prepare_result_files(ctx: Context, event: AgencyEvent) -> list[PreparedFile]:
    """The result files of a ``completed`` or ``refused`` event decoded and verified, before the transaction
    opens."""
    items = _result_file_items(event)
    if not items:
        return []
    files, errors = await prepare_files(items, max_bytes=ctx.max_file_bytes)
    if errors:
        raise Invalid(errors)
    await verify_files(ctx.verifier, files)
    return files


def _transfer_problems(session: Session, dossier: Dossier, spec: ProcedureSpec, target: str) -> list[dict[str, str]]:
    if target == dossier.agency_code:
        return [problem("transfer_to", f"the dossier is already with agency {target}")]
    if target not in spec.agencies:
        competent = ", ".join(spec.agencies)
        return [problem("transfer_to", f"agency {target} is not competent for {spec.code} (competent: {competent})")]
    if session.get(Agency, target) is None:
        return [problem("transfer_to", f"agency {target} is not registered with the gateway")]
    return []


def _transfer_deadline(spec: ProcedureSpec, dossier: Dossier, calendar: OfficeCalendar, at: datetime) -> datetime:
    """The receiving agency's own deadline: its share of the time left among the agencies still to act."""
    assert dossier.due_at is not None
    visited = {dossier.lead_agency_code}
    visited.update(str(e.details["transfer_to"]) for e in dossier.history if (e.details or {}).get("transfer_to"))
    return transfer_deadline(
        calendar,
        at=at,
        due_at=dossier.due_at,
        receiver=dossier.agency_code,
        lead=dossier.lead_agency_code,
        shares={code: float(weight) for code, weight in spec.transfer_shares.items()},
        order=spec.agencies,
        visited=visited,
    )


def _settle_at_counter(dossier: Dossier, at: datetime, details: dict[str, Any], note: str | None) -> str | None:
    """The unpaid fees marked paid at the agency's counter (an event's ``fees_paid``), recorded in ``details``; the
    entry's note saying so."""
    settled: list[dict[str, Any]] = []
    for fee in unpaid(dossier):
        fee.paid = True
        fee.paid_at = at
        settled.append({"code": fee.code, "amount": fee.amount})
    details["fees_paid"] = settled
    if not settled:
        return note
    paid = sum(fee["amount"] for fee in settled)
    return f"{note + ' ' if note else ''}(fees paid at the agency: {paid} VND)"


def _check_fees_before_result(dossier: Dossier, spec: ProcedureSpec, target: Status) -> None:
    if not fees_hold_result(target, fees_after_result=spec.fees_after_result):
        return  # no fee could hold this change back: the dossier's fees are not read
    fees = unpaid(dossier)
    amount = sum(fee.amount for fee in fees)
    if unpaid_blocks_result(target, amount, fees_after_result=spec.fees_after_result):
        listed = ", ".join(f"{fee.code} {fee.name}: {fee.amount} VND" for fee in fees)
        raise FeeUnpaid(
            f"dossier {dossier.code} cannot be returned: the fee is unpaid ({listed}); the result is handed over "
            "once the fees are paid",
            [{"fee": fee.code, "amount": fee.amount, "paid": False} for fee in fees],
        )


def _store_result(session: Session, result: dict[str, Any], files: Sequence[PreparedFile]) -> dict[str, Any]:
    stored = {key: value for key, value in result.items() if key != "files"}
    stored["files"] = []
    for f in files:
        store_blob(session, f.data, f.sha256)
        if f.signature is not None:
            store_blob(session, f.signature, f.signature_sha256)
        stored["files"].append(
            {
                "filename": f.filename,
                "content_type": f.content_type,
                "size": f.size,
                "sha256": f.sha256,
                "detached_signature_sha256": f.signature_sha256,
                "verification": f.verification,
            }
        )
    return stored


def _problems(session: Session, dossier: Dossier, spec: ProcedureSpec, event: AgencyEvent, now: datetime) -> None:
    codes = [(f"components[{i}]", c) for i, c in enumerate(event.components or [])]
    component_problems = [
        {"field": e["field"].removesuffix(".code"), "message": e["message"]} for e in check_component_codes(spec, codes)
    ]
    errors = event_problems(event.facts(), now=now, component_problems=component_problems)
    if event.transfer_to is not None:
        errors += _transfer_problems(session, dossier, spec, event.transfer_to)
    if errors:
        raise Invalid(errors)


def record_event(
    uow: UnitOfWork,
    dossier: Dossier,
    event: AgencyEvent,
    *,
    actor: Principal,
    calendar: OfficeCalendar,
    now: datetime,
    result_files: Sequence[PreparedFile] = (),
) -> bool:
    """Apply ``event`` from ``actor`` (an agency) to ``dossier``: ``True`` when applied, ``False`` for a repeat.

    Raises :class:`~gateway.errors.Forbidden` (not this agency's dossier), :class:`~gateway.errors.Invalid` (a
    missing or wrong field), :class:`~gateway.domain.status.IllegalTransition` (nothing changes).
    """
    session = uow.session
    if not actor.is_agency() or actor.agency_code not in (dossier.agency_code, dossier.lead_agency_code):
        raise Forbidden(f"dossier {dossier.code} is not handled by agency {actor.agency_code}")
    history = [Recorded(e.status, e.actor, e.details or {}) for e in dossier.history]
    if is_repeat(history, event.facts(), actor.name):
        return False
    spec = procedure_of(session, dossier)
    _problems(session, dossier, spec, event, now)
    final = spec.suspension == "stop"
    transition = decide_event(Status(dossier.status), event.facts(), now=now, suspension_final=final)
    details, note = dict(transition.details), transition.note
    if event.fees_paid:
        note = _settle_at_counter(dossier, transition.at, details, note)
    else:
        _check_fees_before_result(dossier, spec, transition.target)
    if event.transfer_to is not None:
        details.update(transfer_from=dossier.agency_code, transfer_to=event.transfer_to)
        dossier.agency_code = event.transfer_to
        enqueue_delivery(session, dossier, event.transfer_to)
    if transition.target is Status.COMPLETED:
        last = dossier.history[-1].at if dossier.history else transition.at
        dossier.completed_at = max(transition.at, last)
    if transition.target in RESULT_STATUSES and event.result is not None:
        dossier.result = _store_result(session, event.result, result_files)
    entry = record_change(
        uow,
        dossier,
        status=transition.target,
        at=transition.at,
        actor=actor.name,
        note=note,
        details=details,
        calendar=calendar,
        now=now,
    )
    if event.transfer_to is not None and dossier.due_at is not None:
        entry.details = {**details, "transfer_due_at": iso(_transfer_deadline(spec, dossier, calendar, entry.at))}
    audit_details: dict[str, Any] = {"from": transition.source.value, "to": transition.target.value}
    audit_details["at"] = utc_key(entry.at)
    if event.transfer_to is not None:
        audit_details["transfer_to"] = event.transfer_to
    if result_files:
        audit_details["result_files"] = [f.sha256 for f in result_files]
    audit.append(session, actor.name, f"dossier.{transition.target.value}", dossier.code, audit_details, at=now)
    return True


async def apply_event(ctx: Context, principal: Principal, event: AgencyEvent, *, now: datetime) -> EventOutcome:
    """Apply an agency's status event in one unit of work (result files decoded and verified first)."""
    files = await prepare_result_files(ctx, event)

    def work(uow: UnitOfWork) -> EventOutcome:
        audit.lock_for_write(uow.session)
        dossier = find_dossier(uow.session, event.dossier_code, for_update=True)
        applied = record_event(uow, dossier, event, actor=principal, calendar=ctx.calendar, now=now, result_files=files)
        return EventOutcome(
            dossier_code=dossier.code,
            status=dossier.status,
            agency_code=dossier.agency_code,
            received_at=dossier.received_at,
            due_at=dossier.due_at,
            duplicate=not applied,
        )

    return await in_unit(ctx.db, ctx.bus, work, short=not files)
