"""The dossier read model and its state changes after intake (DESIGN.md §4.3–4.4).

Read model:

- :func:`dossier_view`: the dossier as the portal and the owning agency see it (the contract's dossier response).
- :func:`lookup_view`: the citizens' public lookup: status and deadlines only, **no personal data** (no names, ID
  numbers, phones, addresses, files, signers).
- :func:`agency_document`: what an agency's one-stop system receives (the reference REST contract's dossier, files
  in base64), built by the dispatcher when it delivers.

Times are rendered in ISO 8601 **in Vietnam's time with its offset** (``2026-11-23T17:00:00+07:00``), to the second:
deadlines are defined in local office hours, and an offset keeps every value unambiguous. They are stored as UTC.

State changes (each in the caller's unit of work, each with a history entry, an audit entry, the deadlines
recomputed from the whole history, and a ``portal.webhook`` message when the portal asked for them):

- :func:`apply_agency_event`: an agency's status event through the state machine. Decisions where the design is
  silent:

  * The events of a dossier are accepted from its current agency and from its lead agency (which returns the
    result of an inter-agency dossier); any other agency gets 403.
  * Idempotency: an event is identified by (dossier, status, ``at``) from the same agency; a repeat is accepted
    and changes nothing. An event without ``at`` is stamped with the gateway's clock (and cannot be recognised as a
    repeat). An ``at`` more than five minutes in the future is refused; an ``at`` earlier than the dossier's last
    history entry (events arriving out of order, clocks apart) is recorded at that entry's time, the agency's own
    time kept in ``details.event_at``.
  * ``processing`` while processing, without ``transfer_to``, is a progress step: recorded, nothing else changes.
  * ``received`` starts the legal clock: ``received_at`` is the event's time and ``due_at`` the procedure's
    ``processing_days`` working days later (the legal due date). A ``due_at`` the agency gives is recorded in the
    history (``details.agency_due_at`` and the note), never trusted over the law.
  * Waiting statuses (supplement_requested, fee_requested, suspended) stop the clock; ``due_at`` moves when the wait
    ends (:func:`gateway.domain.deadlines.compute_deadlines` over the whole history).
  * ``transfer_to`` (*liên thông*), only with ``processing``: another registered agency competent for the procedure
    takes over (``agency_code``), the lead stays; an ``agency.deliver`` to it is enqueued (step
    ``deliver:<agency>``: an agency that already received the dossier is not sent it twice). Its share of the time
    left (the catalogue's ``transfer_shares``, equal by default, between it and the lead who returns the result) is
    recorded as ``details.transfer_due_at``.
  * ``completed`` may carry ``result``: an object whose ``files`` (``filename``, ``content_base64``,
    ``detached_signature_base64``, ``content_type``) are decoded, sniffed, verified like components and stored
    content-addressed in ``Dossier.result`` (``files[]`` with their reports; the other keys kept as given). Results
    are the agency's output, not the applicant's components, so they are not components.
  * ``supplement_requested`` needs ``reason`` and ``components`` (the codes to add or fix, from the procedure).

- :func:`add_supplement`: only in ``supplement_requested``; new revisions of the components (the previous revision
  kept, no longer current); back to the status before the wait (:func:`resume_status`); ``agency.supplement``.
- :func:`withdraw`: the applicant withdraws; ``agency.withdraw`` to the current agency.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, fees, messages, outbox, shipments
from .auth import Principal
from .catalogue import ProcedureSpec, get_procedure
from .domain.calendar import VIETNAM_TZ, OfficeCalendar
from .domain.deadlines import Deadlines, compute_deadlines, is_overdue, repeated_supplement
from .domain.status import (
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    Status,
    check_transition,
    national_code,
    required_fields,
    resume_status,
)
from .fanout import Fanout, after_change
from .intake import (
    Code,
    Conflict,
    FileIn,
    Forbidden,
    Invalid,
    PreparedFile,
    check_component_codes,
    component_rows,
    enqueue_delivery,
    parse_model,
    problem,
    signature_warnings,
    store_blob,
    warnings_note,
)
from .store.models import Agency, Blob, Component, Dossier, HistoryEntry

NO_FANOUT = Fanout()

__all__ = [
    "STATUS_LABELS_VI",
    "AgencyEvent",
    "SupplementRequest",
    "WithdrawRequest",
    "add_supplement",
    "agency_document",
    "apply_agency_event",
    "can_read",
    "dossier_view",
    "iso",
    "lookup_view",
    "withdraw",
]

#: The citizens' words for each status (public lookup).
STATUS_LABELS_VI: dict[str, str] = {
    Status.SUBMITTED: "Đã nộp, chờ tiếp nhận",
    Status.RECEIVED: "Đã tiếp nhận",
    Status.REFUSED: "Từ chối tiếp nhận",
    Status.PROCESSING: "Đang giải quyết",
    Status.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung hồ sơ",
    Status.FEE_REQUESTED: "Chờ thực hiện nghĩa vụ tài chính",
    Status.WITHDRAWN: "Đã rút hồ sơ",
    Status.SUSPENDED: "Tạm dừng giải quyết",
    Status.COMPLETED: "Đã có kết quả",
    Status.RETURNED: "Đã trả kết quả",
}

#: How far in the future an agency's ``at`` may be (clocks apart) before the event is refused.
FUTURE_TOLERANCE = timedelta(minutes=5)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in Vietnam's time with its offset, to the second (``2026-11-23T17:00:00+07:00``)."""
    if value is None:
        return None
    return value.astimezone(VIETNAM_TZ).isoformat(timespec="seconds")


