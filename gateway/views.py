"""The read models: a dossier as the portal and its agency see it, as citizens look it up, as an agency receives it.

- :func:`dossier_view`: the dossier response of ``docs/api.md`` (status, history, verification, deadlines, payment,
  shipments, the applicant's rating), with the calendar that computed the deadlines, whether the clock runs, and
  each agency's own deadline (``hops``, for liên thông).
- :func:`lookup_view`: the citizens' public lookup: status and deadlines only, **no personal data** (no names, ID
  numbers, phones, addresses, files, signers).
- :func:`agency_document`: what an agency's one-stop system receives (``docs/agency-rest-contract.md``'s dossier, files
  in base64, the agency's own deadline and where the fees stand); the composition root hands it to the agency
  flow.

Times are rendered in ISO 8601 in Vietnam's time with its offset, to the second (:func:`gateway.domain.times.iso`).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.auth import Principal
from gateway.catalogue import ProcedureSpec, get_procedure
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.deadlines import FINISHING_STATUSES, Deadlines, is_overdue, repeated_supplement
from gateway.domain.labels import STATUS_LABELS_VI, SUSPENSION_FINAL_LABEL_VI
from gateway.domain.status import TERMINAL_STATUSES, Status, national_code
from gateway.domain.times import iso
from gateway.flows.payment.view import payment_status, payment_view
from gateway.flows.postal.view import shipments_view
from gateway.services.changes import deadlines_of, history_pairs, hops_of
from gateway.services.ratings import rating_of, rating_view
from gateway.services.supplements import current_components
from gateway.store.models import Blob, Dossier, HistoryEntry

__all__ = ["agency_document", "can_read", "dossier_view", "lookup_view"]


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


def dossier_view(session: Session, dossier: Dossier, *, calendar: OfficeCalendar, now: datetime) -> dict[str, Any]:
    """The dossier response (``docs/api.md``) for the portal and the owning agency."""
    history = list(dossier.history)
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
        "payment_status": payment_status(session, dossier)["status"],
        "payment": payment_view(session, dossier),
        "shipments": shipments_view(session, dossier),
        "history": [_history_item(entry) for entry in history],
        "rating": _rating(session, dossier),
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


def _blob(session: Session, sha256: str | None) -> bytes | None:
    if sha256 is None:
        return None
    blob = session.get(Blob, sha256)
    return None if blob is None else blob.content


def _agency_components(session: Session, dossier: Dossier) -> list[dict[str, Any]]:
    components = []
    for c in current_components(dossier):
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
    return components


def _agency_due_at(dossier: Dossier, agency_code: str) -> str | None:
    """The agency's own deadline: the one recorded when the dossier was last handed to it (liên thông), the due
    date for the lead."""
    if agency_code != dossier.lead_agency_code:
        for entry in reversed(dossier.history):
            details = entry.details or {}
            if details.get("transfer_to") == agency_code and isinstance(details.get("transfer_due_at"), str):
                return str(details["transfer_due_at"])
    return iso(dossier.due_at)


def agency_document(session: Session, dossier: Dossier, *, agency_code: str | None = None) -> dict[str, Any]:
    """The dossier as an agency's one-stop system receives it (``docs/agency-rest-contract.md``), files in base64, with
    the agency's own deadline (``agency_due_at``) and where the fees stand (``payment``)."""
    agency = agency_code or dossier.agency_code
    spec = get_procedure(session, dossier.procedure_code)
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
        "components": _agency_components(session, dossier),
        "fees": _fees(dossier),
        "payment": {
            **payment_status(session, dossier),
            "fees_after_result": spec.fees_after_result if spec is not None else False,
        },
        "extra": dossier.extra or {},
    }
