"""The read models: a dossier as the portal and its agency see it, as citizens look it up, as an agency receives it.

- :func:`dossier_view`: the dossier response of ``docs/api.md`` (status, history, verification, deadlines, payment,
  shipments, the applicant's rating), with the calendar that computed the deadlines, whether the clock runs, and
  each agency's own deadline (``hops``, for liên thông).
- :func:`lookup_view`: the citizens' public lookup: status and deadlines only, **no personal data** (no names, ID
  numbers, phones, addresses, files, signers).
- :func:`agency_documents`: what agencies' one-stop systems receive (``docs/agency-rest-contract.md``'s dossier, files
  in base64, the agency's own deadline and where the fees stand), for a batch of dossiers at once; the composition
  root hands it to the agency flow. :func:`agency_document`: the same for one dossier.

Times are rendered in ISO 8601 in Vietnam's time with its offset, to the second (:func:`gateway.domain.times.iso`).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pybase64
from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from gateway.auth import Principal
from gateway.catalogue import ProcedureSpec, get_procedure
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.deadlines import FINISHING_STATUSES, Deadlines, is_overdue, repeated_supplement
from gateway.domain.labels import STATUS_LABELS_VI, SUSPENSION_FINAL_LABEL_VI
from gateway.domain.status import TERMINAL_STATUSES, Status, national_code
from gateway.domain.times import iso
from gateway.flows.payment.view import fees_status, payment_status, payment_view, payments_by_dossier
from gateway.flows.postal.view import shipments_view
from gateway.services.changes import deadlines_of, history_pairs, hops_of
from gateway.services.payments import unpaid_of
from gateway.services.ratings import rating_of, rating_view
from gateway.services.supplements import current_components, current_of
from gateway.store.models import Blob, Component, Dossier, Fee, HistoryEntry, Payment, Procedure, Rating, Shipment
from gateway.store.written import added_nothing_of

__all__ = [
    "agency_document",
    "agency_documents",
    "can_read",
    "dossier_view",
    "lookup_view",
]


def can_read(principal: Principal, dossier: Dossier) -> bool:
    """The portal, and the agency handling the dossier now or leading it."""
    if principal.role == "portal":
        return True
    return principal.is_agency() and principal.agency_code in (dossier.agency_code, dossier.lead_agency_code)


def _overdue(dossier: Dossier, deadlines: Deadlines | None, now: datetime) -> bool:
    if deadlines is not None:
        return is_overdue(deadlines, now, dossier.completed_at)
    if dossier.due_at is None:
        return False
    return (dossier.completed_at or now) > dossier.due_at


def _clock(dossier: Dossier, deadlines: Deadlines | None) -> str:
    """``running``, ``paused`` (the applicant is awaited, or a suspension that pauses) or ``stopped`` (for good)."""
    status = Status(dossier.status)
    if status in FINISHING_STATUSES or status in TERMINAL_STATUSES:
        return "stopped"
    if deadlines is not None and deadlines.finished_at is not None:
        return "stopped"  # a suspension the procedure makes final
    return "paused" if deadlines is not None and deadlines.paused else "running"


def _history_item(entry: HistoryEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"status": entry.status, "at": iso(entry.at), "actor": entry.actor, "note": entry.note}
    details = entry.details or {}
    for key in ("reason", "components", "step", "transfer_to"):
        if details.get(key):
            item[key] = details[key]
    return item


def _hops(dossier: Dossier, deadlines: Deadlines | None, calendar: OfficeCalendar, now: datetime) -> list[Any]:
    return [
        {
            "agency_code": hop.agency_code,
            "lead": hop.lead,
            "started_at": iso(hop.started_at),
            "ended_at": iso(hop.ended_at),
            "due_at": iso(hop.due_at),
            "overdue": hop.overdue(now),
        }
        for hop in hops_of(dossier, deadlines, calendar)
    ]


def _fee_items(fees: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"code": f.code, "name": f.name, "amount": f.amount, "paid": f.paid} for f in fees]


def _parts(session: Session, dossier: Dossier, created: bool) -> dict[str, Any]:
    """The payment, shipments and rating of the answer. Rows referring to a dossier ``created`` in this unit of work
    can only have been written by it (no other transaction sees the dossier before it commits), and payments,
    shipments and ratings are written through the session only: when it added none of a kind, the dossier has none
    and the database is not asked."""
    no_payment = created and added_nothing_of(session, Payment)
    return {
        "payment_status": payment_status(session, dossier, payments=[] if no_payment else None)["status"],
        "payment": None if no_payment else payment_view(session, dossier),
        "shipments": [] if created and added_nothing_of(session, Shipment) else shipments_view(session, dossier),
        "rating": None if created and added_nothing_of(session, Rating) else _rating(session, dossier),
    }


def dossier_view(
    session: Session, dossier: Dossier, *, calendar: OfficeCalendar, now: datetime, created: bool = False
) -> dict[str, Any]:
    """The dossier response (``docs/api.md``) for the portal and the owning agency (``created``: the dossier was
    created in this unit of work)."""
    history = list(dossier.history)
    parts = _parts(session, dossier, created)
    spec = get_procedure(session, dossier.procedure_code)
    deadlines = deadlines_of(session, dossier, calendar)
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
        "overdue": _overdue(dossier, deadlines, now),
        "calendar_version": dossier.calendar_version,
        "clock": _clock(dossier, deadlines),
        "suspension": spec.suspension if spec is not None else "pause",
        "hops": _hops(dossier, deadlines, calendar, now),
        "repeated_supplement": repeated_supplement(history_pairs(dossier)) if history else False,
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
            for c in current_components(dossier)
        ],
        "fees": _fee_items(dossier.fees),
        "fees_after_result": spec.fees_after_result if spec is not None else False,
        "payment_status": parts["payment_status"],
        "payment": parts["payment"],
        "shipments": parts["shipments"],
        "history": [_history_item(entry) for entry in history],
        "rating": parts["rating"],
        "result": dict(dossier.result) if dossier.result is not None else None,
        "extra": dossier.extra or {},
    }


def _rating(session: Session, dossier: Dossier) -> dict[str, Any] | None:
    rating = rating_of(session, dossier)
    return None if rating is None else rating_view(rating)


def lookup_view(session: Session, dossier: Dossier, *, calendar: OfficeCalendar, now: datetime) -> dict[str, Any]:
    """The citizens' lookup (public): status and deadlines, nothing personal."""
    spec = get_procedure(session, dossier.procedure_code)
    return {
        "code": dossier.code,
        "status": dossier.status,
        "status_label": _label(dossier, spec),
        "national_status_code": national_code(dossier.status),
        "received_at": iso(dossier.received_at),
        "due_at": iso(dossier.due_at),
        "overdue": _overdue(dossier, deadlines_of(session, dossier, calendar), now),
    }


