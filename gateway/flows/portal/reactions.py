"""The portal webhook's reactions: a ``portal.webhook`` message for a recorded change, in the change's transaction
(with the result files of a completion or a refusal), and a ``portal.question_answer`` message for an agency's
answer to a citizen's question (the answer, never the asker's contact details)."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.bus import EventHandler
from gateway.domain.dossier import RESULT_STATUSES
from gateway.domain.events import ChangeRecorded, DomainEvent, QuestionAnswered
from gateway.domain.times import iso
from gateway.store.models import Blob, HistoryEntry, Question
from gateway.unit_of_work import UnitOfWork

__all__ = ["enqueue_answer", "enqueue_webhook", "subscriptions"]


def _result(session: Session, entry: HistoryEntry) -> dict[str, Any] | None:
    """The result a ``completed`` or ``refused`` entry brought (the signed refusal notice, for a refusal): its
    stored description, each file with its verification and its content in base64."""
    if entry.status not in RESULT_STATUSES or (entry.details or {}).get("step"):
        return None
    result = entry.dossier.result if entry.dossier is not None else None
    if not isinstance(result, dict):
        return None
    files = []
    for item in result.get("files", []):
        blob = session.get(Blob, item.get("sha256"))
        content = base64.b64encode(blob.content).decode("ascii") if blob is not None else None
        files.append({**item, "content_base64": content})
    return {**result, "files": files}


def enqueue_webhook(session: Session, dossier_code: str, entry: HistoryEntry) -> None:
    """A ``portal.webhook`` message for history entry ``entry`` (flushed, so it has an id); a ``completed`` or
    ``refused`` entry carries the dossier's result files (``event.result``)."""
    event: dict[str, Any] = {"status": entry.status, "at": iso(entry.at), "actor": entry.actor, "note": entry.note}
    reason = (entry.details or {}).get("reason")
    if reason:
        event["reason"] = reason
    result = _result(session, entry)
    if result is not None:
        event["result"] = result
    outbox.enqueue(
        session,
        kind=messages.PORTAL_WEBHOOK,
        target=messages.PORTAL_TARGET,
        payload={"dossier_code": dossier_code, "event": event},
        idempotency_key=outbox.message_key(dossier_code, f"webhook:{entry.id}"),
        ordering_key=dossier_code,
    )


def _on_change(event: ChangeRecorded, uow: UnitOfWork) -> None:
    entry = uow.session.get(HistoryEntry, event.history_id)
    if entry is not None:
        enqueue_webhook(uow.session, event.dossier_code, entry)


def enqueue_answer(event: QuestionAnswered, uow: UnitOfWork) -> None:
    """A ``portal.question_answer`` message with the answer to question ``event.question_id``."""
    question = uow.session.get(Question, event.question_id)
    if question is None:
        return
    body = {
        "id": question.id,
        "agency_code": question.agency_code,
        "procedure_code": question.procedure_code,
        "reply_channel": question.reply_channel,
        "asked_at": iso(question.asked_at),
        "answer": question.answer,
        "answered_by": question.answered_by,
        "answered_at": iso(question.answered_at),
    }
    outbox.enqueue(
        uow.session,
        kind=messages.PORTAL_QUESTION_ANSWER,
        target=messages.PORTAL_TARGET,
        payload={"type": "question_answered", "question": body},
        idempotency_key=f"question:{question.id}:answer",
    )


def subscriptions(enabled: bool) -> dict[type[DomainEvent], list[EventHandler]]:
    """The webhook's subscriptions when ``[portal] webhook_url`` is configured; none otherwise."""
    return {ChangeRecorded: [_on_change], QuestionAnswered: [enqueue_answer]} if enabled else {}