def _utc_key(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------------------------------------------------
# Reading


def can_read(principal: Principal, dossier: Dossier) -> bool:
    """The portal, and the agency handling the dossier now or leading it."""
    if principal.role == "portal":
        return True
    return principal.is_agency() and principal.agency_code in (dossier.agency_code, dossier.lead_agency_code)


def _history_pairs(dossier: Dossier) -> list[tuple[str, datetime]]:
    return [(entry.status, entry.at) for entry in dossier.history]


def _deadlines(session: Session, dossier: Dossier, calendar: OfficeCalendar) -> Deadlines | None:
    spec = get_procedure(session, dossier.procedure_code)
    if spec is None or not dossier.history:
        return None
    return compute_deadlines(_history_pairs(dossier), spec.processing_days, calendar)


def _overdue(session: Session, dossier: Dossier, calendar: OfficeCalendar, now: datetime) -> bool:
    deadlines = _deadlines(session, dossier, calendar)
    if deadlines is not None:
        return is_overdue(deadlines, now, dossier.completed_at)
    if dossier.due_at is None:
        return False
    return (dossier.completed_at or now) > dossier.due_at


def _current_components(dossier: Dossier) -> list[Component]:
    """The current revision of each component, in the order the codes were first submitted."""
    first: dict[str, int] = {}
    for index, component in enumerate(dossier.components):
        first.setdefault(component.code, index)
    return sorted((c for c in dossier.components if c.current), key=lambda c: first[c.code])


def _history_item(entry: HistoryEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"status": entry.status, "at": iso(entry.at), "actor": entry.actor, "note": entry.note}
    details = entry.details or {}
    if details.get("reason"):
        item["reason"] = details["reason"]
    if details.get("step"):
        item["step"] = details["step"]
    return item


def _result_view(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return dict(result)


def dossier_view(session: Session, dossier: Dossier, *, calendar: OfficeCalendar, now: datetime) -> dict[str, Any]:
    """The dossier response (contract, DESIGN.md §5) for the portal and the owning agency."""
    history = list(dossier.history)
    return {
        "code": dossier.code,
        "status": dossier.status,
        "national_status_code": national_code(dossier.status),
        "procedure_code": dossier.procedure_code,
        "agency_code": dossier.agency_code,
        "lead_agency_code": dossier.lead_agency_code,
        "channel": dossier.channel,
        "summary": dossier.summary,
        "applicant": dossier.applicant,
        "return_method": dossier.return_method,
        "delivery_address": dossier.delivery_address,
        "submitted_at": iso(dossier.submitted_at),
        "received_at": iso(dossier.received_at),
        "acknowledge_by": iso(dossier.acknowledge_by),
        "due_at": iso(dossier.due_at),
        "completed_at": iso(dossier.completed_at),
        "overdue": _overdue(session, dossier, calendar, now),
        "repeated_supplement": repeated_supplement(_history_pairs(dossier)) if history else False,
        "originals_check_required": dossier.originals_check_required,
        "components": [
            {
                "code": c.code,
                "name": c.name,
                "filename": c.filename,
                "content_type": c.content_type,
                "size": c.size,
                "sha256": c.sha256,
                "revision": c.revision,
                "originals_check_required": c.originals_check_required,
                "verification": c.verification,
            }
            for c in _current_components(dossier)
        ],
        "fees": [{"code": f.code, "name": f.name, "amount": f.amount, "paid": f.paid} for f in dossier.fees],
        "payment": fees.payment_view(session, dossier),
        "shipments": shipments.shipments_view(session, dossier),
        "history": [_history_item(entry) for entry in history],
        "result": _result_view(dossier.result),
        "extra": dossier.extra or {},
    }


def lookup_view(session: Session, dossier: Dossier, *, calendar: OfficeCalendar, now: datetime) -> dict[str, Any]:
    """The citizens' lookup (public): status and deadlines, nothing personal."""
    return {
        "code": dossier.code,
        "status": dossier.status,
        "status_label": STATUS_LABELS_VI[Status(dossier.status)],
        "national_status_code": national_code(dossier.status),
        "received_at": iso(dossier.received_at),
        "due_at": iso(dossier.due_at),
        "overdue": _overdue(session, dossier, calendar, now),
    }


def _blob(session: Session, sha256: str | None) -> bytes | None:
    if sha256 is None:
        return None
    blob = session.get(Blob, sha256)
    return None if blob is None else blob.content


def agency_document(session: Session, dossier: Dossier, *, agency_code: str | None = None) -> dict[str, Any]:
    """The dossier as an agency's one-stop system receives it (reference REST contract), files in base64."""
    components = []
    for c in _current_components(dossier):
        content = _blob(session, c.sha256) or b""
        signature = _blob(session, c.detached_signature_sha256)
        components.append(
            {
                "code": c.code,
                "name": c.name,
                "filename": c.filename,
                "content_type": c.content_type,
                "size": c.size,
                "sha256": c.sha256,
                "revision": c.revision,
                "content_base64": base64.b64encode(content).decode("ascii"),
                "detached_signature_base64": base64.b64encode(signature).decode("ascii") if signature else None,
                "originals_check_required": c.originals_check_required,
                "verification": c.verification,
            }
        )
    return {
        "code": dossier.code,
        "procedure_code": dossier.procedure_code,
        "agency_code": agency_code or dossier.agency_code,
        "lead_agency_code": dossier.lead_agency_code,
        "channel": dossier.channel,
        "summary": dossier.summary,
        "applicant": dossier.applicant,
        "submitted_at": iso(dossier.submitted_at),
        "received_at": iso(dossier.received_at),
        "acknowledge_by": iso(dossier.acknowledge_by),
        "due_at": iso(dossier.due_at),
        "originals_check_required": dossier.originals_check_required,
        "return_method": dossier.return_method,
        "delivery_address": dossier.delivery_address,
        "components": components,
        "fees": [{"code": f.code, "name": f.name, "amount": f.amount, "paid": f.paid} for f in dossier.fees],
        "extra": dossier.extra or {},
    }


# --------------------------------------------------------------------------------------------------------------------
# Request bodies

Note = Annotated[StrictStr, Field(max_length=4000)]


def _aware(value: datetime | None) -> datetime | None:
    """An agency's timestamp without an offset is read in Vietnam's time (as the REST adapter reads them)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=VIETNAM_TZ)
    return value


class AgencyEvent(BaseModel):
    """``POST /api/v1/agencies/{agency}/events`` (contract; ``components`` added for ``supplement_requested``).

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

    _aware_at = field_validator("at", "due_at")(_aware)


class ResultFiles(BaseModel):
    """The ``files`` of a ``completed`` event's ``result``; other keys of ``result`` are kept as given."""

    model_config = ConfigDict(extra="allow")

    files: list[FileIn] = Field(default_factory=list)


class SupplementRequest(BaseModel):
    """``POST /api/v1/dossiers/{code}/supplements``: components added or replaced after ``supplement_requested``."""

    model_config = ConfigDict(extra="forbid")

    components: Annotated[list[Any], Field(min_length=1)]
    note: Note | None = None


class WithdrawRequest(BaseModel):
    """``POST /api/v1/dossiers/{code}/withdraw``."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[StrictStr, Field(min_length=1, max_length=4000)]


# --------------------------------------------------------------------------------------------------------------------
# State changes


def _recompute(session: Session, dossier: Dossier, calendar: OfficeCalendar) -> None:
    deadlines = _deadlines(session, dossier, calendar)
    if deadlines is None:
        return
    dossier.received_at = deadlines.received_at
    dossier.acknowledge_by = deadlines.acknowledge_by
    dossier.due_at = deadlines.due_at


def _record(
    session: Session,
    dossier: Dossier,
    *,
    status: Status,
    at: datetime,
    actor: str,
    note: str | None,
    details: dict[str, Any],
    calendar: OfficeCalendar,
    now: datetime,
    fanout: Fanout,
) -> HistoryEntry:
    """Add a history entry (never before the last one), set the status, recompute deadlines, fan the change out."""
    previous = dossier.status
    last = dossier.history[-1].at if dossier.history else at
    entry = HistoryEntry(status=status.value, at=max(at, last), actor=actor, note=note, details=details)
    dossier.history.append(entry)
    dossier.status = status.value
    dossier.updated_at = now
    _recompute(session, dossier, calendar)
    session.flush()
    after_change(session, dossier, entry, fanout, previous=previous, now=now)
    return entry


def _spec(session: Session, dossier: Dossier) -> ProcedureSpec:
    spec = get_procedure(session, dossier.procedure_code)
    if spec is None:
        raise Conflict(f"procedure {dossier.procedure_code} of dossier {dossier.code} is no longer in the catalogue")
    return spec


def event_problems(event: AgencyEvent, spec: ProcedureSpec) -> list[dict[str, str]]:
    """What an event lacks or carries wrongly, whatever the dossier's status (422)."""
    errors = []
    for name in sorted(required_fields(event.status)):
        if not getattr(event, name):
            what = "the codes of the components to add or fix" if name == "components" else "a reason"
            errors.append(problem(name, f"required for status {event.status.value} ({what})"))
    if event.components:
        errors += [
            {"field": e["field"].removesuffix(".code"), "message": e["message"]}
            for e in check_component_codes(spec, [(f"components[{i}]", c) for i, c in enumerate(event.components)])
        ]
    if event.transfer_to is not None and event.status is not Status.PROCESSING:
        errors.append(problem("transfer_to", "only with status processing"))
    if event.result is not None and event.status is not Status.COMPLETED:
        errors.append(problem("result", "only with status completed"))
    return errors


def result_file_items(event: AgencyEvent) -> list[tuple[str, str | None, FileIn]]:
    """The result files of a ``completed`` event to prepare (decode and verify) before the transaction."""
    if event.result is None:
        return []
    try:
        files = parse_model(ResultFiles, event.result).files
    except Invalid as exc:
        raise Invalid([{"field": f"result.{e['field']}", "message": e["message"]} for e in exc.errors]) from None
    return [(f"result.files[{i}]", None, item) for i, item in enumerate(files)]


def _duplicate(dossier: Dossier, event: AgencyEvent, actor: str) -> bool:
    if event.at is None:
        return False
    key = _utc_key(event.at)
    return any(
        entry.status == event.status.value and entry.actor == actor and (entry.details or {}).get("event_at") == key
        for entry in dossier.history
    )


def apply_agency_event(
    session: Session,
    dossier: Dossier,
    event: AgencyEvent,
    *,
    actor: Principal,
    calendar: OfficeCalendar,
    now: datetime,
    result_files: Sequence[PreparedFile] = (),
    fanout: Fanout = NO_FANOUT,
) -> bool:
    """Apply ``event`` from ``actor`` (an agency) to ``dossier``: ``True`` when applied, ``False`` for a repeat.

    Raises :class:`Forbidden` (not this agency's dossier), :class:`Invalid` (a missing or wrong field),
    :class:`~gateway.domain.status.IllegalTransition` (the state machine refuses it; nothing changes).
    """
    if not actor.is_agency() or actor.agency_code not in (dossier.agency_code, dossier.lead_agency_code):
        raise Forbidden(f"dossier {dossier.code} is not handled by agency {actor.agency_code}")
    if _duplicate(dossier, event, actor.name):
        return False
    spec = _spec(session, dossier)
    errors = event_problems(event, spec)
    at = event.at or now
    if at > now + FUTURE_TOLERANCE:
        errors.append(problem("at", f"{iso(at)} is in the future"))
    source = Status(dossier.status)
    target = event.status
    if event.transfer_to is not None:
        errors += _transfer_problems(session, dossier, spec, event.transfer_to)
    if errors:
        raise Invalid(errors)
    check_transition(source, target)

    details: dict[str, Any] = {"event_at": _utc_key(at), "from": source.value}
    note = event.note
    if event.reason:
        details["reason"] = event.reason
    if event.components:
        details["components"] = list(event.components)
    if event.due_at is not None:
        details["agency_due_at"] = iso(event.due_at)
        note = f"{note + ' ' if note else ''}(agency's due date: {iso(event.due_at)})"
    if event.transfer_to is not None:
        previous = dossier.agency_code
        dossier.agency_code = event.transfer_to
        details.update(transfer_from=previous, transfer_to=event.transfer_to)
        enqueue_delivery(session, dossier, event.transfer_to)
    if target is Status.COMPLETED:
        dossier.completed_at = max(at, dossier.history[-1].at) if dossier.history else at
        if event.result is not None:
            dossier.result = _store_result(session, event.result, result_files)
    entry = _record(
        session,
        dossier,
        status=target,
        at=at,
        actor=actor.name,
        note=note,
        details=details,
        calendar=calendar,
        now=now,
        fanout=fanout,
    )
    if event.transfer_to is not None and dossier.due_at is not None:
        entry.details = {**details, "transfer_due_at": iso(_transfer_deadline(spec, dossier, calendar, entry.at))}
    audit_details: dict[str, Any] = {"from": source.value, "to": target.value, "at": _utc_key(entry.at)}
    if event.transfer_to is not None:
        audit_details["transfer_to"] = event.transfer_to
    if result_files:
        audit_details["result_files"] = [f.sha256 for f in result_files]
    audit.append(session, actor.name, f"dossier.{target.value}", dossier.code, audit_details, at=now)
    return True


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
    """The receiving agency's part of the time left: its share against the lead's (who returns the result)."""
    assert dossier.due_at is not None
    if dossier.agency_code == dossier.lead_agency_code:
        return calendar.local(dossier.due_at)
    shares = [
        float(spec.transfer_shares.get(dossier.agency_code, 1)),
        float(spec.transfer_shares.get(dossier.lead_agency_code, 1)),
    ]
    return calendar.split_remaining(at, dossier.due_at, shares)[0]


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
                "verification": f.report,
            }
        )
    return stored