def _label(dossier: Dossier, spec: ProcedureSpec | None) -> str:
    if dossier.status == Status.SUSPENDED and spec is not None and spec.suspension == "stop":
        return SUSPENSION_FINAL_LABEL_VI
    return STATUS_LABELS_VI[Status(dossier.status)]


# -- what agencies receive ---------------------------------------------------------------------------------------------

#: The columns of a component an agency document reads.
_COMPONENT_COLUMNS = (
    "code",
    "name",
    "filename",
    "content_type",
    "size",
    "sha256",
    "revision",
    "current",
    "detached_signature_sha256",
    "originals_check_required",
    "verification",
)
_Component = namedtuple("_Component", (*_COMPONENT_COLUMNS, "content", "detached_signature"))  # type: ignore[misc]
_DOSSIERS = Dossier.__table__
_PROCEDURES = Procedure.__table__
_COMPONENTS = Component.__table__
_FILES = Blob.__table__.alias("files")
_SIGNATURES = Blob.__table__.alias("signatures")
#: The dossiers of a batch by code, with their procedure's fee rule and every revision of their components (one row
#: each, or one row without any), the current ones with their files; built once, as the two below.
_DOSSIER_ROWS = (
    select(
        _DOSSIERS,
        _PROCEDURES.c.fees_after_result,
        _COMPONENTS.c.id.label("component_id"),
        *(_COMPONENTS.c[name].label(f"component_{name}") for name in _COMPONENT_COLUMNS),
        _FILES.c.content.label("component_content"),
        _SIGNATURES.c.content.label("component_detached_signature"),
    )
    .outerjoin(_PROCEDURES, _PROCEDURES.c.code == _DOSSIERS.c.procedure_code)
    .outerjoin(_COMPONENTS, _COMPONENTS.c.dossier_id == _DOSSIERS.c.id)
    .outerjoin(_FILES, and_(_COMPONENTS.c.current, _FILES.c.sha256 == _COMPONENTS.c.sha256))
    .outerjoin(
        _SIGNATURES, and_(_COMPONENTS.c.current, _SIGNATURES.c.sha256 == _COMPONENTS.c.detached_signature_sha256)
    )
    .where(_DOSSIERS.c.code.in_(bindparam("codes", expanding=True)))
    .order_by(_DOSSIERS.c.id, _COMPONENTS.c.id)
)
#: Their fees, and the history's details of those an agency other than their lead receives.
_FEES = Fee.__table__
_FEE_ROWS = (
    select(_FEES.c.dossier_id, _FEES.c.code, _FEES.c.name, _FEES.c.amount, _FEES.c.paid)
    .where(_FEES.c.dossier_id.in_(bindparam("ids", expanding=True)))
    .order_by(_FEES.c.dossier_id, _FEES.c.id)
)
_HISTORY = HistoryEntry.__table__
_DETAILS_ROWS = (
    select(_HISTORY.c.dossier_id, _HISTORY.c.details)
    .where(_HISTORY.c.dossier_id.in_(bindparam("ids", expanding=True)))
    .order_by(_HISTORY.c.dossier_id, _HISTORY.c.id)
)
#: Where a component's columns begin in a row of :data:`_DOSSIER_ROWS`: after the dossier's own, its procedure's fee
#: rule and the component's id.
_COMPONENT_START = len(_DOSSIERS.columns) + 2


