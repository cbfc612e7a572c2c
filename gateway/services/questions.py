"""Citizens' questions (*hỏi đáp*): asked through the portal, routed to the competent agency, answered by it.

- :func:`ask`: the competent agency is the one named, or the first registered agency of the procedure named (a named
  agency must be competent for a named procedure); the answer is due ``answer_within_days`` working days later. An
  agency registered with ``protocol = "rest"`` receives the question through the outbox (``agency.question``:
  ``POST {endpoint}/questions``); any other agency fetches its questions (``GET /api/v1/agencies/{agency}/questions``).
- :func:`answer`: the agency's answer, once (a second is 409 ``already_answered``); it raises
  :class:`~gateway.domain.events.QuestionAnswered` for the portal's webhook.

The question's text and the asker's contact details are personal data: they are stored, shown to the portal (and the
text to the agency), and never logged nor written in the audit trail, whose entries name codes and ids only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit, messages, outbox
from gateway.auth import Principal
from gateway.catalogue import get_procedure
from gateway.domain import questions
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.events import QuestionAnswered
from gateway.domain.times import iso
from gateway.errors import Conflict, Forbidden, Invalid, NotFound, problem
from gateway.registry import get_agency
from gateway.services.context import Context
from gateway.store.models import Question
from gateway.unit_of_work import UnitOfWork, in_unit
from gateway.validation import parse_model

__all__ = [
    "AlreadyAnswered",
    "AnswerRequest",
    "QuestionRequest",
    "agency_questions",
    "agency_view",
    "answer",
    "ask",
    "portal_view",
    "read",
]

Text = Annotated[StrictStr, Field(min_length=1, max_length=8000)]
Short = Annotated[StrictStr, Field(min_length=1, max_length=300)]


class AlreadyAnswered(Conflict):
    """A question is answered once."""

    code = "already_answered"


class Contact(BaseModel):
    """How the portal reaches the asker (personal data)."""

    model_config = ConfigDict(extra="forbid")

    full_name: Short | None = None
    email: Short | None = None
    phone: Short | None = None
    address: Short | None = None


class QuestionRequest(BaseModel):
    """``POST /api/v1/questions``: the procedure or the agency asked (at least one), the question and the channel
    the answer is relayed by (``email`` needs ``contact.email``, ``sms`` ``contact.phone``, ``post``
    ``contact.address``)."""

    model_config = ConfigDict(extra="forbid")

    procedure_code: Short | None = None
    agency_code: Short | None = None
    question: Text
    reply_channel: Literal["portal", "email", "sms", "post"] = "portal"
    contact: Contact | None = None

    @model_validator(mode="after")
    def _routable(self) -> QuestionRequest:
        if self.procedure_code is None and self.agency_code is None:
            raise ValueError("give procedure_code or agency_code")
        needed = {"email": "email", "sms": "phone", "post": "address"}.get(self.reply_channel)
        if needed is not None and getattr(self.contact, needed, None) is None:
            raise ValueError(f"reply_channel {self.reply_channel} needs contact.{needed}")
        return self


class AnswerRequest(BaseModel):
    """``POST /api/v1/agencies/{agency}/questions/{id}/answer``: the answer, and who gave it (a unit or an official's
    title)."""

    model_config = ConfigDict(extra="forbid")

    answer: Text
    answered_by: Short | None = None


def subject(question: Question) -> str:
    """The question as the audit trail names it."""
    return f"question:{question.id}"


def agency_view(question: Question) -> dict[str, Any]:
    """The question as its agency receives it: no contact details."""
    return {
        "id": question.id,
        "agency_code": question.agency_code,
        "procedure_code": question.procedure_code,
        "question": question.text,
        "reply_channel": question.reply_channel,
        "asked_at": iso(question.asked_at),
        "answer_by": iso(question.answer_by),
        "answer": question.answer,
        "answered_by": question.answered_by,
        "answered_at": iso(question.answered_at),
        "answer_path": f"/api/v1/agencies/{question.agency_code}/questions/{question.id}/answer",
    }


def portal_view(question: Question, now: datetime) -> dict[str, Any]:
    """The question as the portal sees it: with the contact details, the route and whether the answer is late."""
    return {
        **agency_view(question),
        "contact": question.contact,
        "route": question.route,
        "overdue": questions.is_late(question.answer_by, question.answered_at, now),
    }


def _competent(session: Session, body: QuestionRequest) -> tuple[str, str]:
    """The competent agency and its protocol; :class:`Invalid` when there is none."""
    agencies: list[str] = []
    if body.procedure_code is not None:
        spec = get_procedure(session, body.procedure_code)
        if spec is None:
            raise Invalid([problem("procedure_code", f"unknown procedure {body.procedure_code}")])
        agencies = list(spec.agencies)
        if body.agency_code is not None and body.agency_code not in agencies:
            message = f"agency {body.agency_code} is not competent for it (competent: {', '.join(agencies)})"
            raise Invalid([problem("agency_code", message)])
    candidates = [body.agency_code] if body.agency_code is not None else agencies
    for code in candidates:
        registration = get_agency(session, code)
        if registration is not None:
            return code, registration.protocol
    field = "agency_code" if body.agency_code is not None else "procedure_code"
    raise Invalid([problem(field, f"no agency registered with the gateway for {', '.join(candidates)}")])


def _ask(
    body: QuestionRequest, actor: Principal, now: datetime, days: int, calendar: OfficeCalendar, uow: UnitOfWork
) -> dict[str, Any]:
    session = uow.session
    agency_code, protocol = _competent(session, body)
    question = Question(
        agency_code=agency_code,
        procedure_code=body.procedure_code,
        text=body.question,
        reply_channel=body.reply_channel,
        contact=body.contact.model_dump(exclude_none=True) if body.contact is not None else None,
        route="rest" if protocol == "rest" else "poll",
        asked_at=now,
        answer_by=questions.answer_by(now, days, calendar),
    )
    session.add(question)
    session.flush()
    if question.route == "rest":
        outbox.enqueue(
            session,
            kind=messages.AGENCY_QUESTION,
            target=agency_code,
            payload={"question_id": question.id, "agency_code": agency_code},
            idempotency_key=f"{subject(question)}:deliver",
        )
    details = {"agency_code": agency_code, "procedure_code": body.procedure_code, "route": question.route}
    audit.append(session, actor.name, "question.asked", subject(question), details, at=now)
    return portal_view(question, now)


async def ask(ctx: Context, actor: Principal, document: Any, *, now: datetime, days: int) -> dict[str, Any]:
    """Store a citizen's question, routed to the competent agency; the question as the portal sees it."""
    body = parse_model(QuestionRequest, document)
    return await in_unit(ctx.db, ctx.bus, lambda uow: _ask(body, actor, now, days, ctx.calendar, uow), short=True)