def _status_before_wait(dossier: Dossier) -> Status:
    for entry in reversed(dossier.history):
        status = Status(entry.status)
        if status not in WAITING_STATUSES:
            return status
    return Status.SUBMITTED


def add_supplement(
    session: Session,
    dossier: Dossier,
    files: Sequence[PreparedFile],
    *,
    actor: Principal,
    calendar: OfficeCalendar,
    now: datetime,
    note: str | None = None,
    fanout: Fanout = NO_FANOUT,
) -> None:
    """Store the applicant's supplement (only after ``supplement_requested``) and resume the dossier."""
    if dossier.status != Status.SUPPLEMENT_REQUESTED:
        raise Conflict(
            f"dossier {dossier.code} is {dossier.status}: supplements are accepted only after supplement_requested"
        )
    spec = _spec(session, dossier)
    errors = check_component_codes(spec, [(f.field, f.code or "") for f in files])
    if errors:
        raise Invalid(errors)
    resumed = resume_status(_status_before_wait(dossier))
    check_transition(Status(dossier.status), resumed)

    revisions: dict[str, int] = {}
    for f in files:
        assert f.code is not None
        previous = [c for c in dossier.components if c.code == f.code]
        for component in previous:
            component.current = False
        revisions[f.code] = max((c.revision for c in previous), default=0) + 1
    dossier.components.extend(component_rows(session, spec, files, now=now, revisions=revisions))
    dossier.originals_check_required = any(c.originals_check_required for c in _current_components(dossier))

    number = 1 + sum(1 for entry in dossier.history if (entry.details or {}).get("supplement"))
    codes = [f.code for f in files if f.code]
    warnings = signature_warnings(spec, files)
    text = f"Supplement received: {', '.join(codes)}"
    if note:
        text += f". {note}"
    if warnings:
        text += f". {warnings_note(warnings)}"
    details: dict[str, Any] = {"supplement": number, "components": codes, "from": Status.SUPPLEMENT_REQUESTED.value}
    if warnings:
        details["signature_warnings"] = warnings
    entry = _record(
        session,
        dossier,
        status=resumed,
        at=now,
        actor=actor.name,
        note=text,
        details=details,
        calendar=calendar,
        now=now,
        fanout=fanout,
    )
    outbox.enqueue(
        session,
        kind=messages.AGENCY_SUPPLEMENT,
        target=dossier.agency_code,
        payload={"dossier_code": dossier.code, "agency_code": dossier.agency_code, "components": codes},
        idempotency_key=outbox.message_key(dossier.code, f"supplement:{number}"),
        ordering_key=dossier.code,
    )
    audit.append(
        session,
        actor.name,
        "dossier.supplemented",
        dossier.code,
        {
            "supplement": number,
            "components": [{"code": f.code, "sha256": f.sha256, "verdict": f.verdict} for f in files],
            "to": resumed.value,
            "history_id": entry.id,
        },
        at=now,
    )