@dataclass(frozen=True, slots=True)
class _Read:
    """A dossier as its agency documents are rendered from it: its row (with its procedure's ``fees_after_result``),
    every revision of its components (oldest first, the current ones with their files), its fees, and its history's
    details when an agency other than its lead receives it."""

    row: Any
    components: list[Any]
    fees: list[Any]
    details: list[Any]


def _base64(content: bytes | None) -> str | None:
    return pybase64.b64encode_as_string(content) if content else None


def _agency_components(components: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "code": c.code,
            "name": c.name,
            "filename": c.filename,
            "content_type": c.content_type,
            "size": c.size,
            "sha256": c.sha256,
            "revision": c.revision,
            "content_base64": _base64(c.content) or "",
            "detached_signature_base64": _base64(c.detached_signature),
            "originals_check_required": c.originals_check_required,
            "verification": c.verification,
        }
        for c in current_of(components)
    ]


def _agency_due_at(read: _Read, agency_code: str) -> str | None:
    """The agency's own deadline: the one recorded when the dossier was last handed to it (liên thông), the due
    date for the lead."""
    if agency_code != read.row.lead_agency_code:
        for details in reversed(read.details):
            details = details or {}
            if details.get("transfer_to") == agency_code and isinstance(details.get("transfer_due_at"), str):
                return str(details["transfer_due_at"])
    return iso(read.row.due_at)


def _reads(session: Session, wanted: Sequence[tuple[str, str]]) -> dict[str, _Read]:
    """The dossiers of ``wanted`` (dossier code, agency code) as their documents are rendered from them, by code,
    in two or three queries whatever their number."""
    connection = session.connection()  # plain statements: the ORM's handling of them costs as much as they do
    reads: dict[str, _Read] = {}
    for row in connection.execute(_DOSSIER_ROWS, {"codes": sorted({code for code, _agency in wanted})}):
        read = reads.get(row.code)
        if read is None:
            read = reads[row.code] = _Read(row, [], [], [])
        if row.component_id is not None:
            read.components.append(_Component._make(row[_COMPONENT_START:]))
    by_id = {read.row.id: read for read in reads.values()}
    if by_id:
        for fee in connection.execute(_FEE_ROWS, {"ids": sorted(by_id)}):
            by_id[fee.dossier_id].fees.append(fee)
    elsewhere = {
        reads[code].row.id for code, agency in wanted if code in reads and agency != reads[code].row.lead_agency_code
    }
    if elsewhere:
        for entry in connection.execute(_DETAILS_ROWS, {"ids": sorted(elsewhere)}):
            by_id[entry.dossier_id].details.append(entry.details)
    return reads


def agency_documents(session: Session, wanted: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The dossiers as the agencies receive them (``docs/agency-rest-contract.md``), by (dossier code, agency code):
    files in base64, with the agency's own deadline (``agency_due_at``) and where the fees stand (``payment``). A
    whole batch is read in a few queries, as plain rows (what the outbox's reading ahead needs); a pair whose
    dossier does not exist is left out. What the session holds but has not written yet is not seen."""
    if not wanted:
        return {}
    reads = _reads(session, wanted)
    owing = {read.row.id for read in reads.values() if unpaid_of(read.fees)}
    payments = payments_by_dossier(session, owing)
    return {
        (code, agency): _agency_document(reads[code], agency, payments.get(reads[code].row.id, []))
        for code, agency in wanted
        if code in reads
    }


def agency_document(session: Session, dossier: Dossier, *, agency_code: str | None = None) -> dict[str, Any]:
    """The dossier as an agency's one-stop system receives it (see :func:`agency_documents`), the session's changes
    written first; ``agency_code``: the receiving agency, the dossier's own by default."""
    session.flush()
    pair = (dossier.code, agency_code or dossier.agency_code)
    return agency_documents(session, [pair])[pair]


def _agency_document(read: _Read, agency: str, payments: Sequence[Payment]) -> dict[str, Any]:
    dossier = read.row
    return {
        "code": dossier.code,
        "procedure_code": dossier.procedure_code,
        "agency_code": agency,
        "lead_agency_code": dossier.lead_agency_code,
        "channel": dossier.channel,
        "summary": dossier.summary,
        "applicant": dossier.applicant,
        "submitted_at": iso(dossier.submitted_at),
        "received_at": iso(dossier.received_at),
        "acknowledge_by": iso(dossier.acknowledge_by),
        "due_at": iso(dossier.due_at),
        "agency_due_at": _agency_due_at(read, agency),
        "calendar_version": dossier.calendar_version,
        "originals_check_required": dossier.originals_check_required,
        "return_method": dossier.return_method,
        "delivery_address": dossier.delivery_address,
        "components": _agency_components(read.components),
        "fees": _fee_items(read.fees),
        "payment": {**fees_status(read.fees, payments), "fees_after_result": bool(dossier.fees_after_result)},
        "extra": dossier.extra or {},
    }
