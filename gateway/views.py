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

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pybase64
from sqlalchemy import bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, joinedload

from gateway.auth import Principal
from gateway.catalogue import ProcedureSpec, get_procedure
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.deadlines import FINISHING_STATUSES, Deadlines, is_overdue, repeated_supplement
from gateway.domain.labels import STATUS_LABELS_VI, SUSPENSION_FINAL_LABEL_VI
from gateway.domain.status import TERMINAL_STATUSES, Status, national_code
from gateway.domain.times import iso
from gateway.flows.payment.view import payment_status, payment_view, payments_by_dossier
from gateway.flows.postal.view import shipments_view
from gateway.services.changes import deadlines_of, history_pairs, hops_of
from gateway.services.ratings import rating_of, rating_view
from gateway.services.supplements import current_components
from gateway.store.models import Blob, Component, Dossier, HistoryEntry, Payment, Procedure, Rating, Shipment
from gateway.store.written import added_nothing_of

__all__ = ["agency_document", "agency_documents", "can_read", "dossier_view", "lookup_view"]


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


def _fees(dossier: Dossier) -> list[dict[str, Any]]:
    return [{"code": f.code, "name": f.name, "amount": f.amount, "paid": f.paid} for f in dossier.fees]


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
        "fees": _fees(dossier),
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


# The agency documents' statements, built once (only their parameters change from one batch to the next).
_BLOBS = select(Blob.sha256, Blob.content).where(Blob.sha256.in_(bindparam("shas", expanding=True)))
_FEES_AFTER_RESULT = select(Procedure.code, Procedure.fees_after_result).where(
    Procedure.code.in_(bindparam("codes", expanding=True))
)
_WITH_PARTS = (
    select(Dossier)
    .where(Dossier.id == bindparam("id"))
    .options(joinedload(Dossier.components), joinedload(Dossier.fees))
)


def _blobs(session: Session, shas: set[str]) -> dict[str, bytes]:
    """The contents of the blobs ``shas``, in one query."""
    if not shas:
        return {}
    return {sha: content for sha, content in session.execute(_BLOBS, {"shas": sorted(shas)})}


def _base64(content: bytes | None) -> str | None:
    return pybase64.b64encode_as_string(content) if content else None


def _agency_components(current: Sequence[Component], blobs: Mapping[str, bytes]) -> list[dict[str, Any]]:
    return [
        {
            "code": c.code,
            "name": c.name,
            "filename": c.filename,
            "content_type": c.content_type,
            "size": c.size,
            "sha256": c.sha256,
            "revision": c.revision,
            "content_base64": _base64(blobs.get(c.sha256)) or "",
            "detached_signature_base64": _base64(blobs.get(c.detached_signature_sha256 or "")),
            "originals_check_required": c.originals_check_required,
            "verification": c.verification,
        }
        for c in current
    ]


def _agency_due_at(dossier: Dossier, agency_code: str) -> str | None:
    """The agency's own deadline: the one recorded when the dossier was last handed to it (liên thông), the due
    date for the lead."""
    if agency_code != dossier.lead_agency_code:
        for entry in reversed(dossier.history):
            details = entry.details or {}
            if details.get("transfer_to") == agency_code and isinstance(details.get("transfer_due_at"), str):
                return str(details["transfer_due_at"])
    return iso(dossier.due_at)


def _load_parts(session: Session, dossier: Dossier) -> None:
    """Read the components and fees of ``dossier`` in one query when they are not loaded yet."""
    unloaded = sa_inspect(dossier).unloaded
    if dossier.id is not None and ("components" in unloaded or "fees" in unloaded):
        session.scalars(_WITH_PARTS, {"id": dossier.id}).unique().all()


def agency_documents(session: Session, wanted: Sequence[tuple[Dossier, str]]) -> list[dict[str, Any]]:
    """The dossiers as the agencies receive them (``docs/agency-rest-contract.md``): one document per (dossier, agency
    code) pair, in order, files in base64, with the agency's own deadline (``agency_due_at``) and where the fees stand
    (``payment``). The files of every dossier are read in one query, and so are their procedures' fee rules and
    their payments."""
    for dossier, _agency in wanted:
        _load_parts(session, dossier)
    current = {id(dossier): current_components(dossier) for dossier, _agency in wanted}
    shas = {
        sha
        for components in current.values()
        for component in components
        for sha in (component.sha256, component.detached_signature_sha256)
        if sha is not None
    }
    blobs = _blobs(session, shas)
    codes = sorted({dossier.procedure_code for dossier, _agency in wanted})
    after_result = {code: flag for code, flag in session.execute(_FEES_AFTER_RESULT, {"codes": codes})} if codes else {}
    payments = payments_by_dossier(session, [dossier for dossier, _agency in wanted])
    return [
        _agency_document(
            dossier,
            agency,
            _agency_components(current[id(dossier)], blobs),
            {
                **payment_status(session, dossier, payments=payments.get(dossier.id, [])),
                "fees_after_result": bool(after_result.get(dossier.procedure_code)),
            },
        )
        for dossier, agency in wanted
    ]


def agency_document(session: Session, dossier: Dossier, *, agency_code: str | None = None) -> dict[str, Any]:
    """The dossier as an agency's one-stop system receives it (see :func:`agency_documents`); ``agency_code``: the
    receiving agency, the dossier's own by default."""
    return agency_documents(session, [(dossier, agency_code or dossier.agency_code)])[0]


def _agency_document(
    dossier: Dossier, agency: str, components: list[dict[str, Any]], payment: dict[str, Any]
) -> dict[str, Any]:
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
        "agency_due_at": _agency_due_at(dossier, agency),
        "calendar_version": dossier.calendar_version,
        "originals_check_required": dossier.originals_check_required,
        "return_method": dossier.return_method,
        "delivery_address": dossier.delivery_address,
        "components": components,
        "fees": _fees(dossier),
        "payment": payment,
        "extra": dossier.extra or {},
    }
