"""The national portal's records of a dossier, built from the stored rows: the dossier for ``DongBoHoSoMC`` and
one progress step per history entry for ``CapNhatTienDoHoSoMC``.

The status codes come from the one mapping table (:func:`gateway.domain.status.national_code`), the step texts from
the citizens' status labels; steps that only concern the gateway itself (an integration skipped) are never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from adapters.national_portal import Channel, DossierRecord, ProgressRecord
from gateway.catalogue import get_procedure
from gateway.domain.labels import STATUS_LABELS_VI
from gateway.domain.status import Status, national_code
from gateway.store.models import Dossier, HistoryEntry

__all__ = [
    "CHANNELS",
    "STEP_LABELS_VI",
    "STEP_SKIPPED",
    "dossier_record",
    "is_local_step",
    "is_local_step_name",
    "progress_record",
]

#: The history step recorded at intake when the national portal is not configured.
STEP_SKIPPED = "national_sync_skipped"

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


def is_local_step_name(step: object) -> bool:
    """Whether a history step name only says something about the gateway itself (an integration skipped)."""
    return isinstance(step, str) and (step == STEP_SKIPPED or step.endswith("_skipped"))


def is_local_step(entry: HistoryEntry) -> bool:
    """A step that only says something about the gateway itself (an integration skipped): never sent to the portal."""
    return is_local_step_name((entry.details or {}).get("step"))


def _received_at(dossier: Dossier) -> datetime:
    return dossier.received_at or dossier.submitted_at


def _applicant_text(applicant: Mapping[str, object], key: str) -> str | None:
    value = applicant.get(key)
    return value if isinstance(value, str) and value.strip() else None


def dossier_record(session: Session, dossier: Dossier, entries: Sequence[HistoryEntry]) -> DossierRecord:
    """``DongBoHoSoMC``'s record of ``dossier`` with the status of the last of ``entries`` (its history)."""
    status = Status(entries[-1].status)
    spec = get_procedure(session, dossier.procedure_code)
    applicant = dossier.applicant or {}
    completed = status in (Status.COMPLETED, Status.RETURNED)
    returned_at = next((e.at for e in entries if e.status == Status.RETURNED.value), None)
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
        applicant_name=_applicant_text(applicant, "full_name"),
        applicant_id=_applicant_text(applicant, "id_number"),
        email=_applicant_text(applicant, "email"),
        phone=_applicant_text(applicant, "phone"),
        return_by_post=dossier.return_method == "post" if dossier.return_method else None,
        completed_at=(dossier.completed_at or entries[-1].at) if completed else None,
        returned_at=returned_at if status is Status.RETURNED else None,
    )


def progress_record(dossier: Dossier, entry: HistoryEntry) -> ProgressRecord:
    """``CapNhatTienDoHoSoMC``'s record of one history entry."""
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