def _find(session: Session, question_id: int, *, for_update: bool = False) -> Question:
    statement = select(Question).where(Question.id == question_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    question = session.scalars(statement).one_or_none()
    if question is None:
        raise NotFound(f"no question {question_id}")
    return question


async def read(ctx: Context, actor: Principal, question_id: int, *, now: datetime) -> dict[str, Any]:
    """The question for the portal; the read is an audit entry (its contact details were shown)."""

    def work(session: Session) -> dict[str, Any]:
        audit.lock_for_write(session)
        question = _find(session, question_id)
        audit.append(session, actor.name, "question.read", subject(question), {"fields": ["contact"]}, at=now)
        return portal_view(question, now)

    return await ctx.db.write(work, short=True)


async def agency_questions(ctx: Context, agency_code: str, state: str) -> list[dict[str, Any]]:
    """The agency's questions, oldest first: ``unanswered``, ``answered`` or ``all``."""

    def work(session: Session) -> list[dict[str, Any]]:
        statement = select(Question).where(Question.agency_code == agency_code)
        if state == "unanswered":
            statement = statement.where(Question.answered_at.is_(None))
        elif state == "answered":
            statement = statement.where(Question.answered_at.is_not(None))
        return [agency_view(q) for q in session.scalars(statement.order_by(Question.id))]

    return await ctx.db.run(work)


def _answer(question_id: int, body: AnswerRequest, actor: Principal, now: datetime, uow: UnitOfWork) -> dict[str, Any]:
    session = uow.session
    question = _find(session, question_id, for_update=True)
    if question.agency_code != actor.agency_code:
        raise Forbidden(f"question {question_id} is for agency {question.agency_code}")
    if question.answered_at is not None:
        raise AlreadyAnswered(f"question {question_id} was answered at {iso(question.answered_at)}")
    question.answer = body.answer
    question.answered_by = body.answered_by
    question.answered_at = now
    session.flush()
    late = questions.is_late(question.answer_by, None, now)
    audit.append(session, actor.name, "question.answered", subject(question), {"late": late}, at=now)
    uow.emit(QuestionAnswered(question_id=question.id))
    return agency_view(question)


async def answer(ctx: Context, actor: Principal, question_id: int, document: Any, *, now: datetime) -> dict[str, Any]:
    """The agency ``actor`` answers question ``question_id``; the question as the agency sees it."""
    body = parse_model(AnswerRequest, document)
    return await in_unit(ctx.db, ctx.bus, lambda uow: _answer(question_id, body, actor, now, uow), short=True)