def withdraw(
    session: Session,
    dossier: Dossier,
    reason: str,
    *,
    actor: Principal,
    calendar: OfficeCalendar,
    now: datetime,
    fanout: Fanout = NO_FANOUT,
) -> None:
    """The applicant withdraws the dossier: ``withdrawn``, and the current agency is told (``agency.withdraw``)."""
    source = Status(dossier.status)
    check_transition(source, Status.WITHDRAWN)
    _record(
        session,
        dossier,
        status=Status.WITHDRAWN,
        at=now,
        actor=actor.name,
        note=reason,
        details={"reason": reason, "from": source.value},
        calendar=calendar,
        now=now,
        fanout=fanout,
    )
    outbox.enqueue(
        session,
        kind=messages.AGENCY_WITHDRAW,
        target=dossier.agency_code,
        payload={"dossier_code": dossier.code, "agency_code": dossier.agency_code, "reason": reason},
        idempotency_key=outbox.message_key(dossier.code, "withdraw"),
        ordering_key=dossier.code,
    )
    audit.append(session, actor.name, "dossier.withdrawn", dossier.code, {"from": source.value}, at=now)


def dossiers_of_agency_open(session: Session, agency_code: str) -> int:
    """How many dossiers not in a terminal status are with or led by ``agency_code``."""
    open_statuses = [s.value for s in Status if s not in TERMINAL_STATUSES]
    statement = select(Dossier.id).where(
        Dossier.status.in_(open_statuses),
        (Dossier.agency_code == agency_code) | (Dossier.lead_agency_code == agency_code),
    )
    return len(session.scalars(statement).all())
